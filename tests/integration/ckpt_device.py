"""A device that signs its stream, built from docs/STREAM-SIGNATURES.md with tools nobody here
wrote: `openssl s_client` makes the mutual-TLS connection and exports the channel binding
(-keymatexport), hashlib computes the running hash and python3-cryptography signs. No hdx
code. It can also misbehave on purpose, as a tampered or replaying sender would.

usage: ckpt_device.py PORT CA CERT KEY SIGNKEY STEP...
STEP: "send:N"        send N fresh messages (counted into the running hash)
      "ghost:N"       send N messages but leave them out of the running hash (as if altered
                      on the way: the device's hash no longer matches what hdxd received)
      "ckpt:N"        send a checkpoint numbered N over the running hash, then start anew
      "again"         send the last checkpoint's bytes once more
Prints one word per checkpoint ACK: "AA" or "AR:<first word of the reason>"."""
import hashlib
import os
import re
import select
import struct
import subprocess
import sys
import time

from cryptography.hazmat.primitives.serialization import load_pem_private_key

LABEL = "EXPORTER-hdx-checkpoint"


def main():
    port, ca, cert, key, signkey = sys.argv[1:6]
    steps = sys.argv[6:]
    with open(signkey, "rb") as f:
        sk = load_pem_private_key(f.read(), None)
    p = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:" + port, "-CAfile", ca, "-cert", cert,
         "-key", key, "-keymatexport", LABEL, "-keymatexportlen", "32", "-nocommands",
         "-no_ign_eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    deadline = time.time() + 15

    def more():
        nonlocal buf
        r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.time()))
        if not r:
            raise SystemExit("timeout")
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            raise SystemExit("s_client closed")
        buf += chunk

    while not re.search(rb"Keying material: ([0-9A-Fa-f]{64})", buf):
        more()
    m = re.search(rb"Keying material: ([0-9A-Fa-f]{64})", buf)
    binding = bytes.fromhex(m.group(1).decode())
    buf = buf[buf.index(b"\x0b"):] if b"\x0b" in buf else b""

    def exchange(payload):
        nonlocal buf, deadline
        deadline = time.time() + 15
        p.stdin.write(b"\x0b" + payload + b"\x1c\x0d")
        p.stdin.flush()
        while b"\x1c\x0d" not in buf:
            more()
        start = buf.index(b"\x0b")
        end = buf.index(b"\x1c\x0d")
        ack, buf = buf[start + 1:end], buf[end + 2:]
        return ack.decode("latin-1")

    h, count, seq, last, out = bytes(32), 0, 0, None, []
    for step in steps:
        what, _, arg = step.partition(":")
        if what in ("send", "ghost"):
            for _ in range(int(arg)):
                seq += 1
                msg = ("MSH|^~\\&|PYDEV|ICU|HDX|H|20261125120000||ORU^R01|PY-%d-%d|P|2.5.1\r"
                       "PID|1||PAT%d\rOBX|1|NM|8867-4^Heart rate^LN||7%d|/min|||||F\r"
                       % (os.getpid(), seq, seq, seq % 10)).encode()
                if what == "send":
                    h = hashlib.sha256(h + hashlib.sha256(msg).digest()).digest()
                    count += 1
                if "|AA" not in exchange(msg):
                    raise SystemExit("message not acknowledged AA")
        elif what == "ckpt":
            n = int(arg)
            signed = b"HDX-CKPT-v1" + binding + struct.pack(">QQ", n, count) + h
            zck = "ZCK|1|%d|%d|%s|%s\r" % (n, count, h.hex(), sk.sign(signed).hex())
            last = ("MSH|^~\\&|PYDEV|ICU|HDX|H|20261125120000||ZCK^Z01^ZCK_Z01|PYCK-%d-%d|P|2.5.1\r"
                    % (os.getpid(), n) + zck).encode()
            h, count = bytes(32), 0
        if what in ("ckpt", "again"):
            ack = exchange(last)
            code = re.search(r"MSA\|(A[AER])", ack).group(1)
            if code == "AA":
                out.append("AA")
            else:
                err = re.search(r"ERR\|[^|]*\|[^|]*\|[^^|]*\^([^^|]*)", ack)
                out.append("AR:" + (err.group(1).split(" ")[0] if err else "?"))
            if what == "again":
                h, count = bytes(32), 0
    p.stdin.close()
    p.wait(10)
    print(" ".join(out))


main()
