#!/usr/bin/python3
"""https_receiver.py: an HTTP(S) endpoint that records every POST, for hdx HTTPS routes.

  /usr/bin/python3 https_receiver.py [--port 0] [--ready F] [--out F]
      [--key K --cert C [--client-ca CA]]    TLS; a client CA makes a client cert mandatory
      [--status 200]                         status of every answer (201, 204, 400, 500, ...)
      [--fail-first K --fail-status 503]     the first K POSTs get FAIL-STATUS, then --status
      [--delay-ms MS]                        wait before answering
Records one JSON line per POST: n, path, content_type, length, sha256, text (+ peer_cn when a
client CA is configured). Other methods get 405 and no record. HTTP/1.1 with keep-alive;
chunked bodies are decoded. Listens on 127.0.0.1 only; prints 'ready PORT' (and writes --ready).
"""
import argparse
import hashlib
import http.server
import json
import signal
import threading
import time

import peerlib

A = None
REC = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = 10  # idle keep-alive connections and slow handshakes end

    def setup(self):
        super().setup()
        if A.cert:
            self.request.do_handshake()  # here, in the connection's thread, not in accept

    def log_message(self, fmt, *args):
        peerlib.log(self.address_string(), fmt % args)

    def body(self):
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            out = b''
            while True:
                size = int(self.rfile.readline().split(b';')[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get('Content-Length') or 0))

    def do_POST(self):
        data = self.body()
        rec = {'path': self.path, 'content_type': self.headers.get('Content-Type'), 'length': len(data),
               'sha256': hashlib.sha256(data).hexdigest(), 'text': data.decode('utf-8', 'replace')}
        if A.client_ca:
            rec['peer_cn'] = peerlib.peer_cn(self.request.getpeercert())
        n = REC.add(rec)
        if A.delay_ms:
            time.sleep(A.delay_ms / 1000)
        self.answer(A.fail_status if n <= A.fail_first else A.status)

    def answer(self, status):
        payload = b'' if status in (204, 304) else json.dumps({'status': status}).encode() + b'\n'
        self.send_response(status)
        if payload:
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self.answer(405)

    do_PUT = do_DELETE = do_PATCH = do_GET


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys
        peerlib.log('connection from %s: %s' % (client_address[0], sys.exc_info()[1]))


def main():
    global A, REC
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--ready')
    p.add_argument('--out')
    p.add_argument('--key')
    p.add_argument('--cert')
    p.add_argument('--client-ca')
    p.add_argument('--status', type=int, default=200)
    p.add_argument('--fail-first', type=int, default=0)
    p.add_argument('--fail-status', type=int, default=503)
    p.add_argument('--delay-ms', type=int, default=0)
    A = p.parse_args()
    REC = peerlib.Recorder(A.out)
    srv = Server(('127.0.0.1', A.port), Handler)
    if A.cert:
        ctx = peerlib.server_context(A.key, A.cert, A.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    peerlib.announce(srv.server_address[1], A.ready)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    srv.server_close()


if __name__ == '__main__':
    main()
