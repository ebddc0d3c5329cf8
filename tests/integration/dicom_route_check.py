#!/usr/bin/python3
"""dicom_route_check.py: what test 80-route-dicom compares (Debian python3 with pydicom).

  dicom_route_check.py uid FILE
      the SOP Instance UID of FILE's data set (0008,0018)
  dicom_route_check.py ts FILE
      the transfer syntax UID of FILE's meta header (0002,0010)
  dicom_route_check.py same FILE_A FILE_B
      exit 0 when both Part 10 files carry the same data set byte for byte (the bytes after the
      file meta group) and the same SOP Instance UID; else a reason on stderr and exit 1
  dicom_route_check.py dir OUTDIR [--calling AE] REF...
      OUTDIR is what a storage SCP (dcmtk storescp +B, bit-preserving) wrote; REF are the files
      hdx stored (hdx dicom get). Exit 0 when OUTDIR holds exactly one file per REF (matched by
      SOP Instance UID, none twice, none foreign), each with REF's data set byte for byte and
      REF's transfer syntax, and (--calling) the Source AE Title storescp wrote into the meta
      (0002,0016: the calling AE title of the association) is AE. Prints one line per file.

The data set is where the meta group ends: pydicom reads the preamble and the meta group
(filereader.read_preamble, _read_file_meta_info) and the file position after it is the
offset; a hand-written walk over the group-2 elements must agree with it.
"""
import os
import struct
import sys

import pydicom
from pydicom import filereader

LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"}


def die(msg):
    print("dicom_route_check: " + msg, file=sys.stderr)
    sys.exit(1)


def split(path):
    """(meta dict {keyword: value}, data set bytes) of a Part 10 file."""
    with open(path, "rb") as fp:
        raw = fp.read()
        fp.seek(0)
        try:
            filereader.read_preamble(fp, False)
            meta = filereader._read_file_meta_info(fp)
        except Exception as e:  # noqa: BLE001 - any failure to read is a reason
            die("%s: not a Part 10 file: %s" % (path, e))
        off = fp.tell()
    # the same walk by hand (explicit VR little endian, group 2 only)
    at = 132
    while at + 8 <= len(raw):
        grp, _ = struct.unpack_from("<HH", raw, at)
        if grp != 2:
            break
        vr = raw[at + 4:at + 6]
        if vr in LONG_VRS:
            at += 12 + struct.unpack_from("<I", raw, at + 8)[0]
        else:
            at += 8 + struct.unpack_from("<H", raw, at + 6)[0]
    if at != off:
        die("%s: meta group ends at %d by hand, at %d by pydicom" % (path, at, off))
    return meta, raw[off:]


def ds_uid(path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    uid = str(ds.get("SOPInstanceUID", ""))
    if not uid:
        die("%s: no SOP Instance UID in the data set" % path)
    return uid


def meta_str(meta, kw):
    v = meta.get(kw)
    return "" if v is None else str(v).strip()


def same(a, b):
    ma, da = split(a)
    mb, db = split(b)
    ua, ub = ds_uid(a), ds_uid(b)
    if ua != ub:
        return "SOP Instance UID %s vs %s" % (ua, ub)
    if da != db:
        n = min(len(da), len(db))
        first = next((i for i in range(n) if da[i] != db[i]), n)
        return "data sets differ (%d vs %d bytes, first difference at data set offset %d)" % (
            len(da), len(db), first)
    return None


def main():
    if len(sys.argv) < 3:
        die(__doc__)
    cmd = sys.argv[1]
    if cmd == "uid":
        print(ds_uid(sys.argv[2]))
    elif cmd == "ts":
        meta, _ = split(sys.argv[2])
        print(meta_str(meta, "TransferSyntaxUID"))
    elif cmd == "same":
        why = same(sys.argv[2], sys.argv[3])
        if why:
            die("%s vs %s: %s" % (sys.argv[2], sys.argv[3], why))
        print("same")
    elif cmd == "dir":
        args = sys.argv[2:]
        outdir = args.pop(0)
        calling = None
        while args and args[0] in ("--calling",):
            calling = args[1]
            args = args[2:]
        refs = {}
        for r in args:
            u = ds_uid(r)
            if u in refs:
                die("two references with SOP Instance UID %s (%s, %s)" % (u, refs[u], r))
            refs[u] = r
        files = sorted(os.path.join(outdir, f) for f in os.listdir(outdir)
                       if os.path.isfile(os.path.join(outdir, f)))
        seen = {}
        bad = []
        for f in files:
            u = ds_uid(f)
            if u in seen:
                bad.append("%s: instance %s received twice (also %s)" % (f, u, seen[u]))
                continue
            seen[u] = f
            if u not in refs:
                bad.append("%s: instance %s is none of the references" % (f, u))
                continue
            why = same(f, refs[u])
            mf, _ = split(f)
            mr, _ = split(refs[u])
            tsf, tsr = meta_str(mf, "TransferSyntaxUID"), meta_str(mr, "TransferSyntaxUID")
            if tsf != tsr:
                why = (why + "; " if why else "") + "transfer syntax %s, stored as %s" % (tsf, tsr)
            src = meta_str(mf, "SourceApplicationEntityTitle")
            if calling is not None and src != calling:
                why = (why + "; " if why else "") + "calling AE [%s], wanted [%s]" % (src, calling)
            print("%s uid=%s ts=%s calling=%s %s" % (os.path.basename(f), u, tsf, src,
                                                      "ok" if not why else "BAD: " + why))
            if why:
                bad.append("%s: %s" % (f, why))
        missing = sorted(set(refs) - set(seen))
        for u in missing:
            bad.append("instance %s (%s) was not received" % (u, refs[u]))
        if bad:
            die("; ".join(bad))
        print("ok files=%d" % len(files))
    else:
        die("unknown command %s" % cmd)


if __name__ == "__main__":
    main()
