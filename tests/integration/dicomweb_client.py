"""Helpers of 78-dicomweb around curl (the HTTP client) and pydicom (the DICOM reader):
  body OUT BOUNDARY FILE...       a STOW-RS request body, as PS3.18 8.6.1.2 and the
                                  dicomweb-client package write it (CRLF, one part per file)
  split HEADERS BODY OUTDIR       reads a WADO-RS multipart/related answer with Python's email
                                  parser (curl -D wrote HEADERS): each part's payload goes to
                                  OUTDIR/partN.dcm; prints the number of parts and their
                                  Content-Types, one per line
  json FILE EXPR                  evaluates EXPR on the parsed JSON `j` and prints the result
  frame FILE K                    the SHA-256 of frame K (from 1) of FILE as pydicom reads it
                                  (native: its slice of Pixel Data; encapsulated: the frame
                                  pydicom.encaps puts together)
  sha FILE                        the SHA-256 of FILE
  uids FILE                       its top-level Study, Series and SOP Instance UIDs
  pixsha FILE                     the SHA-256 of its Pixel Data value
  value FILE PATH                 the value, as text, of the attribute at a bulk data path
  same-meta HDXJSON FILE          compares hdx's DICOM JSON metadata of FILE with what pydicom
                                  makes of the same file (Dataset.to_json_dict), attribute by
                                  attribute for the top-level string and number values; prints
                                  "same N" or the first difference
Run with /usr/bin/python3 (Debian's pydicom)."""
import email.parser
import email.policy
import json
import os
import sys


def body(out, boundary, files):
    with open(out, "wb") as w:
        for f in files:
            w.write(b"--" + boundary.encode() + b"\r\n")
            w.write(b"Content-Type: application/dicom\r\n\r\n")
            with open(f, "rb") as r:
                w.write(r.read())
            w.write(b"\r\n")
        w.write(b"--" + boundary.encode() + b"--\r\n")


def split(headers, bodyfile, outdir):
    ctype = None
    with open(headers, "rb") as h:
        for line in h.read().split(b"\r\n"):
            if line.lower().startswith(b"content-type:"):
                ctype = line.split(b":", 1)[1].strip()
    if ctype is None:
        print("no Content-Type")
        return 1
    with open(bodyfile, "rb") as b:
        raw = b"Content-Type: " + ctype + b"\r\nMIME-Version: 1.0\r\n\r\n" + b.read()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not msg.is_multipart():
        print("not multipart")
        return 1
    os.makedirs(outdir, exist_ok=True)
    parts = list(msg.iter_parts())
    print(len(parts))
    for i, p in enumerate(parts):
        with open(os.path.join(outdir, "part%d.dcm" % i), "wb") as w:
            w.write(p.get_payload(decode=True))
        print(p.get("Content-Type"))
    return 0


def same_meta(hdxjson, f):
    import pydicom

    with open(hdxjson) as r:
        mine = json.load(r)
    if isinstance(mine, list):
        mine = mine[0]
    ds = pydicom.dcmread(f)
    theirs = ds.to_json_dict(bulk_data_threshold=1 << 30)
    n = 0
    for tag, a in theirs.items():
        if a.get("vr") in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ") or tag.startswith("0002"):
            continue
        if tag == "00080005":  # JSON is UTF-8: hdx says ISO_IR 192 for the values it converted
            continue
        if tag not in mine:
            print("missing", tag)
            return 1
        b = mine[tag]
        if a.get("vr") != b.get("vr"):
            print("vr differs", tag, a.get("vr"), b.get("vr"))
            return 1
        va, vb = a.get("Value"), b.get("Value")
        if a["vr"] == "PN" and va and all(
            isinstance(x, dict) and not "".join(x.values()).strip("^=") for x in va
        ):
            va = None  # a name of empty components only ("^^^^") is empty, as dcm2json says
        if a["vr"] in ("DS", "FL", "FD") and va and vb:
            if any(x is None or y is None or abs(float(x) - float(y)) > 1e-6 * max(1, abs(float(x)))
                   for x, y in zip(va, vb)) or len(va) != len(vb):
                print("value differs", tag)
                return 1
        elif va != vb:
            print("value differs", tag, repr(va)[:80], repr(vb)[:80])
            return 1
        n += 1
    print("same", n)
    return 0


def frame(f, k):
    import hashlib
    import pydicom
    from pydicom import encaps

    ds = pydicom.dcmread(f)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        frames = list(encaps.generate_pixel_data_frame(ds.PixelData, n))
        data = frames[k - 1]
    else:
        size = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * ds.BitsAllocated // 8
        data = ds.PixelData[(k - 1) * size:k * size]
    print(hashlib.sha256(data).hexdigest())
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "body":
        body(sys.argv[2], sys.argv[3], sys.argv[4:])
        return 0
    if cmd == "split":
        return split(sys.argv[2], sys.argv[3], sys.argv[4])
    if cmd == "json":
        with open(sys.argv[2]) as r:
            j = json.load(r)
        print(eval(sys.argv[3], {"j": j, "len": len, "sorted": sorted}))
        return 0
    if cmd == "frame":
        return frame(sys.argv[2], int(sys.argv[3]))
    if cmd == "uids":  # the top-level Study, Series and SOP Instance UIDs
        import pydicom
        ds = pydicom.dcmread(sys.argv[2], stop_before_pixels=True)
        print(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        return 0
    if cmd == "pixsha":  # the SHA-256 of the Pixel Data value as stored
        import hashlib
        import pydicom
        print(hashlib.sha256(pydicom.dcmread(sys.argv[2]).PixelData).hexdigest())
        return 0
    if cmd == "value":  # FILE TAG/ITEM/TAG...: that attribute's value as text (pydicom's)
        import pydicom
        node = pydicom.dcmread(sys.argv[2], stop_before_pixels=True)
        parts = sys.argv[3].split("/")
        for i in range(0, len(parts) - 1, 2):
            node = node[int(parts[i], 16)].value[int(parts[i + 1])]
        v = node[int(parts[-1], 16)].value
        print("\\".join(str(x) for x in v) if isinstance(v, (list, pydicom.multival.MultiValue)) else str(v))
        return 0
    if cmd == "sha":
        import hashlib
        with open(sys.argv[2], "rb") as r:
            print(hashlib.sha256(r.read()).hexdigest())
        return 0
    if cmd == "same-meta":
        return same_meta(sys.argv[2], sys.argv[3])
    print("unknown command", cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main())
