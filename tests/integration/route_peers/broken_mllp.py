#!/usr/bin/python3
"""broken_mllp.py: an MLLP peer that misbehaves on purpose (plain or TLS), for hdx route tests.

  /usr/bin/python3 broken_mllp.py --mode MODE [--port 0] [--ready F] [--out F]
                                  [--key K --cert C [--client-ca CA]] [--late-ms MS]
Modes (what it does with each complete frame it receives, after recording it):
  aa               a correct ACK (MSA-1 AA, MSA-2 = its MSH-10): the control case
  silent           nothing, ever (the connection stays open)
  garbage          bytes that are no MLLP frame
  not-hl7          a well-formed MLLP frame whose payload is not HL7
  wrong-msa2       message k's ACK is held until message k+1 arrives (on any connection), so
                   the first ACK a sender sees for k+1 carries k's control id; with --late-ms,
                   a held ACK is also sent after MS if no newer message came
  close-mid-frame  half an ACK frame, then close
  ae-forever       ACK with MSA-1 AE
  ar               ACK with MSA-1 AR
  reset            RST (SO_LINGER 0, abort)
Records one JSON line per frame: n, conn, msh10, msh9, pid3, bytes, sha256, text (+ peer_cn
under TLS). Listens on 127.0.0.1 only; prints 'ready PORT' (and writes PORT to --ready).
"""
import argparse
import asyncio
import signal
import socket
import struct
import time

import peerlib

VT, FS, CR = b'\x0b', b'\x1c', b'\r'
MODES = ('aa', 'silent', 'garbage', 'not-hl7', 'wrong-msa2', 'close-mid-frame', 'ae-forever', 'ar', 'reset')


def ack(text, code, n):
    """An original-mode ACK frame for TEXT (one HL7 message)."""
    cid = peerlib.field(text, 'MSH', 10) or ''
    trig = (peerlib.field(text, 'MSH', 9) or '').split('^')[1:2] or ['']
    ver = peerlib.field(text, 'MSH', 12) or '2.5.1'
    body = 'MSH|^~\\&|BROKEN|PEER|%s|%s|%s||ACK^%s^ACK|BRK%06d|P|%s\rMSA|%s|%s\r' % (
        peerlib.field(text, 'MSH', 3) or '', peerlib.field(text, 'MSH', 4) or '',
        time.strftime('%Y%m%d%H%M%S'), trig[0], n, ver, code, cid)
    return VT + body.encode() + FS + CR


class Peer:
    def __init__(self, args):
        self.a = args
        self.rec = peerlib.Recorder(args.out)
        self.conns = 0
        self.held = None  # wrong-msa2: (ack bytes, message n)

    async def serve(self, reader, writer):
        self.conns += 1
        conn = self.conns
        cn = peerlib.peer_cn(writer.get_extra_info('peercert')) if self.a.cert else None
        buf = b''
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                while True:
                    s = buf.find(VT)
                    e = buf.find(FS + CR, s + 1) if s >= 0 else -1
                    if e < 0:
                        break
                    payload, buf = buf[s + 1:e], buf[e + 2:]
                    if not await self.frame(payload, conn, cn, writer):
                        return
        except (ConnectionError, OSError) as e:
            peerlib.log('conn %d: %s' % (conn, e))
        finally:
            if not writer.is_closing():
                writer.close()

    async def frame(self, payload, conn, cn, writer):
        """Records and answers one frame; False once the connection is finished."""
        rec, text = peerlib.hl7_record(payload)
        rec = {'conn': conn, **rec, 'text': text}
        if self.a.cert:
            rec['peer_cn'] = cn
        n = self.rec.add(rec)
        m = self.a.mode
        if m == 'silent':
            return True
        if m == 'reset':
            sock = writer.get_extra_info('socket')
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            writer.transport.abort()
            return False
        if m == 'garbage':
            out = b'HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff garbage, no MLLP frame\n'
        elif m == 'not-hl7':
            out = VT + b'this is not an HL7 message' + FS + CR
        elif m == 'wrong-msa2':
            out, self.held = (self.held[0] if self.held else b''), (ack(text, 'AA', n), n)
            if self.a.late_ms > 0:
                asyncio.get_running_loop().call_later(self.a.late_ms / 1000, self.late, n, writer)
        else:
            out = ack(text, {'aa': 'AA', 'ae-forever': 'AE', 'ar': 'AR', 'close-mid-frame': 'AA'}[m], n)
        if m == 'close-mid-frame':
            writer.write(out[:len(out) // 2])
            await writer.drain()
            writer.close()
            return False
        if out:
            writer.write(out)
            await writer.drain()
        return True

    def late(self, n, writer):
        if self.held and self.held[1] == n and not writer.is_closing():
            writer.write(self.held[0])
            self.held = None


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mode', choices=MODES, required=True)
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--ready')
    p.add_argument('--out')
    p.add_argument('--key')
    p.add_argument('--cert')
    p.add_argument('--client-ca')
    p.add_argument('--late-ms', type=int, default=0)
    a = p.parse_args()
    ctx = peerlib.server_context(a.key, a.cert, a.client_ca) if a.cert else None
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda lp, c: peerlib.log(c.get('message'), c.get('exception', '')))
    peer = Peer(a)
    srv = await asyncio.start_server(peer.serve, '127.0.0.1', a.port, ssl=ctx)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    peerlib.announce(srv.sockets[0].getsockname()[1], a.ready)
    await stop.wait()
    srv.close()


if __name__ == '__main__':
    asyncio.run(main())
