"""An independent check of hdx receipts, written only from docs/LOG-FORMAT.md ("Receipts"):
Python's hashlib and struct plus python3-cryptography for Ed25519, no hdx code (the audit-path
walk is verify_log.py's, the independent log verifier).

As a module: zrc_of(ack) -> receipt dict from an AA payload, verify(receipt, pub) -> bool,
make(seq, time_us, leaf_hash, private_key) -> a receipt of a batch of one (for tests that
need a receipt the log signed for a record it does not hold).
As a command: verify_receipt.py PUBKEY.pem RECEIPTS.jsonl -> prints "valid N", exit 0 only
if every line verifies."""
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from verify_log import root_from_path  # the RFC 9162 audit-path walk, same independent code


def _h(b):
    return hashlib.sha256(b).digest()


def entry_hash(seq, time_us, leaf_hash):
    return _h(b"\x00" + struct.pack(">Qq", seq, time_us) + leaf_hash)


def signed_bytes(batch_size, root):
    return b"HDX-RCPT-v1" + struct.pack(">Q", batch_size) + root


def zrc_of(ack):
    """The receipt in an ACK payload (bytes), as the JSON-line dict, or None."""
    text = ack.decode("latin-1")
    fs = text[3]
    for seg in text.split("\r"):
        f = seg.split(fs)
        if f[0] != "ZRC":
            continue
        if len(f) != 9 or f[1] != "1" or len(f[7]) % 64:
            raise ValueError("malformed ZRC: %r" % seg)
        return {
            "seq": int(f[2]), "time_us": int(f[3]), "leaf_hash": f[4], "index": int(f[5]),
            "batch_size": int(f[6]), "path": [f[7][i:i + 64] for i in range(0, len(f[7]), 64)],
            "signature": f[8],
        }
    return None


def verify(r, pub):
    h = entry_hash(r["seq"], r["time_us"], bytes.fromhex(r["leaf_hash"]))
    root = root_from_path(r["index"], r["batch_size"], h, [bytes.fromhex(p) for p in r["path"]])
    if root is None:
        return False
    try:
        pub.verify(bytes.fromhex(r["signature"]), signed_bytes(r["batch_size"], root))
        return True
    except InvalidSignature:
        return False


def make(seq, time_us, leaf_hash, key):
    root = entry_hash(seq, time_us, leaf_hash)
    return {"seq": seq, "time_us": time_us, "leaf_hash": leaf_hash.hex(), "index": 0,
            "batch_size": 1, "path": [], "signature": key.sign(signed_bytes(1, root)).hex()}


def load_public(path):
    with open(path, "rb") as f:
        return load_pem_public_key(f.read())


def load_private(path):
    with open(path, "rb") as f:
        return load_pem_private_key(f.read(), None)


if __name__ == "__main__":
    pub = load_public(sys.argv[1])
    n = 0
    with open(sys.argv[2]) as f:
        for line in f:
            if not verify(json.loads(line), pub):
                print("invalid line %d" % (n + 1))
                sys.exit(1)
            n += 1
    print("valid %d" % n)
