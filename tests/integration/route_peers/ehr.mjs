// ehr.mjs: an EHR stand-in for hdx outbound routes, built on node-hl7-server 2.3.0 (pinned).
// Listens on 127.0.0.1 (MLLP, or MLLP over TLS; mutual TLS when --client-ca is given),
// appends one JSON line per received message to --out and answers AA / AE / AR as told.
//
//   node ehr.mjs --port 0 --ready F --out F [--key K --cert C [--client-ca CA]]
//                [--ack AA|AE] [--ar-ids ID,ID] [--ae-first K] [--delay MS]
// Every option may also come from the environment: EHR_PORT, EHR_READY, EHR_OUT, EHR_KEY,
// EHR_CERT, EHR_CLIENT_CA, EHR_ACK, EHR_AR_IDS, EHR_AE_FIRST, EHR_DELAY.
// Prints "ready PORT" on stdout (and writes PORT to --ready) once listening; exits 0 on SIGTERM.
import fs from 'node:fs';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { Server } from 'node-hl7-server';

const names = ['port', 'ready', 'out', 'key', 'cert', 'client-ca', 'ack', 'ar-ids', 'ae-first', 'delay'];
const { values } = parseArgs({ options: Object.fromEntries(names.map((n) => [n, { type: 'string' }])) });
const opt = (n, dflt) => values[n] ?? process.env['EHR_' + n.toUpperCase().replace('-', '_')] ?? dflt;

const port = Number(opt('port', '0'));
const out = opt('out', '');
const ready = opt('ready', '');
const ack = opt('ack', 'AA');
const arIds = new Set(opt('ar-ids', '').split(',').filter(Boolean));
const aeFirst = Number(opt('ae-first', '0'));
const delay = Number(opt('delay', '0'));
if (!['AA', 'AE'].includes(ack)) throw new Error('--ack must be AA or AE');

let tls;
if (opt('key') || opt('cert')) {
  tls = { key: fs.readFileSync(opt('key')), cert: fs.readFileSync(opt('cert')) };
  // node-hl7-server 2.3.0 passes only key, cert, requestCert and ca to tls.createServer; node's
  // default rejectUnauthorized (true) then makes a requested client certificate mandatory.
  if (opt('client-ca')) Object.assign(tls, { ca: fs.readFileSync(opt('client-ca')), requestCert: true, rejectUnauthorized: true });
}

// field N of the first segment named SEG, raw (components and repeats kept); MSH-1 is '|'
function field(text, seg, n) {
  const s = text.split(/\r\n|\r|\n/).find((l) => l.startsWith(seg + '|'));
  if (!s) return null;
  const f = s.split('|');
  return (seg === 'MSH' ? f[n - 1] : f[n]) ?? null;
}

// The frame payload as read (node-hl7-server emits it just before calling the handler, in
// the same tick). When one read held one message, the record keeps those exact characters;
// when it held several frames (pipelining), 2.3.0 splits them like a batch and the record
// falls back to the library's re-serialised message ("reparsed": true).
let lastRaw = null;
let n = 0;
const server = new Server({ bindAddress: '127.0.0.1', tls });
const inbound = server.createInbound({ port }, async (req, res) => {
  const raw = lastRaw;
  lastRaw = null;
  const single = raw !== null && !/[\x0b\x1c]/.test(raw); // its VT and first FS CR are stripped
  const text = single ? raw : req.getMessage().toString();
  const k = ++n;
  const sock = res._socket; // internal in 2.3.0: the only way to the peer certificate
  const cn = tls && sock.getPeerCertificate ? (sock.getPeerCertificate().subject?.CN ?? null) : null;
  const rec = {
    n: k, msh10: field(text, 'MSH', 10), msh9: field(text, 'MSH', 9), pid3: field(text, 'PID', 3),
    bytes: Buffer.byteLength(text), sha256: crypto.createHash('sha256').update(text).digest('hex'),
    peer_cn: cn, text,
  };
  if (!single) rec.reparsed = true;
  if (out) fs.appendFileSync(out, JSON.stringify(rec) + '\n');
  let code = ack;
  if (k <= aeFirst) code = 'AE';
  if (arIds.has(rec.msh10)) code = 'AR';
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  if (!sock.destroyed) await res.sendResponse(code);
});
inbound.on('data.raw', (t) => { lastRaw = t; });
inbound.on('listen', () => {
  const p = inbound._socket.address().port; // port 0: the kernel's choice
  if (ready) { fs.writeFileSync(ready + '.tmp', p + '\n'); fs.renameSync(ready + '.tmp', ready); }
  process.stdout.write(`ready ${p}\n`);
});
inbound.on('error', (e) => { console.error('ehr: listen error:', e.message); process.exit(2); });
inbound.on('data.error', (e) => console.error('ehr: parse error:', e.message));
inbound.on('client.error', (e) => console.error('ehr: client error:', e.message));
inbound._socket.on('tlsClientError', (e) => console.error('ehr: tls error:', e.message));
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => { await inbound.close(); process.exit(0); });
}
