#!/usr/bin/python3
"""An independent verifier of hdx proofs, written from docs/LOG-FORMAT.md only: Python's
standard library for SHA-256 and python3-cryptography for Ed25519. Shares no code with hdx.
usage: verify_log.py PUBKEY.pem PROOF.json   -> prints "valid" (exit 0) or "invalid: why" (1)"""
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_sth(pub, sth):
    signed = b"HDX-STH-v1" + struct.pack(">QQ", sth["tree_size"], sth["timestamp_ms"]) + \
        bytes.fromhex(sth["root_hash"])
    pub.verify(bytes.fromhex(sth["signature"]), signed)  # raises InvalidSignature
    return bytes.fromhex(sth["root_hash"])


def root_from_path(leaf_index, tree_size, leaf_hash, path):
    """RFC 9162 2.1.3.2 steps 1-6: the root an audit path leads to, or None if malformed."""
    if leaf_index >= tree_size:
        return None
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(leaf_index, tree_size, leaf_hash, path, root):
    """RFC 9162 2.1.3.2."""
    r = root_from_path(leaf_index, tree_size, leaf_hash, path)
    return r is not None and r == root


def verify_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 2.1.4.2."""
    if first == 0 or first > second:
        return False
    if first == second:
        return not path and first_hash == second_hash
    if first & (first - 1) == 0:  # a power of two: the old root is the first node
        path = [first_hash] + path
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def main():
    pub = load_pem_public_key(open(sys.argv[1], "rb").read())
    proof = json.load(open(sys.argv[2]))
    path = [bytes.fromhex(h) for h in proof["path"]]
    try:
        root = verify_sth(pub, proof["sth"])
        if proof["type"] == "inclusion":
            ok = proof["sth"]["tree_size"] == proof["tree_size"] and verify_inclusion(
                proof["leaf_index"], proof["tree_size"], bytes.fromhex(proof["leaf_hash"]), path, root)
        elif proof["type"] == "consistency":
            old_root = bytes.fromhex(proof["old_root"])
            if proof.get("old_sth"):
                ok_old = verify_sth(pub, proof["old_sth"]) == old_root and \
                    proof["old_sth"]["tree_size"] == proof["old_size"]
            else:
                ok_old = True
            ok = ok_old and proof["sth"]["tree_size"] == proof["new_size"] and verify_consistency(
                proof["old_size"], proof["new_size"], old_root, root, path)
        else:
            ok = False
    except InvalidSignature:
        print("invalid: signature")
        return 1
    print("valid" if ok else "invalid: proof")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
