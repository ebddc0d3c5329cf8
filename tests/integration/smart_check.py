"""SMART Backend Services checks against a running hdxd (tests/integration/74-smart-backend).

Assertions are made by PyJWT (Debian python3-jwt) with the client's key, or forged by hand
(alg none, an HMAC keyed with the public key); the token endpoint and /fhir are called with
Python's http.client. Env: URL (https://localhost:PORT), CA, KEY (the client's EC P-384
private key, PEM), PUB (its public key, PEM), CLIENT (its registered name), OTHERKEY (a key
nobody registered), FEED (an integration API key, to make a Patient), STATE (ids out).
Prints "ok: WHAT"; exits 1 at the first failure.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import ssl
import sys
import time
import urllib.parse
import uuid

import jwt
from cryptography.hazmat.primitives import serialization

URL = urllib.parse.urlparse(os.environ["URL"])
CTX = ssl.create_default_context(cafile=os.environ["CA"])
TOKEN_URL = os.environ["URL"] + "/auth/token"
CLIENT = os.environ["CLIENT"]
KEY = serialization.load_pem_private_key(open(os.environ["KEY"], "rb").read(), password=None)
OTHER = serialization.load_pem_private_key(open(os.environ["OTHERKEY"], "rb").read(),
                                           password=None)
PUB = open(os.environ["PUB"], "rb").read()
CHECKS = 0


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ok(cond, what, detail=""):
    global CHECKS
    if not cond:
        fail(what + (": " + detail if detail else ""))
    CHECKS += 1
    print("ok: " + what)


def call(method, path, body=None, headers=None):
    c = http.client.HTTPSConnection(URL.hostname, URL.port, context=CTX, timeout=20)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        js = json.loads(data) if data else None
    except ValueError:
        js = None
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), js


def assertion(key=KEY, alg="ES384", **over):
    now = int(time.time())
    claims = {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now + 240,
              "jti": str(uuid.uuid4()), "iat": now}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": "JWT"})


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def forged(alg, secret=None):
    now = int(time.time())
    h = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    p = b64(json.dumps({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now + 240,
                        "jti": str(uuid.uuid4())}).encode())
    if secret is None:
        return h + "." + p + "."
    sig = hmac.new(secret, (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64(sig)


def token_req(a, scope="system/Observation.rs system/Patient.r", **extra):
    form = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": a, "scope": scope}
    form.update(extra)
    form = {k: v for k, v in form.items() if v is not None}
    return call("POST", "/auth/token", urllib.parse.urlencode(form),
                {"Content-Type": "application/x-www-form-urlencoded"})


def refused(res, what, status=401, error="invalid_client"):
    st, hd, js = res
    ok(st == status and js and js.get("error") == error, what,
       "%d %r" % (st, js))


# ---------- discovery ----------
st, hd, cfg = call("GET", "/.well-known/smart-configuration")
ok(st == 200 and cfg["token_endpoint"] == TOKEN_URL, "smart-configuration names the token URL",
   repr(cfg))
ok("private_key_jwt" in cfg["token_endpoint_auth_methods_supported"] and
   "client_credentials" in cfg["grant_types_supported"], "private_key_jwt, client_credentials")
st, hd, cs = call("GET", "/fhir/metadata")
ext = json.dumps(cs["rest"][0]["security"])
ok(TOKEN_URL in ext, "the CapabilityStatement names the token URL too")

# ---------- a good assertion ----------
a = assertion()
st, hd, tk = token_req(a)
ok(st == 200 and tk["token_type"] == "bearer" and tk["expires_in"] <= 300, "a token", repr(tk))
ok(tk["scope"] == "system/Observation.rs system/Patient.r", "the scopes granted", tk["scope"])
ok(hd.get("cache-control", "").startswith("no-store"), "Cache-Control: no-store")
TOK = tk["access_token"]
refused(token_req(a), "the same assertion again: jti replayed")

# ---------- the token's scopes are enforced with the policy ----------
auth = {"Authorization": "Bearer " + TOK}
feed = {"Authorization": "Bearer " + os.environ["FEED"], "Content-Type": "application/fhir+json"}
pat = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "SM-1"}]}
st, hd, p = call("POST", "/fhir/Patient", json.dumps(pat), feed)
ok(st == 201, "the service makes a Patient")
obs = {"resourceType": "Observation", "status": "final",
       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
       "subject": {"reference": "Patient/" + p["id"]}, "effectiveDateTime": "2026-12-01T10:00:00Z",
       "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org",
                         "code": "/min"}}
st, hd, o = call("POST", "/fhir/Observation", json.dumps(obs), feed)
ok(st == 201, "and an Observation")
st, hd, js = call("GET", "/fhir/Patient/" + p["id"], headers=auth)
ok(st == 200, "system/Patient.r reads a Patient")
st, hd, js = call("GET", "/fhir/Observation?patient=" + p["id"], headers=auth)
ok(st == 200 and js["total"] == 1, "system/Observation.rs searches Observations")
st, hd, js = call("GET", "/fhir/Patient?identifier=SM-1", headers=auth)
ok(st == 403 and js["resourceType"] == "OperationOutcome", "no s on Patient: search refused")
st, hd, js = call("POST", "/fhir/Observation", json.dumps(obs),
                  dict(auth, **{"Content-Type": "application/fhir+json"}))
ok(st == 403, "no c on Observation: create refused")
st, hd, js = call("GET", "/fhir/Observation?patient=%s&_include=Observation:subject" % p["id"],
                  headers=auth)
ok(st == 200 and len(js["entry"]) == 2, "_include of a Patient it may read")
tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
    {"request": {"method": "POST", "url": "Observation"}, "resource": obs}]}
st, hd, js = call("POST", "/fhir", json.dumps(tx), dict(auth, **{"Content-Type":
                                                               "application/fhir+json"}))
ok(st == 403 and js["issue"][0]["expression"] == ["Bundle.entry[0]"],
   "a transaction entry outside the scopes", "%d %r" % (st, js))
st, hd, js = call("GET", "/api/records", headers=auth)
ok(st == 401, "a SMART token is for /fhir only")
st, hd, js = call("GET", "/fhir/Patient/" + p["id"], headers={"Authorization":
                                                              "Bearer hdxs_" + "A" * 43})
ok(st == 401, "a made-up token")

# ---------- narrower and wider requests ----------
st, hd, tk2 = token_req(assertion(), scope="system/Observation.r")
ok(st == 200 and tk2["scope"] == "system/Observation.r", "a narrower request gets what it asked")
st, hd, js = call("GET", "/fhir/Observation?patient=" + p["id"],
                  headers={"Authorization": "Bearer " + tk2["access_token"]})
ok(st == 403, "and no more (no s)")
st, hd, tk3 = token_req(assertion(), scope="system/*.cruds")
ok(st == 200 and tk3["scope"] == "system/Observation.rs system/Patient.r",
   "a wider request is narrowed to the registration", repr(tk3))
refused(token_req(assertion(), scope="system/Device.r"), "a scope outside the registration",
        400, "invalid_scope")
refused(token_req(assertion(), scope="launch openid"), "not SMART clinical scopes", 400,
        "invalid_scope")

# ---------- bad assertions: each refused, never a 500 ----------
now = int(time.time())
refused(token_req(assertion(exp=now - 120)), "expired")
refused(token_req(assertion(exp=None)), "no exp")
refused(token_req(assertion(exp=now + 3600)), "exp more than five minutes ahead")
refused(token_req(assertion(nbf=now + 600)), "not yet valid")
refused(token_req(assertion(aud="https://elsewhere.example/auth/token")), "another audience")
refused(token_req(assertion(sub="someone-else")), "sub other than iss")
refused(token_req(assertion(jti=None)), "no jti")
refused(token_req(assertion(key=OTHER)), "signed with a key not registered")
refused(token_req(assertion(iss="nobody", sub="nobody")), "a client nobody registered")
refused(token_req(forged("none")), "alg none")
refused(token_req(forged("HS256", PUB)), "an HMAC keyed with the public key")
refused(token_req(forged("ES256", b"x")), "alg ES256 (not allowed)")
refused(token_req("not.a.jwt"), "junk")
refused(token_req("A" * 9000), "over 8 KiB", 400, "invalid_request")
refused(token_req(assertion(), grant_type="password"), "another grant type", 400,
        "unsupported_grant_type")
refused(token_req(assertion(), client_assertion_type="urn:x"), "another assertion type", 400,
        "invalid_request")
st, hd, js = call("POST", "/auth/token", "{}", {"Content-Type": "application/json"})
ok(st == 400 and js["error"] == "invalid_request", "not a form")

with open(os.environ["STATE"], "w") as f:
    json.dump({"token": TOK, "patient": p["id"]}, f)
print("checks=%d" % CHECKS)
