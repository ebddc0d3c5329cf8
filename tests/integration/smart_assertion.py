#!/usr/bin/python3
"""smart_assertion: a SMART Backend Services client assertion (RFC 7523 private_key_jwt,
ES384 or RS384) made by PyJWT (Debian python3-jwt) and python3-cryptography, an implementation
nobody here wrote, for the integration tests of the token endpoint and for the interop vector
tests/data/jwt/ that tests/unit/test_jwt.c checks with hdx's verifier.

  smart_assertion.py --key KEY.pem --client ID --aud TOKEN_URL --exp UNIX --jti JTI
                     [--kid KID] [--alg ES384|RS384] [--iat UNIX] [--nbf UNIX]
      prints the compact JWS (header alg, typ "JWT", kid when given)
  smart_assertion.py --key KEY.pem --jwks [--kid KID]
      prints the JWK Set holding the key's public part (what the client registers)
"""
import argparse
import base64
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--client")
    ap.add_argument("--aud")
    ap.add_argument("--exp", type=int)
    ap.add_argument("--jti")
    ap.add_argument("--kid")
    ap.add_argument("--alg")
    ap.add_argument("--iat", type=int)
    ap.add_argument("--nbf", type=int)
    ap.add_argument("--jwks", action="store_true")
    a = ap.parse_args()
    with open(a.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = a.alg or "ES384"
        algo = jwt.algorithms.ECAlgorithm
    elif isinstance(key, rsa.RSAPrivateKey):
        alg = a.alg or "RS384"
        algo = jwt.algorithms.RSAAlgorithm
    else:
        sys.exit("smart_assertion: an EC or RSA private key is needed")
    if a.jwks:
        jwk = json.loads(algo.to_jwk(key.public_key()))
        if jwk.get("kty") == "EC":
            # PyJWT 2.6 writes x and y in as few bytes as the number needs; RFC 7518 6.2.1.2
            # wants the full coordinate size (48 bytes for P-384), and hdx refuses a short one,
            # so about one fresh key in 128 would not register. Re-encode at full length.
            nums = key.public_key().public_numbers()
            size = (key.curve.key_size + 7) // 8
            for name, val in (("x", nums.x), ("y", nums.y)):
                jwk[name] = base64.urlsafe_b64encode(val.to_bytes(size, "big")).rstrip(b"=").decode()
        if a.kid:
            jwk["kid"] = a.kid
        print(json.dumps({"keys": [jwk]}, separators=(",", ":")))
        return
    if not (a.client and a.aud and a.exp is not None and a.jti):
        sys.exit("smart_assertion: --client, --aud, --exp and --jti are needed")
    claims = {"iss": a.client, "sub": a.client, "aud": a.aud, "exp": a.exp, "jti": a.jti}
    if a.iat is not None:
        claims["iat"] = a.iat
    if a.nbf is not None:
        claims["nbf"] = a.nbf
    headers = {"typ": "JWT"}
    if a.kid:
        headers["kid"] = a.kid
    print(jwt.encode(claims, key, algorithm=alg, headers=headers))


if __name__ == "__main__":
    main()
