#!/usr/bin/python3
"""Helpers for tests/crash/*: message generation, a pipelined MLLP/TLS sender, the
after-crash checker and the loss simulation used to prove that the checker bites.

Not a test by itself (ctest only runs tests/crash/[0-9][0-9]-*). Python standard library
only. Every file it reads or writes lives in the test's scratch directory WORK:

  WORK/rN/DEV.hl7      messages given to device DEV's sender in round N (plain HL7, CR
                       segments, LF between messages)
  WORK/rN/DEV.resent   MSH-10s in DEV.hl7 that were already sent in an earlier round
  WORK/rN/DEV.out      the sender's stdout: one 'AA <MSH-10>' (or AE/AR ...) per ACK
  WORK/final/...       the same for the closing resend after the last round

Every message ever written to a WORK/*/DEV.hl7 counts as "sent by DEV"; every 'AA' line
counts as acknowledged. Messages keep one MSH-10 and one content for the whole run.
"""
import glob
import os
import random
import re
import select
import socket
import sqlite3
import ssl
import subprocess
import sys
import time

HL7_KIND = 1  # HDX_KIND_HL7V2 in src/store/record.h
AUDIT_KIND = 4  # HDX_KIND_AUDIT: TLS authentications (docs/AUDIT.md)
ADMIN_KIND = 5  # HDX_KIND_ADMIN: the device enrolments


def die(msg):
    print(f"crashlib: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------- ports ----------

def cmd_ports(args):
    """ports N: N distinct free TCP ports on 127.0.0.1 (bound together, then released), below
    the kernel's ephemeral range, so that no client connection of a test running in parallel
    can take one as its local port before hdxd binds it."""
    import random
    n = int(args[0])
    socks = []
    while len(socks) < n:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", random.randint(10000, 32000)))
            socks.append(s)
        except OSError:
            s.close()
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


# ---------- messages ----------

def make_message(dev, rnd, i, rng):
    """One ORU^R01 with a unique MSH-10 <DEV>-r<round>-<i> and a PID-3."""
    cid = f"{dev}-r{rnd}-{i:06d}"
    ts = time.strftime("%Y%m%d%H%M%S", time.gmtime(1795000000 + rnd * 100000 + i))
    pat = f"P{rng.randrange(1, 5000):05d}"
    hr = rng.randrange(40, 180)
    segs = [
        f"MSH|^~\\&|{dev}|WARD{rnd}|HDX|HOSP|{ts}||ORU^R01^ORU_R01|{cid}|P|2.5.1",
        f"PID|1||{pat}^^^HOSP^MR||Crash^Test^{i}||19700101|U",
        f"OBR|1||{cid}-O|8867-4^Heart rate^LN|||{ts}",
        f"OBX|1|NM|8867-4^Heart rate^LN||{hr}|/min^beats per minute^UCUM|||||F|||{ts}",
    ]
    pad = int(os.environ.get("HDX_CRASH_PAD", "0"))  # bytes of NTE segments: large bodies
    for k in range((pad + 999) // 1000):
        segs.append(f"NTE|{k + 1}||{cid}-" + "".join(chr(65 + (i + k) % 26) for i in range(980)))
    return cid, segs


def read_messages(path):
    """[(msh10, [segments])] in file order."""
    out = []
    with open(path, "rb") as f:
        data = f.read().decode()
    cur = None
    for line in re.split(r"\r\n|\r|\n", data):
        if not line:
            continue
        if line.startswith("MSH"):
            cur = [line]
            out.append(cur)
        elif cur is not None:
            cur.append(line)
    return [(m[0].split("|")[9], m) for m in out]


def write_messages(path, msgs):
    with open(path, "w", newline="") as f:
        for _, segs in msgs:
            f.write("\r".join(segs) + "\r\n")


def read_acks(path):
    """[(code, msh10, rest)] from a sender's stdout (lines that are not ACKs are ignored)."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) >= 2 and parts[0] in ("AA", "AE", "AR", "CA", "CE", "CR", "??"):
                out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return out


def resend_window(work, rdir, dev, prefix):
    """Messages of WORK/RDIR/DEV.hl7 (MSH-10 starting with PREFIX) to send again: the first
    20, and 40 on each side of the point where that sender was cut off (its last AA)."""
    own = [m for m in read_messages(os.path.join(work, rdir, f"{dev}.hl7"))
           if m[0].startswith(prefix)]
    acked = {a[1] for a in read_acks(os.path.join(work, rdir, f"{dev}.out")) if a[0] == "AA"}
    cut = max((i for i, m in enumerate(own) if m[0] in acked), default=-1) + 1
    pick = set(range(min(20, len(own)))) | set(range(max(0, cut - 40), min(len(own), cut + 40)))
    return [own[i] for i in sorted(pick)]


def cmd_gen(args):
    """gen WORK ROUND NDEV COUNT SEED: writes WORK/rROUND/DEVk.hl7 for k=1..NDEV.

    From round 2 on, each file starts with messages of the previous round sent again
    (duplicate detection after a crash): the first 20 of them, plus a window around the
    point where the previous round's sender was cut off (the last acknowledged ones,
    which must be AA again and stored once, and the unacknowledged ones just after,
    which may or may not have been committed before the kill)."""
    work, rnd, ndev, count, seed = args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4])
    rng = random.Random(seed * 1000 + rnd)
    rdir = os.path.join(work, f"r{rnd}")
    os.makedirs(rdir, exist_ok=True)
    for k in range(1, ndev + 1):
        dev = f"DEV{k}"
        msgs = []
        resent = []
        prev = os.path.join(work, f"r{rnd - 1}", f"{dev}.hl7")
        if rnd > 1 and os.path.exists(prev):
            for m in resend_window(work, f"r{rnd - 1}", dev, f"{dev}-r{rnd - 1}-"):
                msgs.append(m)
                resent.append(m[0])
        for i in range(count):
            msgs.append(make_message(dev, rnd, i, rng))
        write_messages(os.path.join(rdir, f"{dev}.hl7"), msgs)
        with open(os.path.join(rdir, f"{dev}.resent"), "w") as f:
            f.write("".join(c + "\n" for c in resent))


def cmd_resend(args):
    """resend WORK FROMDIR TODIR: TODIR/DEV.hl7 = the messages of FROMDIR/DEV.hl7 around the
    point where that sender was cut off, plus its first 20 (all already sent once)."""
    work, src, dst = args
    os.makedirs(os.path.join(work, dst), exist_ok=True)
    for path in sorted(glob.glob(os.path.join(work, src, "DEV*.hl7"))):
        dev = os.path.basename(path)[:-4]
        msgs = resend_window(work, src, dev, "")
        write_messages(os.path.join(work, dst, f"{dev}.hl7"), msgs)
        with open(os.path.join(work, dst, f"{dev}.resent"), "w") as f:
            f.write("".join(m[0] + "\n" for m in msgs))


# ---------- pipelined sender ----------

def cmd_burst(args):
    """burst HOST:PORT CA CERT KEY FILE: sends every message of FILE over one mutual-TLS
    MLLP connection without waiting for ACKs (as fast as hdxd reads; it stops reading at
    mllp.max_inflight unanswered messages), printing 'AA <MSH-10>' per ACK as it arrives,
    flushed per line, like hdx send. Exit 0 when every message got AA, 1 on a lost
    connection or any other ACK."""
    hostport, ca, cert, key, path = args
    host, port = hostport.rsplit(":", 1)
    msgs = read_messages(path)
    out = bytearray()
    for _, segs in msgs:
        out += b"\x0b" + "\r".join(segs).encode() + b"\r\x1c\r"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    try:
        raw = socket.create_connection((host, int(port)), timeout=10)
        s = ctx.wrap_socket(raw)
    except (OSError, ssl.SSLError) as e:
        print(f"crashlib burst: connection lost before the first ACK: {e}", file=sys.stderr)
        return 1
    s.setblocking(False)
    off, acks, ok, buf = 0, 0, True, bytearray()
    view = memoryview(out)
    deadline = time.time() + 120
    while acks < len(msgs):
        if time.time() > deadline:
            print("crashlib burst: timeout", file=sys.stderr)
            return 1
        want_w = off < len(out)
        r, w, _ = select.select([s], [s] if want_w else [], [], 1.0)
        try:
            if want_w and w:
                off += s.send(view[off:off + 65536])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
        except OSError as e:
            print(f"crashlib burst: connection lost while sending: {e}", file=sys.stderr)
            return 1
        while True:
            try:
                data = s.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (OSError, ssl.SSLError) as e:
                print(f"crashlib burst: connection lost after {acks} ACKs: {e}", file=sys.stderr)
                return 1
            if not data:
                print(f"crashlib burst: connection closed after {acks} ACKs", file=sys.stderr)
                return 1
            buf += data
            while True:
                end = buf.find(b"\x1c\r")
                if end < 0:
                    break
                start = buf.find(b"\x0b")
                frame = bytes(buf[start + 1:end]) if 0 <= start < end else b""
                del buf[:end + 2]
                code, cid = "??", ""
                for seg in frame.split(b"\r"):
                    if seg.startswith(b"MSA|"):
                        f = seg.decode(errors="replace").split("|")
                        code = f[1] if len(f) > 1 else "??"
                        cid = f[2] if len(f) > 2 else ""
                print(f"{code} {cid}", flush=True)
                acks += 1
                ok = ok and code == "AA"
            if not s.pending():
                break
    s.close()
    return 0 if ok else 1


# ---------- checks ----------

def parse_query(text):
    """hdx query output -> [(seq, sender, type, [segment lines])]."""
    recs = []
    cur = None
    for line in text.split("\n"):
        if line.startswith("# seq="):
            hdr = dict(kv.split("=", 1) for kv in line[2:].split(" ") if "=" in kv)
            cur = (int(hdr["seq"]), hdr.get("sender", ""), hdr.get("type", ""), [])
            recs.append(cur)
        elif cur is not None and line:
            cur[3].append(line)
    return recs


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace", timeout=120, **kw)


def store_rows(data):
    """(all records, HL7 v2 records, records of another kind than HL7 v2, audit or admin)
    counted straight from the SQLite store, read-only."""
    db = sqlite3.connect(f"file:{os.path.join(data, 'store.db')}?mode=ro", uri=True, timeout=10)
    try:
        total = db.execute("SELECT count(*) FROM records").fetchone()[0]
        hl7 = db.execute("SELECT count(*) FROM records WHERE kind=?", (HL7_KIND,)).fetchone()[0]
        other = db.execute("SELECT count(*) FROM records WHERE kind NOT IN (?, ?, ?)",
                           (HL7_KIND, AUDIT_KIND, ADMIN_KIND)).fetchone()[0]
    finally:
        db.close()
    return total, hl7, other


def sender_errors(path, d, dev, nacks):
    """A sender may only have lost its connection, and hdx send says after how many ACKs."""
    problems = []
    if not os.path.exists(path):
        return problems
    for line in open(path, errors="replace").read().splitlines():
        m = re.fullmatch(r"hdx send: connection lost before the ACK of message (\d+)", line)
        if m:
            if int(m.group(1)) != nacks + 1:
                problems.append(f"SENDER OUTPUT INCONSISTENT round={d} sender={dev}: {line!r} "
                                f"but {nacks} ACK lines")
        elif re.fullmatch(r"hdx send: (TLS handshake with \S+ failed: .*|cannot connect to .*)",
                          line) and nacks == 0:
            pass  # hdxd died before this sender got in (a crash point in its first batches)
        elif not re.match(r"crashlib burst: connection (lost|closed) ", line):
            problems.append(f"SENDER ERROR round={d} sender={dev}: {line[:200]}")
    return problems


def load_sent_and_acked(work, upto_dirs):
    sent = {}      # (sender, msh10) -> "\n".join(segments)
    acked = set()  # (sender, msh10)
    problems = []
    nacks = 0
    resent_aa = resent_total = 0
    for d in upto_dirs:
        for path in sorted(glob.glob(os.path.join(work, d, "DEV*.hl7"))):
            dev = os.path.basename(path)[:-4]
            for cid, segs in read_messages(path):
                body = "\n".join(segs)
                if sent.setdefault((dev, cid), body) != body:
                    problems.append(f"test bug: {dev} {cid} sent with two contents")
            own_sent = {cid for cid, _ in read_messages(path)}
            resent = set()
            rp = os.path.join(work, d, f"{dev}.resent")
            if os.path.exists(rp):
                resent = set(open(rp).read().split())
            acks = read_acks(os.path.join(work, d, f"{dev}.out"))
            problems += sender_errors(os.path.join(work, d, f"{dev}.err"), d, dev, len(acks))
            for code, cid, rest in acks:
                nacks += 1
                if code != "AA":
                    problems.append(f"NON-AA ACK round={d} sender={dev} id={cid} ack={code} {rest}")
                    continue
                if cid not in own_sent:
                    problems.append(f"ACK FOR UNSENT MESSAGE round={d} sender={dev} id={cid}")
                    continue
                acked.add((dev, cid))
                if cid in resent and d == upto_dirs[-1]:
                    resent_aa += 1
            if d == upto_dirs[-1]:
                resent_total += len(resent)
    return sent, acked, problems, nacks, resent_aa, resent_total


def cmd_check(args):
    """check HDX_BIN DATA WORK LABEL DIR...: the after-crash assertions over every round
    directory given. Prints one summary line; exit 1 (with one line per problem) on failure.

    (a) every message any sender got 'AA' for is stored, exactly once (sender + MSH-10),
        with the very content sent; no message is stored twice;
    (b) hdx verify exits 0, its last line is 'records=N ok', and N equals the number of
        records in the store, and the HL7 v2 records are exactly those hdx query lists;
    (c) nothing is stored that no sender sent (sender, MSH-10 and content must match a
        message that device's sender was given)."""
    hdx_bin, data, work, label = args[:4]
    dirs = args[4:]
    hdx = os.path.join(hdx_bin, "hdx")
    problems = []
    sent, acked, p, nacks, resent_aa, resent_total = load_sent_and_acked(work, dirs)
    problems += p

    q = run([hdx, "query", "-d", data])
    if q.returncode != 0:
        problems.append(f"hdx query exit={q.returncode} stderr={q.stderr.strip()[:300]}")
    recs = parse_query(q.stdout)
    stored = {}
    for seq, sender, typ, segs in recs:
        if not segs or not segs[0].startswith("MSH"):
            problems.append(f"STORED RECORD WITHOUT MSH seq={seq} sender={sender}")
            continue
        f = segs[0].split("|")
        cid = f[9] if len(f) > 9 else ""
        key = (sender, cid)
        stored.setdefault(key, []).append(seq)
        body = "\n".join(segs)
        if key not in sent:
            problems.append(f"STORED BUT NEVER SENT seq={seq} sender={sender} id={cid}")  # (c)
        elif sent[key] != body:
            problems.append(f"STORED CONTENT DIFFERS FROM SENT seq={seq} sender={sender} id={cid}")
        if typ != "ORU^R01":
            problems.append(f"STORED TYPE WRONG seq={seq} sender={sender} id={cid} type={typ}")

    lost = sorted(k for k in acked if k not in stored)
    for dev, cid in lost[:50]:
        problems.append(f"LOST ACKNOWLEDGED MESSAGE sender={dev} id={cid}")  # (a)
    if len(lost) > 50:
        problems.append(f"... and {len(lost) - 50} more acknowledged messages lost")
    for (dev, cid), seqs in sorted(stored.items()):
        if len(seqs) > 1:
            problems.append(f"STORED MORE THAN ONCE sender={dev} id={cid} seqs={seqs}")  # (a)

    v = run([hdx, "verify", "-d", data])
    vlines = v.stdout.strip().split("\n")
    m = re.fullmatch(r"records=(\d+) ok", vlines[-1] if vlines else "")
    try:
        total, hl7, other = store_rows(data)
    except sqlite3.Error as e:
        # The schema is hdx's business; without it, fall back to "every record is a message".
        print(f"note: cannot count the store's rows directly ({e})", file=sys.stderr)
        total = hl7 = len(recs)
        other = 0
    if v.returncode != 0 or not m:
        problems.append(f"hdx verify exit={v.returncode}: " + " | ".join(vlines[-5:]))  # (b)
        nver = -1
    else:
        nver = int(m.group(1))
        if nver != total:
            problems.append(f"verify says records={nver} but the store holds {total}")
    if hl7 != len(recs):
        problems.append(f"store holds {hl7} HL7 v2 records but hdx query lists {len(recs)}")
    if other:
        problems.append(f"store holds {other} records that are neither HL7 v2, audit nor admin")
    if total != len(recs):
        # The rest are the enrolments (admin) and the senders' TLS authentications (audit
        # records, docs/AUDIT.md); verify's N counts them too.
        print(f"note: {total - hl7} non-HL7 records in the store (admin and audit)", file=sys.stderr)

    summary = (f"{label}: sent={len(sent)} ack_lines={nacks} acked={len(acked)} "
               f"resent_aa={resent_aa}/{resent_total} stored={len(recs)} "
               f"distinct={len(stored)} verified={nver} lost={len(lost)}")
    print(summary + (" FAIL" if problems else " ok"))
    for line in problems[:200]:
        print("  " + line)
    return 1 if problems else 0


# ---------- loss simulation (self-check) ----------

def cmd_lose(args):
    """lose HDX_BIN DATA WORK MODE DIR...: on DATA (a copy: hdxd stopped) removes records so
    that at least one acknowledged message is gone, the way a server bug would.
      tail:   deletes every record from the newest acknowledged one on (the store stays
              a valid prefix, so hdx verify still passes: only check (a) can notice);
      middle: deletes one acknowledged record in the middle (hdx verify notices too)."""
    hdx_bin, data, work, mode = args[:4]
    dirs = args[4:]
    _, acked, _, _, _, _ = load_sent_and_acked(work, dirs)
    q = run([os.path.join(hdx_bin, "hdx"), "query", "-d", data])
    seqs = [seq for seq, sender, _, segs in parse_query(q.stdout)
            if segs and (sender, segs[0].split("|")[9]) in acked]
    if not seqs:
        die("lose: no acknowledged record to remove")
    db = sqlite3.connect(os.path.join(data, "store.db"))
    if mode == "tail":
        seq = max(seqs)
        # Bodies live in segment files and hdxd re-indexes frames the index lacks, so a
        # real loss takes the frames too: zero the file from this record's frame on and
        # remove the later files.
        seg, off = db.execute("SELECT seg, off FROM records WHERE seq=?", (seq,)).fetchone()
        segdir = os.path.join(data, "segments")
        if seg is not None:
            with open(os.path.join(segdir, "seg-%016x.hdx" % seg), "r+b") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(off)
                f.write(bytes(size - off))
            for name in os.listdir(segdir):
                if name.startswith("seg-") and int(name[4:20], 16) > seg:
                    os.unlink(os.path.join(segdir, name))
        n = db.execute("DELETE FROM records WHERE seq>=?", (seq,)).rowcount
    elif mode == "middle":
        seq = seqs[len(seqs) // 2]
        n = db.execute("DELETE FROM records WHERE seq=?", (seq,)).rowcount
    else:
        die(f"lose: unknown mode {mode}")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(f"simulated loss mode={mode}: deleted {n} record(s) from seq={seq} "
          f"(acknowledged records before: {len(seqs)})")
    return 0


def main():
    if len(sys.argv) < 2:
        die("usage: crashlib.py ports|gen|resend|burst|check|lose ARGS")
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"ports": cmd_ports, "gen": cmd_gen, "resend": cmd_resend, "burst": cmd_burst,
          "check": cmd_check, "lose": cmd_lose}.get(cmd)
    if not fn:
        die(f"unknown command {cmd}")
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
