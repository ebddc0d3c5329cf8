"""peerlib: shared by broken_mllp.py and https_receiver.py (stdlib only, /usr/bin/python3).

A record is one JSON line, appended and flushed at once so a test can read it while the peer runs.
"""
import hashlib
import json
import os
import re
import ssl
import sys
import threading

_lock = threading.Lock()


def field(text, seg, n):
    """Field N of the first SEG segment, raw (components, repeats kept); MSH-1 is the '|'."""
    for line in re.split(r'\r\n|\r|\n', text):
        if line.startswith(seg + '|'):
            f = line.split('|')
            i = n - 1 if seg == 'MSH' else n
            return f[i] if i < len(f) else None
    return None


def hl7_record(payload: bytes):
    text = payload.decode('utf-8', 'replace')
    return {'msh10': field(text, 'MSH', 10), 'msh9': field(text, 'MSH', 9), 'pid3': field(text, 'PID', 3),
            'bytes': len(payload), 'sha256': hashlib.sha256(payload).hexdigest()}, text


class Recorder:
    def __init__(self, path):
        self.path, self.n = path, 0

    def add(self, rec):
        """Numbers REC (n, 1-based, in arrival order), appends it; returns n."""
        with _lock:
            self.n += 1
            rec = {'n': self.n, **rec}
            if self.path:
                with open(self.path, 'a', encoding='utf-8') as f:
                    f.write(json.dumps(rec) + '\n')
                    f.flush()
            return self.n


def server_context(key, cert, client_ca):
    """TLS server context; a client CA makes the client certificate mandatory (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_cn(cert):
    for rdn in (cert or {}).get('subject', ()):
        for k, v in rdn:
            if k == 'commonName':
                return v
    return None


def announce(port, ready_file):
    """Writes PORT to READY_FILE (atomically) and prints 'ready PORT'."""
    if ready_file:
        with open(ready_file + '.tmp', 'w') as f:
            f.write('%d\n' % port)
        os.replace(ready_file + '.tmp', ready_file)
    print('ready %d' % port, flush=True)


def log(*a):
    print(os.path.basename(sys.argv[0]) + ':', *a, file=sys.stderr, flush=True)
