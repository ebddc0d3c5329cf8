#!/usr/bin/python3
"""Raw test client for the hdx integration tests (imported by inline scripts, or run as a CLI).

It sends exact bytes over mutual TLS or plain TCP and reports what came back, so a test can
assert the reply bytes, not just an exit code. Standard library only (ssl, socket).

CLI:
  hdxclient.py --port P [--plain | --cert C --key K] [--ca CA] [--tls VER] [--ciphers S]
               [--frame STR | --bytes STR | --frame-file F | --file F]... [--acks N]
               [--timeout S] [--wait-close S]
STR is a Python-escaped string ('\\x0b', '\\r' ...) sent as latin-1 bytes; --frame and
--frame-file wrap their payload in MLLP <VT>..<FS><CR>. Output, one item per line:
  HANDSHAKE_FAILED <reason>         the TLS handshake itself failed (nothing else follows)
  ACK <MSA-1> <MSA-2> <ERR-3.1|->   one per MLLP frame received (at most --acks)
  RAW <payload>                     with --show-raw: that frame, unicode-escaped (\r etc.)
  CLOSED <how>                      the server closed the connection (eof, reset, alert:...)
  TIMEOUT                           fewer than --acks frames arrived within --timeout
  OPEN                              --wait-close given and the connection was still open
Exit status 0 whatever the server did; 2 on a usage error.
"""
import argparse
import codecs
import socket
import ssl
import sys
import time

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


class Closed(Exception):
    """The peer closed the connection; str() says how (eof, reset, alert:...)."""


class Timeout(Exception):
    pass


def frame(payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return SB + payload + EB + CR


def hl7(ctrl, patient="PAT0001", name="TEST^PATIENT", mtype="ORU^R01", app="MON",
        term="\r", final_term=True, extra_segments=(), value="72"):
    """A small valid HL7 v2.5.1 message as bytes; every argument ends up verbatim in it."""
    segs = [
        "MSH|^~\\&|%s|WARD1|HDX|HOSP|20261125120000||%s|%s|P|2.5.1" % (app, mtype, ctrl),
        "PID|1||%s^^^HOSP^MR||%s" % (patient, name),
        "OBR|1|||8867-4^Heart rate^LN",
        "OBX|1|NM|8867-4^Heart rate^LN||%s|/min|||||F" % value,
    ]
    segs.extend(extra_segments)
    text = term.join(segs) + (term if final_term else "")
    return text.encode("utf-8")


def parse_ack(payload):
    """(MSA-1, MSA-2, ERR-3.1 or '-') of an ACK payload; ('?', '?', '?') if there is no MSA."""
    text = payload.decode("latin-1")
    fs = text[3:4] if text.startswith("MSH") and len(text) > 3 else "|"
    code, ctrl, err = "?", "?", "-"
    for seg in text.replace("\n", "\r").split("\r"):
        f = seg.split(fs)
        if f[0] == "MSA":
            code = f[1] if len(f) > 1 else ""
            ctrl = f[2] if len(f) > 2 else ""
        elif f[0] == "ERR" and len(f) > 3 and err == "-":
            err = f[3].split("^")[0] or "-"
    return code, ctrl, err


def tls_context(ca, cert=None, key=None, version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = True
    if cert:
        ctx.load_cert_chain(cert, key)
    if version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    elif version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def client_hello():
    """The bytes of a TLS ClientHello, as a standard client would send first."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Conn:
    """One client connection. TLS unless plain=True; the handshake happens in __init__ and
    raises ssl.SSLError/OSError when it fails."""

    def __init__(self, port, ca=None, cert=None, key=None, plain=False, host="127.0.0.1",
                 timeout=10.0, version=None, ciphers=None, rcvbuf=None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        try:
            raw.connect((host, port))
            if plain:
                self.sock = raw
            else:
                ctx = tls_context(ca, cert, key, version, ciphers)
                self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise Timeout()
        except ssl.SSLError as e:
            raise Closed("alert:" + (e.reason or str(e)).lower())
        except ConnectionResetError:
            raise Closed("reset")
        except OSError as e:
            raise Closed("error:%s" % e.errno)
        if not data:
            raise Closed("eof")
        return data

    def read_frame(self, timeout=10.0):
        """The next MLLP payload (bytes). Raises Closed or Timeout."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.buf.find(SB)
            if s >= 0:
                e = self.buf.find(EB + CR, s + 1)
                if e >= 0:
                    payload = self.buf[s + 1:e]
                    self.buf = self.buf[e + 2:]
                    return payload
            self.buf += self._recv(deadline)

    def read_line(self, timeout=10.0):
        """The next LF-terminated line (bytes, without LF); for the subscription protocol."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            self.buf += self._recv(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_exact(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self.buf += self._recv(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def wait_closed(self, timeout):
        """How the server closed the connection (str), or None if it stayed open. Data that
        arrives meanwhile is kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.buf += self._recv(deadline)
        except Closed as c:
            return str(c)
        except Timeout:
            return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def graceful_close(self, timeout=5.0):
        """Half-closes (TCP FIN, no TLS close_notify), discards whatever still arrives until
        the server closes, then closes: no unread data is left behind, so no RST is sent."""
        try:
            self.sock.shutdown(socket.SHUT_WR)   # also drops the TLS layer; the rest is noise
            self.sock.settimeout(timeout)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.close()

    def reset(self):
        """Closes with SO_LINGER 0: the kernel sends a TCP RST instead of a FIN."""
        import struct
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()


def send_many(conn, messages, timeout=30.0, window=32, suffix=b""):
    """Pipelines MLLP frames on one connection, at most `window` unacknowledged (below
    mllp.max_inflight, so hdxd never stops reading), and returns the parsed ACKs in arrival
    order; a shorter list if the connection closed or timed out. `suffix` follows each frame. Single-threaded: an ssl
    socket must not be read and written from two threads at once."""
    acks, sent, n = [], 0, len(messages)
    try:
        while len(acks) < n:
            while sent < n and sent - len(acks) < window:
                conn.send(frame(messages[sent]) + suffix)
                sent += 1
            acks.append(parse_ack(conn.read_frame(timeout)))
    except (Closed, Timeout, OSError):
        pass
    return acks


def read_sub_message(conn, timeout=10.0):
    """One 'MSG ...' item of the subscription protocol: (header dict, body bytes). Other
    lines (BYE, ERR) come back as ({'line': text}, None)."""
    line = conn.read_line(timeout).decode("latin-1")
    if not line.startswith("MSG "):
        return {"line": line}, None
    hdr = dict(kv.split("=", 1) for kv in line[4:].split(" "))
    body = conn.read_exact(int(hdr["len"]) + 1, timeout)
    if body[-1:] != b"\n":
        raise AssertionError("MSG body not followed by LF")
    return hdr, body[:-1]


def _escaped(s):
    return codecs.decode(s, "unicode_escape").encode("latin-1")


def main(argv):
    ap = argparse.ArgumentParser(description="hdx raw test client")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--tls", choices=["1.2", "1.3"])
    ap.add_argument("--ciphers")
    ap.add_argument("--frame", action="append", default=[], dest="parts",
                    type=lambda s: ("frame", _escaped(s)))
    ap.add_argument("--bytes", action="append", dest="parts", type=lambda s: ("raw", _escaped(s)))
    ap.add_argument("--frame-file", action="append", dest="parts",
                    type=lambda s: ("frame", open(s, "rb").read()))
    ap.add_argument("--file", action="append", dest="parts",
                    type=lambda s: ("raw", open(s, "rb").read()))
    ap.add_argument("--acks", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--wait-close", type=float, default=None)
    ap.add_argument("--show-raw", action="store_true",
                    help="after each ACK line, print RAW <payload, unicode-escaped>")
    a = ap.parse_args(argv)
    if not a.plain and not a.ca:
        ap.error("--ca is required for TLS")
    try:
        c = Conn(a.port, a.ca, a.cert, a.key, a.plain, a.host, a.timeout, a.tls, a.ciphers)
    except (ssl.SSLError, OSError) as e:
        print("HANDSHAKE_FAILED %s" % (getattr(e, "reason", None) or type(e).__name__))
        return 0
    try:
        for kind, data in a.parts:
            c.send(frame(data) if kind == "frame" else data)
    except OSError as e:
        # The server may have closed first; its alert, if any, is still readable.
        print("CLOSED %s" % (c.wait_closed(1.0) or "send-failed:%s" % type(e).__name__))
        return 0
    try:
        for _ in range(a.acks):
            payload = c.read_frame(a.timeout)
            print("ACK %s %s %s" % parse_ack(payload), flush=True)
            if a.show_raw:
                print("RAW " + payload.decode("latin-1").encode("unicode_escape").decode())
    except Closed as e:
        print("CLOSED %s" % e)
        return 0
    except Timeout:
        print("TIMEOUT")
        return 0
    if a.wait_close is not None:
        how = c.wait_closed(a.wait_close)
        print("CLOSED %s" % how if how else "OPEN")
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
