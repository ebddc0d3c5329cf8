#!/usr/bin/python3
"""dicom_find_gen.py: the synthetic archive of bench/dicom_find_bench.sh, written byte by byte
(struct, no pydicom), so 100,000 instances take seconds.

Study i of an archive of n studies (a pure function of i and n: the storing processes and the
querying client agree on every value without sharing a file):
  patient       p = i % (n // 5): five studies per patient (20,000 patients for 100,000)
  PatientID     P%06d of p;  PatientName FAMILY^GIVEN (then a number: DOE^JOHN7) of p, from
                40 family and 30 given names;  PatientBirthDate, PatientSex of p
  StudyDate     spread over 2000-01-01 .. 2024-12-31;  StudyTime;  Modality CT/MR/US/CR
  AccessionNumber A%08d;  StudyID;  StudyDescription
  Study, Series, SOP Instance UID: 2.25.<128-bit number> (44 characters), distinct per study
One Secondary Capture instance (1.2.840.10008.5.1.4.1.1.7) per study, explicit VR little
endian, 16 x 16 x 8-bit pixels (256 bytes): about 900 bytes.

As a program: dicom_find_gen.py OUTDIR N SHARDS writes the Part 10 files, study i into
OUTDIR/s<i % SHARDS>/<i>.dcm (for storescu +sd, one directory per association)."""
import datetime
import hashlib
import os
import struct
import sys

SC = "1.2.840.10008.5.1.4.1.1.7"
ELE = "1.2.840.10008.1.2.1"
FAMILIES = ["DOE", "SMITH", "JONES", "MILLER", "GARCIA", "MARTIN", "BERNARD", "DUBOIS", "ROSSI",
            "SCHMIDT", "WAGNER", "NOVAK", "HORVAT", "NIELSEN", "HANSEN", "JANSEN", "PEETERS",
            "SILVA", "SANTOS", "KOWALSKI", "NAGY", "POPESCU", "IVANOV", "YILMAZ", "COHEN",
            "KHAN", "PATEL", "SINGH", "KIM", "LEE", "WANG", "LI", "CHEN", "LIU", "SATO",
            "TANAKA", "NGUYEN", "OKAFOR", "DIALLO", "HASSAN"]
GIVEN = ["JOHN", "JANE", "JONAS", "ANNA", "ANDRE", "PETER", "PAULA", "MARIA", "MARC", "LUCAS",
         "LEA", "EMMA", "ERIK", "NOAH", "NORA", "SOFIA", "SAMUEL", "OSCAR", "OLGA", "HUGO",
         "HANNA", "IDA", "IVAN", "KARL", "KATE", "RITA", "ROBERT", "TOM", "VERA", "ZOE"]
MODALITIES = ["CT", "MR", "US", "CR"]
DESCRIPTIONS = {"CT": "CT CHEST W/O CONTRAST", "MR": "MR BRAIN", "US": "US ABDOMEN",
                "CR": "CR CHEST 2 VIEWS"}
DAY0 = datetime.date(2000, 1, 1).toordinal()
NDAYS = datetime.date(2024, 12, 31).toordinal() - DAY0 + 1
# UIDs: a fixed 128-bit base, its low 24 bits the study number and the kind (1 study,
# 2 series, 3 instance); 2.25.<decimal> is the UID form of a 128-bit number (PS3.5 B.2).
UID_BASE = int(hashlib.sha256(b"hdx bench/dicom_find").hexdigest()[:32], 16) >> 24 << 24
PIXELS = bytes(range(256))


def patients(n):
    return max(1, n // 5)


def uid_of(i, kind):
    return "2.25.%d" % (UID_BASE | i << 2 | kind)


def study_of_uid(u):
    """The study number of a Study Instance UID made here, or -1."""
    try:
        v = int(u[5:]) if u.startswith("2.25.") else -1
    except ValueError:
        return -1
    return (v & 0xFFFFFF) >> 2 if v >> 24 == UID_BASE >> 24 and v & 3 == 1 else -1


def name_of(p):
    nf, ng = len(FAMILIES), len(GIVEN)
    k = p // (nf * ng)
    return "%s^%s%s" % (FAMILIES[p % nf], GIVEN[(p // nf) % ng], k if k else "")


def study(i, npat):
    """The query keys of study i (strings, as stored)."""
    p = i % npat
    day = (i * 2654435761 + 40503) % NDAYS
    mod = MODALITIES[(i // 7) % 4]
    return {
        "pid": "P%06d" % p, "name": name_of(p),
        "birth": "%04d%02d%02d" % (1930 + p % 80, 1 + p % 12, 1 + p % 28), "sex": "MF"[p % 2],
        "date": datetime.date.fromordinal(DAY0 + day).strftime("%Y%m%d"),
        "time": "%02d%02d%02d" % (7 + i % 12, i % 60, (i * 7) % 60),
        "mod": mod, "desc": DESCRIPTIONS[mod], "acc": "A%08d" % i, "sid": "%d" % (i % 100000),
        "study": uid_of(i, 1), "series": uid_of(i, 2), "inst": uid_of(i, 3),
    }


LONG_VRS = (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR")


def el(group, element, vr, value):
    """One explicit VR little endian element; value bytes, padded to even length."""
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in LONG_VRS:
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


_US = lambda v: struct.pack("<H", v)  # noqa: E731
_TAIL = b"".join((el(0x0020, 0x0011, b"IS", b"1"), el(0x0020, 0x0013, b"IS", b"1"),
                  el(0x0020, 0x0020, b"CS", b""), el(0x0028, 0x0002, b"US", _US(1)),
                  el(0x0028, 0x0004, b"CS", b"MONOCHROME2"), el(0x0028, 0x0010, b"US", _US(16)),
                  el(0x0028, 0x0011, b"US", _US(16)), el(0x0028, 0x0100, b"US", _US(8)),
                  el(0x0028, 0x0101, b"US", _US(8)), el(0x0028, 0x0102, b"US", _US(7)),
                  el(0x0028, 0x0103, b"US", _US(0)), el(0x7FE0, 0x0010, b"OB", PIXELS)))


def dataset(s):
    """The instance of study s (study()'s dict): explicit VR little endian, tag order."""
    e = lambda g, t, vr, v: el(g, t, vr, v.encode())  # noqa: E731
    return b"".join((
        e(8, 0x16, b"UI", SC), e(8, 0x18, b"UI", s["inst"]), e(8, 0x20, b"DA", s["date"]),
        e(8, 0x30, b"TM", s["time"]), e(8, 0x50, b"SH", s["acc"]), e(8, 0x60, b"CS", s["mod"]),
        e(8, 0x64, b"CS", "WSD"), e(8, 0x90, b"PN", ""), e(8, 0x1030, b"LO", s["desc"]),
        e(0x10, 0x10, b"PN", s["name"]), e(0x10, 0x20, b"LO", s["pid"]),
        e(0x10, 0x30, b"DA", s["birth"]), e(0x10, 0x40, b"CS", s["sex"]),
        e(0x20, 0x0D, b"UI", s["study"]), e(0x20, 0x0E, b"UI", s["series"]),
        e(0x20, 0x10, b"SH", s["sid"]), _TAIL))


def part10(s):
    """A Part 10 file of study s: preamble, meta group, data set."""
    meta = b"".join((el(2, 1, b"OB", b"\0\1"), el(2, 2, b"UI", SC.encode()),
                     el(2, 3, b"UI", s["inst"].encode()), el(2, 0x10, b"UI", ELE.encode()),
                     el(2, 0x12, b"UI", b"1.2.826.0.1.3680043.10.1"),
                     el(2, 0x13, b"SH", b"HDX_BENCH")))
    return (b"\0" * 128 + b"DICM" + el(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
            + dataset(s))


def main():
    out, n, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    npat = patients(n)
    for k in range(shards):
        os.makedirs("%s/s%d" % (out, k), exist_ok=True)
    for i in range(n):
        with open("%s/s%d/%d.dcm" % (out, i % shards, i), "wb") as f:
            f.write(part10(study(i, npat)))


if __name__ == "__main__":
    main()
