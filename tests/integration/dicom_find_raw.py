#!/usr/bin/python3
"""dicom_find_raw.py: C-FIND traffic for 77-dicom-find that findscu cannot be made to send: a
C-CANCEL-RQ in the same write as its C-FIND-RQ (so the cancel is there while the answer is
still being streamed), and a truncated identifier. Uses dicom_raw.py's PDU helpers.

usage: dicom_find_raw.py HOST PORT CASE --tls CA CERT KEY [--calling AE]
cases: cancel (an IMAGE-level universal query, cancelled at once), truncated
Output: "pending=N final=0xNNNN" or "closed"."""
import os
import socket
import ssl
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dicom_raw import assoc_rq, describe, elem, pdata, read_pdu, uid, us, ILE  # noqa: E402

STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"


def cmd(command, msg_id, has_ds, responded=None):
    els = elem(0, 0x0002, uid(STUDY_ROOT)) + elem(0, 0x0100, us(command))
    els += elem(0, 0x0110 if responded is None else 0x0120, us(msg_id if responded is None else responded))
    if command != 0x0FFF:
        els += elem(0, 0x0700, us(0))
    els += elem(0, 0x0800, us(0x0000 if has_ds else 0x0101))
    return elem(0, 0x0000, struct.pack("<I", len(els))) + els


def identifier():
    """Implicit VR LE, tag order: every key universal but the level."""
    out = b""
    for g, e, v in ((8, 0x16, b""), (8, 0x18, b""), (8, 0x20, b""), (8, 0x30, b""), (8, 0x50, b""),
                    (8, 0x52, b"IMAGE "), (8, 0x60, b""), (8, 0x1030, b""), (0x10, 0x10, b""),
                    (0x10, 0x20, b""), (0x10, 0x30, b""), (0x10, 0x40, b""), (0x20, 0x0D, b""),
                    (0x20, 0x0E, b""), (0x20, 0x10, b""), (0x20, 0x11, b""), (0x20, 0x13, b"")):
        out += elem(g, e, v)
    return out


def main():
    a = sys.argv[1:]
    host, port, case = a[0], int(a[1]), a[2]
    tls = a[a.index("--tls") + 1 : a.index("--tls") + 4]
    calling = a[a.index("--calling") + 1] if "--calling" in a else "VIEWER1"
    s = socket.create_connection((host, port), timeout=15)
    ctx = ssl.create_default_context(cafile=tls[0])
    ctx.load_cert_chain(tls[1], tls[2])
    ctx.check_hostname = False
    s = ctx.wrap_socket(s)
    s.sendall(assoc_rq(calling, "HDX", [(1, STUDY_ROOT, [ILE])]))
    t, body = read_pdu(s)
    if t != 2 or not describe(t, body).startswith("ac accepted=1"):
        print("association failed: " + describe(t, body))
        sys.exit(1)
    ident = identifier()
    if case == "truncated":
        ident = ident[:-3]
    req = pdata(1, 3, cmd(0x0020, 1, True)) + pdata(1, 2, ident)
    if case == "cancel":
        req += pdata(1, 3, cmd(0x0FFF, 2, False, responded=1))
    s.sendall(req)
    pending, final = 0, None
    while final is None:
        t, body = read_pdu(s)
        if t != 4:
            print("pending=%d %s" % (pending, describe(t, body)))
            sys.exit(1)
        off = 0
        while off + 6 <= len(body):  # each PDV: command responses carry the status
            ln, control = struct.unpack(">I", body[off : off + 4])[0], body[off + 5]
            if control & 1 and control & 2:
                st = describe(4, body[off : off + 4 + ln])
                code = int(st.split()[0].split("=")[1], 16)
                if code in (0xFF00, 0xFF01):
                    pending += 1
                else:
                    final = code
            off += 4 + ln
    print("pending=%d final=0x%04x" % (pending, final))
    s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0\0\0\0")  # A-RELEASE-RQ
    read_pdu(s, timeout=5)


if __name__ == "__main__":
    main()
