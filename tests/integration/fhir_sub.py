#!/usr/bin/python3
"""fhir_sub.py: the receiving ends of FHIR Subscriptions for tests 75 (clients nobody here
wrote: python3-websockets, Python's own http.server and ssl).

  fhir_sub.py ws URL TOKEN CAFILE OUT EVENTS SECONDS [HEARTBEATS]
      connects to the websocket URL (TLS checked against CAFILE), sends
      "bind-with-token TOKEN" (for each of TOKEN,TOKEN,...), writes every message it receives to OUT as one JSON line, and
      exits 0 once it has EVENTS event notifications (and HEARTBEATS heartbeats), or 3 at
      SECONDS (EVENTS 0: runs until SECONDS or until killed). A close by the server is written as {"closed": CODE, "reason": TEXT}; exit 4.
  fhir_sub.py hook PORT CERT KEY OUT [FAILFILE]
      an HTTPS rest-hook receiver on 127.0.0.1:PORT: each POST's body (JSON) and headers are
      one line of OUT; answers 200, or 503 while FAILFILE exists. Runs until killed.
"""
import asyncio
import http.server
import json
import os
import ssl
import sys


def ws_main(url, token, cafile, out, want, seconds, want_hb=0):
    import websockets

    async def run():
        ctx = ssl.create_default_context(cafile=cafile)
        events = hbs = 0
        with open(out, "a") as f:
            try:
                async with websockets.connect(url, ssl=ctx, max_size=1 << 22) as ws:
                    for t in token.split(","):  # several: one bind each
                        await ws.send("bind-with-token " + t)
                    while want <= 0 or events < want or hbs < want_hb:
                        msg = await ws.recv()
                        f.write(json.dumps(json.loads(msg)) + "\n")
                        f.flush()
                        b = json.loads(msg)
                        t = [p["valueCode"] for p in b["entry"][0]["resource"]["parameter"]
                             if p["name"] == "type"][0]
                        if t == "event-notification":
                            events += 1
                        if t == "heartbeat":
                            hbs += 1
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                reason = e.rcvd.reason if e.rcvd else ""
                f.write(json.dumps({"closed": code, "reason": reason}) + "\n")
                return 4
        return 0

    try:
        return asyncio.run(asyncio.wait_for(run(), seconds))
    except asyncio.TimeoutError:
        return 3


def hook_main(port, cert, key, out, failfile=None):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            if failfile and os.path.exists(failfile):
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            line = {"headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(body)}
            with open(out, "a") as f:
                f.write(json.dumps(line) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "ws":
        a = sys.argv[2:]
        sys.exit(ws_main(a[0], a[1], a[2], a[3], int(a[4]), float(a[5]),
                         int(a[6]) if len(a) > 6 else 0))
    if sys.argv[1] == "hook":
        a = sys.argv[2:]
        hook_main(a[0], a[1], a[2], a[3], a[4] if len(a) > 4 else None)
    sys.exit(2)
