#!/usr/bin/python3
"""dicom_find_client.py: the two DICOM halves of bench/dicom_find_bench.sh, speaking PS3.8 PDUs
and PS3.7 command sets by hand over TLS with a client certificate (as
tests/integration/dicom_find_raw.py does, with dicom_raw.py's encoders). The studies are
bench/dicom_find_gen.py's: both halves compute them from the study number.

  store HOST PORT CA CERT KEY CALLING N FIRST COUNT
      one association (Secondary Capture, explicit VR LE) C-STOREs studies FIRST..FIRST+COUNT-1
      of an archive of N, one at a time; every response must be 0000 for its message ID.
  query HOST PORT CA CERT KEY CALLING N QUERIES TABLE
      one association (Study Root FIND and Verification, implicit VR LE): QUERIES STUDY-level
      C-FINDs, the five shapes in turn, each followed by one C-ECHO; each timed from the
      request's first byte sent to its final response read (time.perf_counter). Then, untimed,
      every answer is checked against the archive: exactly the expected studies, each with the
      stored values of its seven return keys; any non-0000 final status, a wrong or missing
      match is an error (exit 1). Prints "dicom_find ..." key=value lines and writes the
      results table to TABLE."""
import collections
import os
import random
import socket
import ssl
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import dicom_find_gen as gen  # noqa: E402
from dicom_raw import assoc_rq, describe, elem, pdata, uid, us, ILE  # noqa: E402

ELE = "1.2.840.10008.1.2.1"
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
VERIFY = "1.2.840.10008.1.1"
TIMEOUT = 60  # seconds without a byte from hdxd: an error
SHAPES = ["patient_id", "name_prefix", "date_month", "study_uid", "accession"]
# Return keys of every query (implicit VR LE, tag order); the shape's key gets a value.
RETURN = [(0x0008, 0x0020, "date"), (0x0008, 0x0050, "acc"), (0x0008, 0x0052, None),
          (0x0008, 0x0061, "mod"), (0x0010, 0x0010, "name"), (0x0010, 0x0020, "pid"),
          (0x0020, 0x000D, "study"), (0x0020, 0x1208, None)]


class Fail(Exception):
    pass


class Link:
    """One association's socket, read through a buffer: PDUs, then DIMSE messages."""

    def __init__(self, host, port, tls, calling, contexts):
        s = socket.create_connection((host, port), timeout=TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ssl.create_default_context(cafile=tls[0])
        ctx.load_cert_chain(tls[1], tls[2])
        ctx.check_hostname = False
        self.s = ctx.wrap_socket(s)
        self.buf = bytearray()
        self.pos = 0
        self.s.sendall(assoc_rq(calling, "HDX", contexts, max_pdu=262144))
        t, body = self.pdu()
        d = describe(t, body)
        if t != 2 or not d.startswith("ac accepted=%d " % len(contexts)):
            raise Fail("association refused: " + d)

    def fill(self, need):
        while len(self.buf) - self.pos < need:
            chunk = self.s.recv(262144)
            if not chunk:
                raise Fail("hdxd closed the connection")
            self.buf += chunk

    def pdu(self):
        self.fill(6)
        t, n = struct.unpack_from(">BxI", self.buf, self.pos)
        self.fill(6 + n)
        body = bytes(memoryview(self.buf)[self.pos + 6 : self.pos + 6 + n])
        self.pos += 6 + n
        if self.pos > 1 << 20:
            del self.buf[: self.pos]
            self.pos = 0
        return t, body

    def bodies(self):
        while True:
            t, body = self.pdu()
            if t != 4:
                raise Fail("expected P-DATA, got " + describe(t, body))
            yield body

    def messages(self):
        return messages(self.bodies())

    def find_answer(self):
        """The timed part of a C-FIND: reads P-DATA PDUs until the final response and returns
        them unparsed (messages() decodes them afterwards). Only the PDV headers and each
        command's status are looked at, so the client adds little to what is measured."""
        got = []
        while True:
            t, body = self.pdu()
            if t != 4:
                raise Fail("expected P-DATA, got " + describe(t, body))
            got.append(body)
            off, end = 0, len(body)
            while off + 6 <= end:
                ln = struct.unpack_from(">I", body, off)[0]
                control = body[off + 5]
                if control == 1:
                    raise Fail("a command set in fragments (this client times whole ones)")
                if control == 3 and status_at(body, off + 6, off + 4 + ln) not in (0xFF00, 0xFF01):
                    return got
                off += 4 + ln

    def release(self):
        self.s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0\0\0\0")
        try:
            t, _ = self.pdu()
        except (Fail, OSError):
            t = None
        self.s.close()
        if t != 6:
            raise Fail("no A-RELEASE-RP")


def messages(bodies):
    """Yields (command fields {element: bytes}, data set bytes or None) from P-DATA bodies."""
    cmd, ds, fields = bytearray(), bytearray(), None
    for body in bodies:
        off = 0
        while off + 6 <= len(body):
            ln = struct.unpack_from(">I", body, off)[0]
            control = body[off + 5]
            frag = body[off + 6 : off + 4 + ln]
            off += 4 + ln
            if control & 1:
                cmd += frag
                if control & 2:
                    fields = command_fields(cmd)
                    cmd = bytearray()
                    if fields.get(0x0800) == us(0x0101):
                        yield fields, None
                        fields = None
            else:
                ds += frag
                if control & 2:
                    if fields is None:
                        raise Fail("a data set without its command")
                    yield fields, bytes(ds)
                    ds, fields = bytearray(), None


def status_at(b, off, end):
    """(0000,0900) of the command set b[off:end] (implicit VR LE); -1 when absent."""
    while off + 8 <= end:
        g, e, ln = struct.unpack_from("<HHI", b, off)
        if g == 0 and e == 0x0900:
            return struct.unpack_from("<H", b, off + 8)[0]
        off += 8 + ln
    return -1


def command_fields(b):
    out, off = {}, 0
    while off + 8 <= len(b):
        g, e, ln = struct.unpack_from("<HHI", b, off)
        if g == 0:
            out[e] = bytes(b[off + 8 : off + 8 + ln])
        off += 8 + ln
    return out


def status_of(fields, msg_id):
    if struct.unpack("<H", fields.get(0x0120, b"\0\0"))[0] != msg_id:
        raise Fail("a response to another message than %d" % msg_id)
    return struct.unpack("<H", fields[0x0900])[0]


def command(cmd, cls, msg_id, has_ds, inst=None):
    els = elem(0, 0x0002, uid(cls)) + elem(0, 0x0100, us(cmd)) + elem(0, 0x0110, us(msg_id))
    if cmd != 0x0030:
        els += elem(0, 0x0700, us(0))
    els += elem(0, 0x0800, us(0x0000 if has_ds else 0x0101))
    if inst:
        els += elem(0, 0x1000, uid(inst))
    return elem(0, 0x0000, struct.pack("<I", len(els))) + els


def identifier_values(b):
    """Implicit VR LE top-level values as text, trailing padding removed."""
    out, off = {}, 0
    while off + 8 <= len(b):
        g, e, ln = struct.unpack_from("<HHI", b, off)
        out[(g, e)] = b[off + 8 : off + 8 + ln].rstrip(b" \0").decode("utf-8", "replace")
        off += 8 + ln
    return out


def store(host, port, tls, calling, n, first, count):
    npat = gen.patients(n)
    link = Link(host, port, tls, calling, [(1, gen.SC, [ELE])])
    for i in range(first, first + count):
        st = gen.study(i, npat)
        msg = i % 65535 + 1
        link.s.sendall(pdata(1, 3, command(0x0001, gen.SC, msg, True, inst=st["inst"]))
                       + pdata(1, 2, gen.dataset(st)))
        fields, _ = next(link.messages())
        code = status_of(fields, msg)
        if code != 0:
            raise Fail("C-STORE of study %d: status 0x%04x" % (i, code))
    link.release()


def pct(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -(-p * len(xs) // 100) - 1))]


def month_range(date):
    y, m = int(date[:4]), int(date[4:6])
    last = [31, 29 if y % 4 == 0 and (y % 100 or y % 400 == 0) else 28, 31, 30, 31, 30, 31, 31,
            30, 31, 30, 31][m - 1]
    return "%04d%02d01-%04d%02d%02d" % (y, m, y, m, last)


def query(host, port, tls, calling, n, nq, table):
    npat = gen.patients(n)
    studies = [gen.study(i, npat) for i in range(n)]
    by = {"patient_id": collections.defaultdict(list), "name_prefix": collections.defaultdict(list),
          "date_month": collections.defaultdict(list)}
    for i, st in enumerate(studies):
        by["patient_id"][st["pid"]].append(i)
        by["name_prefix"][st["name"][: st["name"].index("^") + 2]].append(i)
        by["date_month"][st["date"][:6]].append(i)
    rnd = random.Random(20260101)
    plan = []  # (shape, key tag, key value, expected study numbers)
    for q in range(nq):
        shape, j = SHAPES[q % len(SHAPES)], rnd.randrange(n)
        st = studies[j]
        if shape == "patient_id":
            plan.append((shape, (0x10, 0x20), st["pid"], by[shape][st["pid"]]))
        elif shape == "name_prefix":
            pre = st["name"][: st["name"].index("^") + 2]
            plan.append((shape, (0x10, 0x10), pre + "*", by[shape][pre]))
        elif shape == "date_month":
            plan.append((shape, (8, 0x20), month_range(st["date"]), by[shape][st["date"][:6]]))
        elif shape == "study_uid":
            plan.append((shape, (0x20, 0x0D), st["study"], [j]))
        else:
            plan.append((shape, (8, 0x50), st["acc"], [j]))

    link = Link(host, port, tls, calling, [(1, STUDY_ROOT, [ILE]), (3, VERIFY, [ILE])])
    lat = {k: [] for k in SHAPES}
    echo, answers = [], []
    msg = 0
    clock = time.perf_counter
    for shape, tag, value, _ in plan:
        ident = b""
        for g, e, _k in RETURN:
            v = "STUDY" if (g, e) == (8, 0x52) else value if (g, e) == tag else ""
            b = v.encode()
            ident += elem(g, e, uid(v) if (g, e) == (0x20, 0x0D) else b + b" " * (len(b) % 2))
        msg = msg % 65535 + 1
        req = pdata(1, 3, command(0x0020, STUDY_ROOT, msg, True)) + pdata(1, 2, ident)
        t0 = clock()
        link.s.sendall(req)
        bodies = link.find_answer()
        lat[shape].append((clock() - t0) * 1000.0)
        got = []
        for fields, ds in messages(bodies):
            code = status_of(fields, msg)
            if code not in (0xFF00, 0xFF01):
                break
            if ds is None:
                raise Fail("C-FIND %s %s: a pending response without an identifier" % (shape, value))
            got.append(ds)
        if code != 0:
            raise Fail("C-FIND %s %s: final status 0x%04x after %d matches"
                       % (shape, value, code, len(got)))
        answers.append(got)
        msg = msg % 65535 + 1
        req = pdata(3, 3, command(0x0030, VERIFY, msg, False))
        t0 = clock()
        link.s.sendall(req)
        fields, _ = next(link.messages())
        code = status_of(fields, msg)
        echo.append((clock() - t0) * 1000.0)
        if code != 0:
            raise Fail("C-ECHO: status 0x%04x" % code)
    link.release()

    # Untimed: every answer against the archive.
    nmatch = {k: 0 for k in SHAPES}
    for (shape, tag, value, want), got in zip(plan, answers):
        seen = []
        for ds in got:
            v = identifier_values(ds)
            i = gen.study_of_uid(v.get((0x20, 0x0D), ""))
            if i < 0 or i >= n:
                raise Fail("%s %s: an answer with an unknown study %r" % (shape, value, v))
            st = studies[i]
            for g, e, k in RETURN:
                exp = "STUDY" if k is None and e == 0x52 else "1" if k is None else st[k]
                if v.get((g, e)) != exp:
                    raise Fail("%s %s: study %d (%04x,%04x) is %r, stored %r"
                               % (shape, value, i, g, e, v.get((g, e)), exp))
            seen.append(i)
        if sorted(seen) != sorted(want):
            raise Fail("%s %s: %d matches, expected %d" % (shape, value, len(seen), len(want)))
        nmatch[shape] += len(seen)

    rows = []
    every = [x for k in SHAPES for x in lat[k]]
    for k in SHAPES + ["all"]:
        xs = every if k == "all" else lat[k]
        m = sum(nmatch.values()) / len(plan) if k == "all" else nmatch[k] / len(xs)
        print("dicom_find c_find shape=%s queries=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
              "mean_matches=%.1f" % (k, len(xs), pct(xs, 50), pct(xs, 99), max(xs), m))
        rows.append(("C-FIND " + k, len(xs), pct(xs, 50), pct(xs, 99), max(xs), "%.1f" % m))
    print("dicom_find c_echo n=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f"
          % (len(echo), pct(echo, 50), pct(echo, 99), max(echo)))
    rows.append(("C-ECHO (floor)", len(echo), pct(echo, 50), pct(echo, 99), max(echo), "-"))
    with open(table, "w") as f:
        f.write("%-22s %7s %8s %8s %8s %13s\n" % ("operation", "n", "p50 ms", "p99 ms", "max ms",
                                                  "mean matches"))
        for r in rows:
            f.write("%-22s %7d %8.2f %8.2f %8.2f %13s\n" % r)


def main():
    a = sys.argv[1:]
    try:
        if len(a) == 10 and a[0] == "store":
            store(a[1], int(a[2]), a[3:6], a[6], int(a[7]), int(a[8]), int(a[9]))
        elif len(a) == 10 and a[0] == "query":
            query(a[1], int(a[2]), a[3:6], a[6], int(a[7]), int(a[8]), a[9])
        else:
            sys.exit(__doc__)
    except (Fail, OSError, StopIteration, KeyError, struct.error) as e:
        sys.exit("dicom_find_client %s: %s: %s" % (a[0], type(e).__name__, e))


if __name__ == "__main__":
    main()
