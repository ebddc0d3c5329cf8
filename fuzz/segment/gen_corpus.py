#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_segment (fuzz/segment/corpus/): small segment file images
made to docs/RECORD-FORMAT.md "Segment files", preceded by the harness's flag byte. Made-up
bytes only (leaves hold no real record). Run from the repository root."""
import hashlib, os, struct

def leaf(seq, n):
    return b"HDXR" + bytes([1]) + struct.pack(">Q", seq) + bytes((seq * 31 + i) & 255 for i in range(n))

def frame(seq, n, bad_hash=False):
    l = leaf(seq, n)
    h = hashlib.sha256(b"\x00" + l).digest()
    if bad_hash:
        h = bytes([h[0] ^ 1]) + h[1:]
    return struct.pack(">II", 0x48445846, len(l)) + l + h

def header(base):
    return b"HDXSEG1\n" + struct.pack(">IIQQ", 1, 32, base, 1764000000000000)

seeds = {
    "three_frames": header(1) + frame(1, 40) + frame(2, 0) + frame(3, 100) + bytes(64),
    "base_later": header(5) + frame(7, 20) + frame(8, 20) + bytes(16),
    "bad_hash_second": header(1) + frame(1, 10) + frame(2, 10, True) + frame(3, 10),
    "torn_tail": header(1) + frame(1, 30) + frame(2, 30)[:25],
    "garbage_after": header(1) + frame(1, 30) + b"garbage!" + bytes(8),
}
os.makedirs("fuzz/segment/corpus", exist_ok=True)
for name, img in seeds.items():
    for flags, suffix in ((3, ""), (0, "_nohash")):
        with open(f"fuzz/segment/corpus/{name}{suffix}", "wb") as f:
            f.write(bytes([flags]) + img)
