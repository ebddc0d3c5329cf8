#!/usr/bin/python3
"""dicom_raw.py: hand-made DICOM upper-layer traffic for the bad-input cases of 76-dicom-store,
which the real clients (dcmtk) cannot be made to send. It speaks PS3.8 PDUs and PS3.7 command
sets byte by byte, over TLS with a client certificate or over plain TCP, and prints what the
server answered in one line, so the test asserts on the server's protocol-level answer.

usage: dicom_raw.py HOST PORT CASE [--tls CA CERT KEY] [--calling AE] [--called AE]
cases: garbage, oversize, stall, stall-associated, contexts200, pdata-first, no-context, store-ok FILE,
       store-mismatch FILE, store-big FILE, store-deep, store-hugelen, store-truncated FILE, store-uid FILE
Output: "abort source=S reason=R", "reject result=.. source=.. reason=..",
        "ac accepted=N results=ID:R,...", "status=0xNNNN [comment=...]", "closed"."""
import socket
import ssl
import struct
import sys
import time

APP = b"1.2.840.10008.3.1.1.1"
VERIFY = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"


def uid(u):
    b = u.encode()
    return b + b"\0" if len(b) % 2 else b


def item(t, body):
    return struct.pack(">BBH", t, 0, len(body)) + body


def assoc_rq(calling, called, contexts, max_pdu=16384):
    """contexts: list of (id, abstract, [ts...])."""
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode()
    body += b"\0" * 32 + item(0x10, APP)
    for cid, abstract, tss in contexts:
        sub = item(0x30, abstract.encode()) + b"".join(item(0x40, t.encode()) for t in tss)
        body += item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + sub)
    ui = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.3.4") + item(0x55, b"RAWTEST")
    body += item(0x50, ui)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def elem(group, el, value):
    """implicit VR LE"""
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, el, len(value)) + value


def us(v):
    return struct.pack("<H", v)


def c_store_rq(cls, inst, msg_id=1):
    els = elem(0, 0x0002, uid(cls)) + elem(0, 0x0100, us(1)) + elem(0, 0x0110, us(msg_id))
    els += elem(0, 0x0700, us(0)) + elem(0, 0x0800, us(0)) + elem(0, 0x1000, uid(inst))
    return elem(0, 0, struct.pack("<I", len(els))) + els


def pdata(cid, control, data):
    pdv = struct.pack(">IBB", len(data) + 2, cid, control) + data
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def read_exact(s, n, deadline):
    out = b""
    while len(out) < n:
        s.settimeout(max(0.1, deadline - time.time()))
        chunk = s.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def read_pdu(s, timeout=15):
    deadline = time.time() + timeout
    try:
        h = read_exact(s, 6, deadline)
        if h is None:
            return None, None
        t, _, n = struct.unpack(">BBI", h)
        body = read_exact(s, n, deadline)
        return t, body
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        return None, None


def describe(t, body):
    if t is None:
        return "closed"
    if t == 7:
        return "abort source=%d reason=%d" % (body[2], body[3])
    if t == 3:
        return "reject result=%d source=%d reason=%d" % (body[1], body[2], body[3])
    if t == 2:
        res, off = [], 68
        while off + 4 <= len(body):
            it, ln = body[off], struct.unpack(">H", body[off + 2 : off + 4])[0]
            if it == 0x21:
                res.append("%d:%d" % (body[off + 4], body[off + 6]))
            off += 4 + ln
        return "ac accepted=%d results=%s" % (sum(r.endswith(":0") for r in res), ",".join(res))
    if t == 4:
        data = body[6:]
        off, status, comment = 0, None, None
        while off + 8 <= len(data):
            g, e, ln = struct.unpack("<HHI", data[off : off + 8])
            v = data[off + 8 : off + 8 + ln]
            if (g, e) == (0, 0x0900):
                status = struct.unpack("<H", v)[0]
            if (g, e) == (0, 0x0902):
                comment = v.decode("ascii", "replace").strip()
            off += 8 + ln
        out = "status=0x%04x" % status if status is not None else "pdata"
        return out + (" comment=%s" % comment.replace(" ", "_") if comment else "")
    return "pdu type=%d" % t


def uids_ele(cls, inst):
    """(0008,0016) and (0008,0018) in explicit VR LE."""
    out = b""
    for el, v in ((0x16, uid(cls)), (0x18, uid(inst))):
        out += struct.pack("<HH", 8, el) + b"UI" + struct.pack("<H", len(v)) + v
    return out


def dataset_of(path):
    """The data set of a Part 10 file, after its meta group."""
    raw = open(path, "rb").read()
    assert raw[128:132] == b"DICM"
    glen = struct.unpack("<I", raw[140:144])[0]
    return raw[144 + glen :]


def meta_ts(path):
    """(0002,0010) of a Part 10 file."""
    raw = open(path, "rb").read()
    off, end = 132, 144 + struct.unpack("<I", open(path, "rb").read()[140:144])[0]
    while off < end:
        g, e = struct.unpack("<HH", raw[off : off + 4])
        vr = raw[off + 4 : off + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            ln, hdr = struct.unpack("<I", raw[off + 8 : off + 12])[0], 12
        else:
            ln, hdr = struct.unpack("<H", raw[off + 6 : off + 8])[0], 8
        if (g, e) == (2, 0x10):
            return raw[off + hdr : off + hdr + ln].rstrip(b"\0 ").decode()
        off += hdr + ln
    return ELE


def tag_value(ds, group, el):
    """A top-level explicit-VR-LE value, found naively (enough for the UIDs near the start)."""
    key = struct.pack("<HH", group, el)
    i = ds.find(key)
    ln = struct.unpack("<H", ds[i + 6 : i + 8])[0]
    return ds[i + 8 : i + 8 + ln].rstrip(b"\0 ").decode()


def main():
    a = sys.argv[1:]
    host, port, case = a[0], int(a[1]), a[2]
    rest = a[3:]
    tls = None
    calling, called = "MODALITY1", "HDX"
    files = []
    i = 0
    while i < len(rest):
        if rest[i] == "--tls":
            tls = rest[i + 1 : i + 4]
            i += 4
        elif rest[i] == "--calling":
            calling = rest[i + 1]
            i += 2
        elif rest[i] == "--called":
            called = rest[i + 1]
            i += 2
        else:
            files.append(rest[i])
            i += 1
    s = socket.create_connection((host, port), timeout=15)
    if tls:
        ctx = ssl.create_default_context(cafile=tls[0])
        ctx.load_cert_chain(tls[1], tls[2])
        ctx.check_hostname = False
        s = ctx.wrap_socket(s)
    ctxs = [(1, VERIFY, [ILE]), (3, CT, [ELE]), (5, MR, [ELE])]

    def associate():
        s.sendall(assoc_rq(calling, called, ctxs))
        t, body = read_pdu(s)
        if t != 2:
            print("association failed: " + describe(t, body))
            sys.exit(1)

    if case == "garbage":
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    elif case == "oversize":
        associate()
        s.sendall(struct.pack(">BBI", 4, 0, 0xFFFFFF00) + b"\0" * 64)
    elif case in ("stall", "stall-associated"):
        if case == "stall":
            s.sendall(assoc_rq(calling, called, ctxs)[:40])
        else:
            associate()
            s.sendall(pdata(3, 3, c_store_rq(CT, "1.2.3"))[:20])
        t, body = read_pdu(s, timeout=30)
        print(describe(t, body))
        return
    elif case == "contexts200":
        many = [((2 * k + 1) % 256, CT, [ELE]) for k in range(200)]
        s.sendall(assoc_rq(calling, called, many))
    elif case == "pdata-first":
        s.sendall(pdata(1, 3, c_store_rq(CT, "1.2.3")))
    elif case == "no-context":
        ctxs[:] = [(1, "1.2.3.4.5.6.7", [ELE]), (3, CT, ["1.2.3.9"])]
        s.sendall(assoc_rq(calling, called, ctxs))
    elif case.startswith("store-"):
        ds = dataset_of(files[0]) if files else b""
        cls, inst = (tag_value(ds, 8, 0x16), tag_value(ds, 8, 0x18)) if ds else (CT, "1.2.826.0.1.9")
        cid = 3 if cls == CT else 5
        if case == "store-ok":  # the file's own class and transfer syntax, its bytes as they are
            ctxs.append((7, cls, [meta_ts(files[0])]))
            cid = 7
        associate()
        if case == "store-mismatch":  # an MR data set offered as CT
            cid, cls = 3, CT
        elif case == "store-uid":  # the command names another instance
            inst = inst + ".9"
        elif case == "store-truncated":
            ds = ds[: len(ds) // 2 + 3]
        elif case == "store-deep":  # a sequence nested 1,000 deep, undefined lengths (explicit LE)
            nest = b""
            for _ in range(1000):
                nest += struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
                nest += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
            ds = uids_ele(cls, inst) + nest
        elif case == "store-big":  # a data set over dicom.max_instance (1 MiB in test 76)
            ds = ds + struct.pack("<HH", 0x0009, 0x0010) + b"LO\x04\x00HDX " + struct.pack("<HH", 0x0009, 0x1000) + b"OB\0\0" + struct.pack("<I", 1100000) + b"\0" * 1100000
        elif case == "store-hugelen":
            ds = uids_ele(cls, inst) + struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<I", 0xFFFFFFF0) + b"\0" * 32
        s.sendall(pdata(cid, 3, c_store_rq(cls, inst)))
        for off in range(0, len(ds), 8000):
            part = ds[off : off + 8000]
            s.sendall(pdata(cid, 2 if off + 8000 >= len(ds) else 0, part))
    else:
        print("unknown case " + case)
        sys.exit(2)
    t, body = read_pdu(s)
    print(describe(t, body))
    if case.startswith("store-") and t == 4:  # the association stays usable: release it
        s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0" * 4)
        t, body = read_pdu(s)
        print("release=" + ("rp" if t == 6 else describe(t, body)))


if __name__ == "__main__":
    main()
