#!/usr/bin/python3
"""dicom_find_client.py: the two halves of bench/dicom_find_bench.sh, speaking PS3.8/PS3.7 by
hand (tests/integration/dicom_raw.py's PDU helpers).

  store HOST PORT CALLING FIRST COUNT        C-STOREs studies FIRST..FIRST+COUNT-1 (one small
                                             Secondary Capture instance each, plaintext port)
  query HOST PORT CA CERT KEY CALLING N      N STUDY-level C-FINDs of five shapes and N C-ECHOs on
                                             one TLS association; prints latency percentiles

A study i: Study/Series/SOP Instance UIDs under one root, Patient ID P%06d of patient i % 20000
(five studies each), Patient's Name FAMILY^GIVEN of that patient, Study Date spread over
2000-2024, Modality CT/MR/US/CR, Accession Number ACC%07d."""
import os
import random
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from dicom_raw import assoc_rq, describe, elem, pdata, read_pdu, uid, us, ILE  # noqa: E402

SC = "1.2.840.10008.5.1.4.1.1.7"
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
VERIFY = "1.2.840.10008.1.1"
ROOT = "1.2.826.0.1.3680043.10.543"
FAMILIES = ["DOE", "SMITH", "JONES", "MILLER", "GARCIA", "MARTIN", "BERNARD", "DUBOIS", "ROSSI",
            "RUSSO", "SCHMIDT", "WAGNER", "NOVAK", "HORVAT", "NIELSEN", "HANSEN", "JANSEN",
            "PEETERS", "SILVA", "SANTOS", "KOWALSKI", "NAGY", "POPESCU", "IVANOV", "PETROV",
            "YILMAZ", "KAYA", "COHEN", "LEVI", "KHAN", "PATEL", "SINGH", "KIM", "LEE", "PARK",
            "WANG", "LI", "ZHANG", "CHEN", "LIU", "SATO", "SUZUKI", "TANAKA", "NGUYEN", "TRAN",
            "OKAFOR", "MENSAH", "DIALLO", "HASSAN", "ALI"]
GIVEN = ["JOHN", "JANE", "ANNA", "PETER", "MARIA", "PAUL", "LUCAS", "EMMA", "NOAH", "MIA",
         "LIAM", "SOFIA", "ELLA", "JONAS", "LEA", "MAX", "IDA", "OSCAR", "ALMA", "HUGO", "ZOE",
         "LEO", "NORA", "FINN", "EVA", "OTTO", "RITA", "KARL", "VERA", "IVAN"]
MODS = ["CT", "MR", "US", "CR"]
PATIENTS = 20000


def study(i):
    p = i % PATIENTS
    days = (i * 7919) % 9000
    y, rest = 2000 + days // 365, days % 365
    m, d = 1 + rest // 31 % 12, 1 + rest % 28
    return {"pid": "P%06d" % p, "name": "%s^%s" % (FAMILIES[p % 50], GIVEN[(p // 50) % 30]),
            "date": "%04d%02d%02d" % (y, m, d), "mod": MODS[i % 4], "acc": "ACC%07d" % i,
            "study": "%s.%d" % (ROOT, i), "series": "%s.%d.1" % (ROOT, i),
            "inst": "%s.%d.1.1" % (ROOT, i)}


def dataset(s):
    els = [(8, 0x16, uid(SC)), (8, 0x18, uid(s["inst"])), (8, 0x20, s["date"].encode()),
           (8, 0x30, b"101500"), (8, 0x50, s["acc"].encode()), (8, 0x60, s["mod"].encode()),
           (0x10, 0x10, s["name"].encode()), (0x10, 0x20, s["pid"].encode()),
           (0x20, 0x0D, uid(s["study"])), (0x20, 0x0E, uid(s["series"])), (0x20, 0x13, b"1")]
    return b"".join(elem(g, e, v) for g, e, v in els)


def command(cmd, cls, msg_id, has_ds, inst=None, responded=None):
    els = elem(0, 0x0002, uid(cls)) + elem(0, 0x0100, us(cmd))
    els += elem(0, 0x0110, us(msg_id)) if responded is None else elem(0, 0x0120, us(responded))
    els += elem(0, 0x0700, us(0)) + elem(0, 0x0800, us(0 if has_ds else 0x0101))
    if inst:
        els += elem(0, 0x1000, uid(inst))
    return elem(0, 0x0000, struct.pack("<I", len(els))) + els


def connect(host, port, tls, calling, contexts):
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context(cafile=tls[0])
        ctx.load_cert_chain(tls[1], tls[2])
        ctx.check_hostname = False
        s = ctx.wrap_socket(s)
    s.sendall(assoc_rq(calling, "HDX", contexts, max_pdu=262144))
    t, body = read_pdu(s)
    d = describe(t, body)
    if not d.startswith("ac accepted=%d" % len(contexts)):
        sys.exit("association failed: " + d)
    return s


def statuses(s):
    """Reads PDUs until a final status; returns (pendings, final)."""
    pending = 0
    while True:
        t, body = read_pdu(s, timeout=60)
        if t != 4:
            sys.exit("unexpected: " + describe(t, body))
        off = 0
        while off + 6 <= len(body):
            ln, control = struct.unpack(">I", body[off:off + 4])[0], body[off + 5]
            if control & 3 == 3:
                code = int(describe(4, body[off:off + 4 + ln]).split()[0].split("=")[1], 16)
                if code in (0xFF00, 0xFF01):
                    pending += 1
                else:
                    return pending, code
            off += 4 + ln


def store(host, port, calling, first, count):
    s = connect(host, port, None, calling, [(1, SC, [ILE])])
    for i in range(first, first + count):
        st = study(i)
        msg = (i % 65535) + 1
        s.sendall(pdata(1, 3, command(0x0001, SC, msg, True, inst=st["inst"])) + pdata(1, 2, dataset(st)))
        _, code = statuses(s)
        if code != 0:
            sys.exit("C-STORE of study %d: status 0x%04x" % (i, code))
    s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0\0\0\0")
    read_pdu(s, timeout=5)


def identifier(keys):
    order = sorted(keys.items())
    return b"".join(elem(g, e, v.encode()) for (g, e), v in order)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def query(host, port, tls, calling, n, nstudies):
    s = connect(host, port, tls, calling, [(1, STUDY_ROOT, [ILE]), (3, VERIFY, [ILE])])
    rnd = random.Random(1)
    ret = {(0x10, 0x10): "", (0x10, 0x20): "", (8, 0x20): "", (0x20, 0x0D): "", (8, 0x50): "",
           (8, 0x61): "", (0x20, 0x1208): "", (8, 0x52): "STUDY"}
    shapes = ["patient_id", "name_prefix", "date_month", "study_uid", "accession"]
    lat = {k: [] for k in shapes}
    matches = {k: 0 for k in shapes}
    echo = []
    msg = 1
    for q in range(n):
        shape = shapes[q % len(shapes)]
        i = rnd.randrange(nstudies)
        st = study(i)
        keys = dict(ret)
        if shape == "patient_id":
            keys[(0x10, 0x20)] = st["pid"]
        elif shape == "name_prefix":
            keys[(0x10, 0x10)] = st["name"][: st["name"].index("^") + 2] + "*"
        elif shape == "date_month":
            keys[(8, 0x20)] = "%s01-%s28" % (st["date"][:6], st["date"][:6])
        elif shape == "study_uid":
            keys[(0x20, 0x0D)] = st["study"]
        else:
            keys[(8, 0x50)] = st["acc"]
        msg = msg % 65535 + 1
        req = pdata(1, 3, command(0x0020, STUDY_ROOT, msg, True)) + pdata(1, 2, identifier(keys))
        t0 = time.perf_counter()
        s.sendall(req)
        got, code = statuses(s)
        lat[shape].append((time.perf_counter() - t0) * 1000)
        if code != 0 or got == 0:
            sys.exit("C-FIND %s: %d matches, status 0x%04x" % (shape, got, code))
        matches[shape] += got
        msg = msg % 65535 + 1
        t0 = time.perf_counter()
        s.sendall(pdata(3, 3, command(0x0030, VERIFY, msg, False)))
        _, code = statuses(s)
        echo.append((time.perf_counter() - t0) * 1000)
        if code != 0:
            sys.exit("C-ECHO status 0x%04x" % code)
    s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0\0\0\0")
    read_pdu(s, timeout=5)
    every = [x for k in shapes for x in lat[k]]
    for k in shapes:
        print("dicom_find shape=%s queries=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f mean_matches=%.1f"
              % (k, len(lat[k]), pct(lat[k], 50), pct(lat[k], 99), max(lat[k]), matches[k] / len(lat[k])))
    print("dicom_find shape=all queries=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f"
          % (len(every), pct(every, 50), pct(every, 99), max(every)))
    print("dicom_find reference=c_echo n=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f"
          % (len(echo), pct(echo, 50), pct(echo, 99), max(echo)))


def main():
    a = sys.argv[1:]
    if a[0] == "store":
        store(a[1], int(a[2]), a[3], int(a[4]), int(a[5]))
    elif a[0] == "query":
        query(a[1], int(a[2]), a[3:6], a[6], int(a[7]), int(a[8]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
