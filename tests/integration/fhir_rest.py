"""FHIR R4 REST checks against a running hdxd (tests/integration/69-fhir-rest).

Python's own http.client over TLS, keep-alive; no FHIR library, so every status, header and
body is checked as sent. Env: URL (https://localhost:PORT), CA, TOK_FEED (an integration
API key), TOK_CLIN (a clinician on PAT-A's care team), TOK_NURSE (a nurse on no care team),
STATE (a file the checks write ids into for the shell part).
Prints "ok: WHAT" per check; exits 1 at the first failure.
"""
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ["URL"])
CTX = ssl.create_default_context(cafile=os.environ["CA"])
TOK = {"feed": os.environ["TOK_FEED"], "clin": os.environ["TOK_CLIN"],
       "nurse": os.environ["TOK_NURSE"]}
CHECKS = 0
SEEN = []  # every resource an answer carried, for the validators (the shell part runs them)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ok(cond, what, detail=""):
    global CHECKS
    if not cond:
        fail(what + (": " + detail if detail else ""))
    CHECKS += 1
    print("ok: " + what)


class Client:
    def __init__(self, who):
        self.who = who
        self.conn = http.client.HTTPSConnection(URL.hostname, URL.port, context=CTX, timeout=20)

    def req(self, method, path, body=None, headers=None, ctype="application/fhir+json",
            raw=None):
        h = {"Accept": "application/fhir+json"}
        if self.who:
            h["Authorization"] = "Bearer " + TOK[self.who]
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and ctype:
            h["Content-Type"] = ctype
        h.update(headers or {})
        self.conn.request(method, "/fhir" + path, body=data, headers=h)
        r = self.conn.getresponse()
        text = r.read()
        try:
            js = json.loads(text) if text else None
        except ValueError:
            js = None
        # (the CapabilityStatement is test 70's: the schema package knows 4.0.0, not 4.0.1)
        if isinstance(js, dict) and js.get("resourceType") not in (None, "CapabilityStatement") \
                and len(SEEN) < 400:
            SEEN.append(js)
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPSConnection(URL.hostname, URL.port, context=CTX,
                                                    timeout=20)
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), js


def outcome(js, what):
    ok(js is not None and js.get("resourceType") == "OperationOutcome"
       and js["issue"][0]["severity"] == "error", what + " (OperationOutcome)", repr(js)[:300])


def expect(res, status, what):
    st, hd, js = res
    ok(st == status, what, "status %d, wanted %d: %s" % (st, status, repr(js)[:300]))
    if status >= 400:
        outcome(js, what)
    return st, hd, js


def ids(bundle, mode="match"):
    return [e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == mode]


feed, clin, nurse = Client("feed"), Client("clin"), Client("nurse")
anon = Client(None)

# ---------- metadata, authentication ----------
st, hd, cs = expect(anon.req("GET", "/metadata"), 200, "metadata without a token")
ok(cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1", "R4")
obs_cap = [r for r in cs["rest"][0]["resource"] if r["type"] == "Observation"][0]
ok({p["name"] for p in obs_cap["searchParam"]} >= {"patient", "code", "date", "category"},
   "the Observation search parameters are declared")
ok("application/fhir+json" in hd["content-type"], "content type fhir+json")
st, hd, js = expect(anon.req("GET", "/Patient"), 401, "no token: 401")
ok(hd.get("www-authenticate", "").startswith("Bearer"), "WWW-Authenticate: Bearer")

# ---------- create, read ----------
def patient(mrn, family, given, bd):
    return {"resourceType": "Patient", "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1",
                                                       "value": mrn}],
            "name": [{"family": family, "given": [given]}], "birthDate": bd}


st, hd, pa = expect(feed.req("POST", "/Patient", patient("PAT-A", "Kestrel", "Ada", "1970-05-12")),
                    201, "create Patient A")
A = pa["id"]
ok(hd["location"].endswith("/fhir/Patient/%s/_history/1" % A), "Location names version 1",
   hd["location"])
ok(hd["etag"] == 'W/"1"' and pa["meta"]["versionId"] == "1", "ETag W/\"1\"")
st, hd, pb = expect(feed.req("POST", "/Patient", patient("PAT-B", "Moravec", "Bram", "1981-11-02")),
                    201, "create Patient B")
B = pb["id"]


def hr(pid, value, when):
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system":
                                      "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}]},
            "subject": {"reference": "Patient/" + pid}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "/min", "system":
                              "http://unitsofmeasure.org", "code": "/min"}}


def bp(pid, sys_, dia, when):
    q = lambda v: {"value": v, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                   "code": "mm[Hg]"}
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/" + pid}, "effectiveDateTime": when,
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                           "valueQuantity": q(sys_)},
                          {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                           "valueQuantity": q(dia)}]}


o1 = expect(feed.req("POST", "/Observation", hr(A, 72, "2026-11-30T08:00:00Z")), 201,
            "heart rate of A")[2]["id"]
o2 = expect(feed.req("POST", "/Observation", bp(A, 120, 80, "2026-12-01T09:30:00+01:00")), 201,
            "blood pressure of A")[2]["id"]
o3 = expect(feed.req("POST", "/Observation", hr(B, 90, "2026-12-01T10:00:00Z")), 201,
            "heart rate of B")[2]["id"]
st, hd, r = expect(feed.req("GET", "/Observation/" + o1), 200, "read")
ok(r["valueQuantity"]["value"] == 72 and r["subject"]["reference"] == "Patient/" + A,
   "read gives what was created")
ok(hd["etag"] == 'W/"1"' and "last-modified" in hd, "read: ETag and Last-Modified")
expect(feed.req("GET", "/Observation/" + o1 + "/_history/1"), 200, "vread")
expect(feed.req("GET", "/Observation/" + o1 + "/_history/2"), 404, "vread of a version not made")
expect(feed.req("GET", "/Observation/nosuchid"), 404, "an unknown id")
expect(feed.req("GET", "/Basic/x"), 404, "an unsupported type")

# ---------- update, If-Match ----------
pa2 = dict(pa)
pa2["name"] = [{"family": "Kestrel", "given": ["Ada", "Maren"]}]
st, hd, r = expect(feed.req("PUT", "/Patient/" + A, pa2, {"If-Match": 'W/"1"'}), 200,
                   "update with the current If-Match")
ok(r["meta"]["versionId"] == "2" and hd["etag"] == 'W/"2"', "version 2")
expect(feed.req("PUT", "/Patient/" + A, pa2, {"If-Match": 'W/"1"'}), 412, "a stale If-Match")
st, hd, r = expect(feed.req("GET", "/Patient/" + A + "/_history/1"), 200, "version 1 is kept")
ok(r["name"][0]["given"] == ["Ada"], "version 1 as it was")
bad = dict(pa2)
bad["id"] = B
expect(feed.req("PUT", "/Patient/" + A, bad), 400, "an id in the body other than the URL's")
nid = dict(pa2)
nid["id"] = "not-there"
expect(feed.req("PUT", "/Patient/not-there", nid), 405, "update-as-create is not supported")

# ---------- bad input: nothing stored ----------
before = expect(feed.req("GET", "/Observation?_summary=count"), 200, "count")[2]["total"]
expect(feed.req("POST", "/Observation", hr(A, 1, "2026-12-01T00:00:00Z"), ctype="text/plain"), 415,
       "a body that is not fhir+json")
expect(feed.req("POST", "/Observation", raw=b'{"resourceType": "Observation", '), 400,
       "malformed JSON")
expect(feed.req("POST", "/Observation",
                raw=b'{"resourceType":"Observation","status":"final","status":"final"}'), 400,
       "a duplicate key")
expect(feed.req("POST", "/Observation", patient("X", "Y", "Z", "1990")), 400,
       "a Patient posted to /Observation")
expect(feed.req("POST", "/Observation", raw=b"[" * 40 + b"]" * 40), 400, "deep nesting")
inval = hr(A, 1, "2026-12-01T00:00:00Z")
inval["valueQuantity"]["value"] = "72"
st, hd, js = expect(feed.req("POST", "/Observation", inval), 400, "a decimal as a string")
ok(js["issue"][0].get("expression") == ["Observation.valueQuantity.value"], "the path is named",
   repr(js["issue"][0]))
inval = hr(A, 1, "2026-12-01T00:00:00Z")
inval["colour"] = "blue"
st, hd, js = expect(feed.req("POST", "/Observation", inval), 400, "an unknown element")
ok(js["issue"][0].get("expression") == ["Observation.colour"], "named", repr(js["issue"][0]))
inval = hr(A, 1, "2026-12-01T08:00:00")
st, hd, js = expect(feed.req("POST", "/Observation", inval), 400, "a dateTime without a zone")
ok(js["issue"][0].get("expression") == ["Observation.effectiveDateTime"], "named")
inval = hr(A, 1, "2026-02-30")
expect(feed.req("POST", "/Observation", inval), 400, "February 30th")
inval = hr(A, 1, "2026-12-01T00:00:00Z")
del inval["status"]
st, hd, js = expect(feed.req("POST", "/Observation", inval), 400, "a required element missing")
ok(js["issue"][0].get("expression") == ["Observation.status"], "named")
expect(feed.req("POST", "/Observation", raw=b'{"resourceType":"Observation","x":"' +
                b"a" * (1100 * 1024) + b'"}'), 413, "a resource over 1 MiB")
expect(feed.req("POST", "/Observation", hr("nosuchpatient", 1, "2026-12-01T00:00:00Z")), 422,
       "a reference to a Patient that does not exist")
noref = hr(A, 1, "2026-12-01T00:00:00Z")
noref["subject"] = {"reference": "Group/x"}
expect(feed.req("POST", "/Observation", noref), 422, "a subject that is not a Patient")
expect(feed.req("POST", "/AuditEvent", {"resourceType": "AuditEvent"}), 403,
       "AuditEvent is not writable")
after = expect(feed.req("GET", "/Observation?_summary=count"), 200, "count again")[2]["total"]
ok(after == before, "nothing was stored by any refused write", "%d -> %d" % (before, after))

# ---------- search ----------
def search(c, q, status=200, what=None):
    return expect(c.req("GET", q), status, what or ("search " + q))[2]


b = search(feed, "/Observation?patient=Patient/" + A)
ok(sorted(ids(b)) == sorted([o1, o2]) and b["total"] == 2, "by patient", repr(ids(b)))
b = search(feed, "/Observation?subject=" + A)
ok(sorted(ids(b)) == sorted([o1, o2]), "by subject, a bare id")
b = search(feed, "/Observation?code=http://loinc.org|8867-4")
ok(sorted(ids(b)) == sorted([o1, o3]), "by code system|code")
b = search(feed, "/Observation?code=8867-4,85354-9&patient=" + A)
ok(sorted(ids(b)) == sorted([o1, o2]), "comma is OR, and AND with patient")
b = search(feed, "/Observation?code=8480-6")
ok(ids(b) == [o2], "a component's code finds its panel")
b = search(feed, "/Observation?category=vital-signs")
ok(sorted(ids(b)) == sorted([o1, o3]), "by category")
b = search(feed, "/Observation?date=ge2026-12-01")
ok(sorted(ids(b)) == sorted([o2, o3]), "date ge a day", repr(ids(b)))
b = search(feed, "/Observation?date=lt2026-12-01")
ok(ids(b) == [o1], "date lt a day")
b = search(feed, "/Observation?date=2026-12-01T08:30:00Z")
ok(ids(b) == [o2], "date eq an instant (09:30+01:00 is 08:30Z)", repr(ids(b)))
b = search(feed, "/Observation?date=2026-11")
ok(ids(b) == [o1], "date eq a month")
b = search(feed, "/Observation?date=ge2026-11-30&date=lt2026-12-01T09:00:00Z")
ok(sorted(ids(b)) == sorted([o1, o2]), "two date bounds")
b = search(feed, "/Observation?_sort=-date")
ok(ids(b) == [o3, o2, o1], "_sort=-date newest first", repr(ids(b)))
b = search(feed, "/Observation?_sort=-date&_count=1")
ok(ids(b) == [o3] and b["total"] == 3, "_count=1 gives one, total all")
nxt = [l["url"] for l in b["link"] if l["relation"] == "next"]
ok(len(nxt) == 1, "a next link")
b = search(feed, nxt[0][nxt[0].index("/fhir") + 5:], what="the next page")
ok(ids(b) == [o2], "the next page is the next one", repr(ids(b)))
b = search(feed, "/Observation?_summary=count&patient=" + A)
ok(b["total"] == 2 and "entry" not in b, "_summary=count")
b = search(feed, "/Observation?patient=%s&_include=Observation:subject" % A)
ok(ids(b, "include") == [A] and sorted(ids(b)) == sorted([o1, o2]), "_include=Observation:subject")
b = search(feed, "/Observation?patient=Patient/nobody")
ok(b["total"] == 0, "a patient that does not exist matches nothing")
for q in ["/Observation?foo=1", "/Observation?value-quantity=72", "/Patient?code=1"]:
    st, hd, js = expect(feed.req("GET", q), 400, "unsupported parameter " + q)
    name = q.split("?")[1].split("=")[0]
    ok(name in js["issue"][0]["diagnostics"], "the parameter is named")
expect(feed.req("GET", "/Observation?date=ge2026-13-01"), 400, "a bad date")
expect(feed.req("GET", "/Observation?c%C3%B6de=1"), 400, "a parameter name outside FHIR's letters")
expect(feed.req("GET", "/Observation?_count=x"), 400, "a bad _count")
b = search(feed, "/Patient?identifier=urn:oid:2.16.840.1.113883.3.1|PAT-A")
ok(ids(b) == [A], "Patient by identifier system|value")
b = search(feed, "/Patient?identifier=PAT-B")
ok(ids(b) == [B], "Patient by identifier value")
b = search(feed, "/Patient?name=kes")
ok(ids(b) == [A], "Patient by name prefix, any case")
b = search(feed, "/Patient?name=maren")
ok(ids(b) == [A], "the current version's names (Maren came in version 2)")
b = search(feed, "/Patient?birthdate=1981")
ok(ids(b) == [B], "Patient by birth year")
expect(feed.req("GET", "/Patient?birthdate=ge1970"), 400, "birthdate ranges are not supported")

# ---------- history, delete ----------
st, hd, h = expect(feed.req("GET", "/Patient/%s/_history" % A), 200, "instance history")
ok(h["type"] == "history" and [e["resource"]["meta"]["versionId"] for e in h["entry"]] ==
   ["2", "1"], "both versions, newest first")
expect(feed.req("DELETE", "/Observation/" + o3), 204, "delete")
expect(feed.req("GET", "/Observation/" + o3), 410, "a deleted resource is gone")
expect(feed.req("DELETE", "/Observation/" + o3), 204, "delete again: idempotent")
expect(feed.req("DELETE", "/Observation/nosuch"), 404, "delete of an unknown id")
b = search(feed, "/Observation?code=8867-4")
ok(ids(b) == [o1], "search no longer finds it")
st, hd, h = expect(feed.req("GET", "/Observation/%s/_history" % o3), 200, "its history")
ok(h["entry"][0]["request"]["method"] == "DELETE" and len(h["entry"]) == 2,
   "the history keeps the deletion and the version")
st, hd, h = expect(feed.req("GET", "/Observation/_history"), 200, "type history")
ok(h["total"] == 4, "every Observation version", str(h["total"]))

# ---------- conditional create: eight at once make one ----------
cond = patient("C-1", "Lindqvist", "Esme", "1990-01-01")
cond["identifier"][0]["system"] = "urn:x"
res = [None] * 8


def post(i):
    c = Client("feed")
    res[i] = c.req("POST", "/Patient", cond, {"If-None-Exist": "identifier=urn:x|C-1"})


ts = [threading.Thread(target=post, args=(i,)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
codes = sorted(r[0] for r in res)
ok(codes == [200] * 7 + [201], "one 201 and seven 200", repr(codes))
ok(len({r[2]["id"] for r in res}) == 1, "all eight name the same resource")
b = search(feed, "/Patient?identifier=urn:x|C-1")
ok(b["total"] == 1, "exactly one stored")

# ---------- BOLA: a clinician on A's care team only ----------
expect(clin.req("GET", "/Patient/" + A), 200, "the clinician reads A")
expect(clin.req("GET", "/Patient/" + B), 404, "B by id: not found")
expect(clin.req("GET", "/Patient/%s/_history/1" % B), 404, "B by version")
expect(clin.req("GET", "/Patient/%s/_history" % B), 404, "B's history")
b = search(clin, "/Patient?identifier=PAT-B")
ok(b["total"] == 0, "B by search")
b = search(clin, "/Patient?name=mora")
ok(b["total"] == 0, "B by name")
b = search(clin, "/Observation?patient=" + B)
ok(b["total"] == 0, "B's observations")
b = search(clin, "/Observation?_include=Observation:subject")
ok(B not in ids(b, "include") and A in ids(b, "include") and o1 in ids(b),
   "_include brings A only")
st, hd, h = expect(clin.req("GET", "/Observation/_history"), 200, "type history")
ok(all(e["resource"]["subject"]["reference"] == "Patient/" + A for e in h["entry"]
       if "resource" in e), "type history: A's only")
expect(clin.req("POST", "/Observation", hr(B, 1, "2026-12-01T00:00:00Z")), 422,
       "a write that refers to B: as if B did not exist")
expect(clin.req("POST", "/Observation", hr(A, 64, "2026-12-01T11:00:00Z")), 201,
       "the clinician writes for A")
expect(nurse.req("GET", "/Patient/" + A), 404, "a nurse on no care team: A not found")
b = search(nurse, "/Observation")
ok(b["total"] == 0, "nor any observation")

# ---------- a deleted Patient: what refers to it is still found by it ----------
st, hd, pz = expect(feed.req("POST", "/Patient", patient("DEL-1", "Falk", "Dagny", "1960")), 201,
                    "a Patient to delete")
oz = expect(feed.req("POST", "/Observation", hr(pz["id"], 61, "2026-12-01T06:00:00Z")), 201,
            "its Observation")[2]["id"]
expect(feed.req("DELETE", "/Patient/" + pz["id"]), 204, "the Patient deleted")
ok(ids(search(feed, "/Observation?patient=" + pz["id"])) == [oz],
   "its Observation is still found by patient=")
expect(feed.req("POST", "/Observation", hr(pz["id"], 62, "2026-12-01T07:00:00Z")), 422,
       "but nothing new refers to a deleted Patient")

# ---------- transaction: all or nothing, one record; batch: per entry ----------
def entry(full, method, url, res=None, **req):
    e = {"request": dict(method=method, url=url, **req)}
    if full:
        e["fullUrl"] = full
    if res is not None:
        e["resource"] = res
    return e


tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
    entry("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "POST", "Patient",
          patient("T-1", "Oyelaran", "Clio", "2001-02-03")),
    entry("urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059", "POST", "Observation",
          hr("X", 77, "2026-12-01T12:00:00Z")),
    entry(None, "PUT", "Patient/" + B, dict(pb, gender="male"), ifMatch='W/"1"'),
]}
tx["entry"][1]["resource"]["subject"] = {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}
records_before = expect(feed.req("GET", "/Patient/_history"), 200, "history before")[2]["total"]
st, hd, tr = expect(feed.req("POST", "", tx), 200, "a transaction")
ok(tr["type"] == "transaction-response" and [e["response"]["status"][:3] for e in tr["entry"]] ==
   ["201", "201", "200"], "each entry answered", repr(tr)[:300])
tp = tr["entry"][0]["response"]["location"].split("/")[1]
to = tr["entry"][1]["response"]["location"].split("/")[1]
st, hd, r = expect(feed.req("GET", "/Observation/" + to), 200, "the transaction's Observation")
ok(r["subject"]["reference"] == "Patient/" + tp, "its urn:uuid reference resolved to the new id")
b = search(feed, "/Observation?patient=" + tp)
ok(ids(b) == [to], "searchable by its new patient")
ok(expect(feed.req("GET", "/Patient/" + B), 200, "B")[2]["gender"] == "male", "the PUT applied")
bad_tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
    entry(None, "POST", "Patient", patient("T-2", "Pell", "Greta", "1999")),
    entry(None, "POST", "Observation", hr("nosuch", 1, "2026-12-01T00:00:00Z")),
]}
st, hd, js = expect(feed.req("POST", "", bad_tx), 422, "a transaction with one bad entry")
ok(js["issue"][0].get("expression") == ["Bundle.entry[1]"] and
   "nothing was stored" in js["issue"][0]["diagnostics"], "the failing entry is named",
   repr(js["issue"]))
ok(search(feed, "/Patient?identifier=T-2")["total"] == 0, "its good entry was not stored")
stale = {"resourceType": "Bundle", "type": "transaction", "entry": [
    entry(None, "POST", "Patient", patient("T-3", "Pell", "Greta", "1999")),
    entry(None, "PUT", "Patient/" + B, pb, ifMatch='W/"1"')]}
st, hd, js = expect(feed.req("POST", "", stale), 412, "a transaction with a stale ifMatch")
ok(search(feed, "/Patient?identifier=T-3")["total"] == 0, "nothing of it stored")
invalid = {"resourceType": "Bundle", "type": "transaction", "entry": [
    entry(None, "POST", "Observation", dict(hr(A, 1, "2026-12-01T00:00:00Z"), status=7))]}
st, hd, js = expect(feed.req("POST", "", invalid), 400, "a transaction with an invalid resource")
ok(js["issue"][0].get("expression") == ["Bundle.entry[0].resource.status"], "the path names it",
   repr(js["issue"]))
batch = {"resourceType": "Bundle", "type": "batch", "entry": [
    entry(None, "POST", "Patient", patient("T-4", "Nakano", "Freya", "1988")),
    entry(None, "POST", "Observation", hr("nosuch", 1, "2026-12-01T00:00:00Z")),
    entry(None, "DELETE", "Observation/" + o2)]}
st, hd, br = expect(feed.req("POST", "", batch), 200, "a batch")
codes = [e["response"]["status"][:3] for e in br["entry"]]
ok(br["type"] == "batch-response" and codes == ["201", "422", "204"], "per-entry outcomes",
   repr(codes))
ok(br["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome",
   "the refused entry has its OperationOutcome")
ok(search(feed, "/Patient?identifier=T-4")["total"] == 1, "the good entry stored")
expect(feed.req("GET", "/Observation/" + o2), 410, "the batch's delete applied")
expect(feed.req("POST", "", {"resourceType": "Bundle", "type": "collection"}), 400,
       "a collection is not a transaction")

# ---------- GET entries: run as the request they name, after the Bundle's writes ----------
st, hd, pa_now = expect(feed.req("GET", "/Patient/" + A), 200, "A as it is")
etag_a = hd["etag"]
gb = {"resourceType": "Bundle", "type": "batch", "entry": [
    entry(None, "GET", "Patient/" + A),
    entry(None, "GET", "Patient/nosuch"),
    entry(None, "GET", "Observation?patient=Patient/%s&code=8867-4" % A),
    entry(None, "GET", "Patient/%s/_history/1" % A),
    entry(None, "GET", "Patient/" + A, ifNoneMatch=etag_a),
    entry(None, "GET", "Patient/" + A, ifModifiedSince="2999-01-01T00:00:00Z"),
    entry(None, "GET", "Patient/" + A, ifModifiedSince="2000-01-01T00:00:00Z"),
    entry(None, "GET", "Patient/%s/_history" % A),
    entry(None, "GET", search(feed, "/Patient?identifier=PAT-A")["entry"][0]["fullUrl"])]}
st, hd, gr = expect(feed.req("POST", "", gb), 200, "a batch of GET entries")
codes = [e["response"]["status"][:3] for e in gr["entry"]]
ok(codes == ["200", "404", "200", "200", "304", "304", "200", "200", "200"],
   "each GET entry answered as alone", repr(codes))
ok(gr["entry"][0]["resource"]["id"] == A and gr["entry"][0]["response"]["etag"] == etag_a and
   gr["entry"][0]["response"]["lastModified"] == pa_now["meta"]["lastUpdated"],
   "a read: the resource, its ETag and lastModified", repr(gr["entry"][0])[:300])
ok(gr["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome" and
   "resource" not in gr["entry"][1], "an unknown id: 404 with its OperationOutcome")
sb = gr["entry"][2]["resource"]
ok(sb["type"] == "searchset" and o1 in ids(sb) and
   all(x["resource"]["subject"]["reference"] == "Patient/" + A for x in sb["entry"]),
   "a search entry: its searchset Bundle", repr(sb)[:300])
ok(gr["entry"][3]["resource"]["meta"]["versionId"] == "1", "a vread entry")
ok("resource" not in gr["entry"][4] and "resource" not in gr["entry"][5],
   "304: no resource (ifNoneMatch, ifModifiedSince)")
ok(gr["entry"][7]["resource"]["type"] == "history", "a history entry")
ok(gr["entry"][8]["resource"]["id"] == A, "a GET entry's url under the base")
st, hd, gr = expect(clin.req("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [
    entry(None, "GET", "Patient/" + B), entry(None, "GET", "Patient?identifier=PAT-B"),
    entry(None, "GET", "Patient/" + A)]}), 200, "the clinician's GET entries")
ok([e["response"]["status"][:3] for e in gr["entry"]] == ["404", "200", "200"] and
   gr["entry"][1]["resource"]["total"] == 0 and gr["entry"][2]["resource"]["id"] == A,
   "BOLA: B by id and by search in a Bundle, as alone", repr(gr)[:300])
txg = {"resourceType": "Bundle", "type": "transaction", "entry": [
    entry(None, "GET", "Patient?identifier=TG-1"),
    entry("urn:uuid:0d7c0f84-5d1e-4a53-9d6d-5b1f5b0a7e11", "POST", "Patient",
          patient("TG-1", "Aalto", "Ines", "1977"))]}
st, hd, tr = expect(feed.req("POST", "", txg), 200, "a transaction with a GET entry")
ok([e["response"]["status"][:3] for e in tr["entry"]] == ["200", "201"] and
   tr["entry"][0]["resource"]["total"] == 1 and
   tr["entry"][0]["resource"]["entry"][0]["resource"]["id"] ==
   tr["entry"][1]["response"]["location"].split("/")[1],
   "its GET sees the transaction's writes (GETs run after them)", repr(tr)[:400])
for bad_get, why in (("/Patient/" + A, "a path from the root"), ("Patient/%s/$proof/x" % A, "no such path"),
                     ("Patient/_search", "_search is a POST"),
                     ("Subscription/x/$status", "an operation")):
    bg = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(None, "POST", "Patient", patient("TG-2", "Aalto", "Ines", "1977")),
        entry(None, "GET", bad_get)]}
    st, hd, js = expect(feed.req("POST", "", bg), 400, "a transaction with a bad GET: " + why)
    ok(js["issue"][0].get("expression") == ["Bundle.entry[1]"], "the GET entry is named")
ok(search(feed, "/Patient?identifier=TG-2")["total"] == 0, "nothing of them stored")
bg = {"resourceType": "Bundle", "type": "batch",
      "entry": [entry(None, "GET", "Patient/" + A) for _ in range(21)]}
expect(feed.req("POST", "", bg), 413, "over 20 GET entries")
st, hd, js = expect(feed.req("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [
    dict(entry(None, "GET", "Patient/" + A), resource=patient("X", "Y", "Z", "1990")),
    entry(None, "GET", "Observation?code=8867-4", ifNoneMatch='W/"1"')]}),
    200, "a GET entry with a resource, a search with ifNoneMatch")
ok([e["response"]["status"][:3] for e in js["entry"]] == ["400", "400"], "refused per entry",
   repr(js)[:300])
st, hd, js = expect(feed.req("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [
    entry(None, "GET", "Patient/" + A, ifModifiedSince="yesterday")]}), 400,
    "an ifModifiedSince that is not an instant")
ok(js["issue"][0].get("expression") == ["Bundle.entry[0].request.ifModifiedSince"],
   "the path names it", repr(js["issue"]))

# ---------- conditional entries: ifNoneExist, as the conditional create ----------
def cond_tx(mrn, full):
    p = patient(mrn, "Brandt", "Oda", "1966")
    p["identifier"][0]["system"] = "urn:y"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(full, "POST", "Patient", p, ifNoneExist="identifier=urn:y|" + mrn),
        entry(None, "POST", "Observation", dict(hr("X", 70, "2026-12-02T08:00:00Z"),
                                                subject={"reference": full}))]}


U1 = "urn:uuid:7f3a2e6c-1d4b-4c59-9a57-2b8e0c6d1f01"
st, hd, c1 = expect(feed.req("POST", "", cond_tx("TC-1", U1)), 200, "ifNoneExist: no match")
ok([e["response"]["status"][:3] for e in c1["entry"]] == ["201", "201"], "created",
   repr(c1)[:300])
pc = c1["entry"][0]["response"]["location"].split("/")[1]
st, hd, c2 = expect(feed.req("POST", "", cond_tx("TC-1", U1)), 200, "ifNoneExist: one match")
ok([e["response"]["status"][:3] for e in c2["entry"]] == ["200", "201"] and
   c2["entry"][0]["response"]["location"] == "Patient/%s/_history/1" % pc,
   "the match answered, with its location", repr(c2)[:300])
oc = c2["entry"][1]["response"]["location"].split("/")[1]
ok(expect(feed.req("GET", "/Observation/" + oc), 200, "its Observation")[2]["subject"]
   ["reference"] == "Patient/" + pc, "the fullUrl of a matched entry names the match")
ok(search(feed, "/Patient?identifier=urn:y|TC-1")["total"] == 1, "one Patient stored")
res = [None] * 6


def post_tx(i):
    res[i] = Client("feed").req("POST", "", cond_tx("TC-2", "urn:uuid:5b0e%04d-1d4b-4c59-9a57-2b8e0c6d1f01" % i))


ts = [threading.Thread(target=post_tx, args=(i,)) for i in range(6)]
[t.start() for t in ts]
[t.join() for t in ts]
firsts = sorted(r[2]["entry"][0]["response"]["status"][:3] for r in res if r[0] == 200)
ok(len(firsts) == 6 and firsts == ["200"] * 5 + ["201"],
   "six identical conditional transactions at once: one creates", repr([r[0] for r in res]))
ok(search(feed, "/Patient?identifier=urn:y|TC-2")["total"] == 1, "exactly one Patient of them")
ok(len({r[2]["entry"][0]["response"]["location"] for r in res}) == 1, "all six name it")
for _ in range(2):
    dp = patient("TC-DUP", "Brandt", "Oda", "1966")
    dp["identifier"][0]["system"] = "urn:y"
    expect(feed.req("POST", "/Patient", dp), 201, "a Patient twice, unconditionally")
st, hd, js = expect(feed.req("POST", "", cond_tx("TC-DUP", U1)), 412,
                    "ifNoneExist matching two: 412")
ok(js["issue"][0].get("expression") == ["Bundle.entry[0]"], "the entry is named")
bt = cond_tx("TC-3", U1)
bt["type"] = "batch"
bt["entry"][0]["request"]["ifNoneExist"] = "nosuchparam=1"
bt["entry"][1]["resource"]["subject"] = {"reference": "Patient/" + pc}
st, hd, js = expect(feed.req("POST", "", bt), 200, "a batch with a bad ifNoneExist")
ok([e["response"]["status"][:3] for e in js["entry"]] == ["400", "201"],
   "refused on its own", repr(js)[:300])
ok(search(feed, "/Patient?identifier=urn:y|TC-3")["total"] == 0, "and not created")
st, hd, js = expect(feed.req("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [
    entry(None, "PUT", "Patient?identifier=PAT-A", pa_now)]}), 400,
    "conditional update: not supported, said so")
ok("conditional update" in js["issue"][0]["diagnostics"], "named", repr(js["issue"]))
big = {"resourceType": "Bundle", "type": "batch",
       "entry": [entry(None, "DELETE", "Observation/x%d" % i) for i in range(101)]}
expect(feed.req("POST", "", big), 413, "over 100 entries")

# ---------- proofs: the version's record in the signed log ----------
for _ in range(40):
    st, hd, pr = feed.req("GET", "/Observation/%s/$proof" % o1)
    if st == 200:
        break
    time.sleep(0.1)
ok(st == 200 and pr.get("type") == "inclusion", "the inclusion proof of a version",
   "%d %r" % (st, pr))
ok(hd.get("x-hdx-record", "").startswith("seq=%d;" % pr["seq"]), "of the record it names")
with open(os.environ["STATE"] + ".proof", "w") as f:
    json.dump(pr, f)
st, hd, pr = feed.req("GET", "/Patient/%s/_history/1/$proof" % A)
ok(st == 200, "a past version's proof")
expect(clin.req("GET", "/Patient/%s/$proof" % B), 404, "no proof of what one may not read")

with open(os.environ["STATE"], "w") as f:
    json.dump({"A": A, "B": B, "o1": o1, "o2": o2, "o3": o3}, f)
with open(os.environ["STATE"] + ".seen", "w") as f:
    json.dump(SEEN, f)
print("checks=%d" % CHECKS)
