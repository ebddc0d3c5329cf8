#!/usr/bin/python3
"""gen_charset: writes charset.tsv, the oracle for tests/unit/test_dicom_match.c.

For each of pydicom's character-set sample files (pydicom/data/charset_files, see FileInfo.txt
there) one row: the file name, the raw Specific Character Set (0008,0005) value as stored
(values joined by a backslash), the raw PatientName (0010,0010) bytes hex-encoded exactly as
they are in the file (trailing padding removed), and pydicom's decoding of them, hex-encoded
UTF-8. hdx_charset must turn the raw bytes into exactly that UTF-8.

Run: /usr/bin/python3 gen_charset.py > charset.tsv (needs python3-pydicom; the names in the
sample files are pydicom's own made-up test names, not patient data)."""
import os
import sys

import pydicom
from pydicom.charset import convert_encodings, decode_bytes

DIR = os.path.join(os.path.dirname(pydicom.__file__), 'data', 'charset_files')
FILES = ['chrGerm.dcm', 'chrFren.dcm', 'chrFrenMulti.dcm', 'chrRuss.dcm', 'chrGreek.dcm',
         'chrArab.dcm', 'chrHbrw.dcm', 'chrX1.dcm', 'chrX2.dcm', 'chrH31.dcm', 'chrH32.dcm',
         'chrI2.dcm']


def main():
    out = sys.stdout
    out.write('# file\tspecific_character_set\traw_patient_name_hex\tutf8_hex (pydicom %s)\n'
              % pydicom.__version__)
    for name in FILES:
        ds = pydicom.dcmread(os.path.join(DIR, name))
        scs = ds.get('SpecificCharacterSet', '')
        cs = '\\'.join(scs) if isinstance(scs, pydicom.multival.MultiValue) else str(scs)
        raw = ds.get_item('PatientName').value
        raw = raw.rstrip(b' \0')
        # pydicom's own decoding of exactly these bytes (str(ds.PatientName) would drop a
        # trailing '='), with the PN delimiters at which it resets to value 1's set.
        text = decode_bytes(raw, convert_encodings(ds.get('SpecificCharacterSet', '')),
                            {ord('^'), ord('=')})
        out.write('%s\t%s\t%s\t%s\n' % (name, cs, raw.hex(), text.encode('utf-8').hex()))


if __name__ == '__main__':
    main()
