#!/usr/bin/env node
// outside_gen.js: an independent MLLP load generator over mutual TLS, to cross-check `hdx bench`
// (the issue asks that the two agree within 25%). It shares no code with hdx: Node.js's own
// TLS (OpenSSL inside Node, but Node's event loop, buffers and framing), its own ORU^R01 and
// its own ACK parser. Only built-in modules, no npm packages.
//
//   node bench/outside_gen.js --to 127.0.0.1:PORT --ca CA --cert CERT --key KEY
//        [--connections 64] [--inflight 1] [--seconds 10] [--warmup 1] [--rate 0]
//
// K connections (TLS 1.3, client certificate, TCP_NODELAY) each keep N messages in flight:
// a ~1 KB ORU^R01 with a unique MSH-10; every ACK must be MLLP-framed, MSA-1 = AA and MSA-2 =
// the control id of the oldest message in flight on that connection (ACKs come in order).
// Latency runs from the write of a message to the parse of its ACK, counted after the warmup.
// With --rate R (total msgs/s) each connection sends on a fixed schedule instead (open loop,
// still at most N in flight). Bounded: sending stops after warmup + seconds, the last ACKs
// may take 10 s more, then every socket is closed. Output: human lines, then one last
// key=value line:  gen=node msgs_per_s= p50_ms= p99_ms= p999_ms= sent= acked= bad= lost=
// connections= inflight= cpu_cores=   Exit 0 only if every ACK was AA for its message.
'use strict';
const tls = require('tls');
const fs = require('fs');

function parseArgs(argv) {
  const o = { connections: 64, inflight: 1, seconds: 10, warmup: 1, rate: 0 };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    const num = (lo, hi) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < lo || n > hi) usage(`${a} must be ${lo}-${hi}`);
      i++;
      return n;
    };
    if (a === '--to') { o.to = v; i++; }
    else if (a === '--ca') { o.ca = v; i++; }
    else if (a === '--cert') { o.cert = v; i++; }
    else if (a === '--key') { o.key = v; i++; }
    else if (a === '--connections') o.connections = num(1, 4096) | 0;
    else if (a === '--inflight') o.inflight = num(1, 256) | 0;
    else if (a === '--seconds') o.seconds = num(0.1, 3600);
    else if (a === '--warmup') o.warmup = num(0, 600);
    else if (a === '--rate') o.rate = num(0, 1e7);
    else usage(`unknown argument ${a}`);
  }
  if (!o.to || !o.ca || !o.cert || !o.key) usage('--to, --ca, --cert and --key are required');
  const m = /^([0-9.]+):(\d+)$/.exec(o.to);
  if (!m) usage('--to must be IPv4 HOST:PORT');
  o.host = m[1];
  o.port = Number(m[2]);
  return o;
}

function usage(why) {
  process.stderr.write(`outside_gen: ${why}\nusage: node outside_gen.js --to HOST:PORT --ca CA ` +
    '--cert CERT --key KEY [--connections K] [--inflight N] [--seconds S] [--warmup S] [--rate R]\n');
  process.exit(2);
}

const o = parseArgs(process.argv);
const ca = fs.readFileSync(o.ca), cert = fs.readFileSync(o.cert), key = fs.readFileSync(o.key);
const SB = 0x0b, EB = 0x1c, CR = 0x0d;
const runTag = (Date.now() % 1679616).toString(36).padStart(4, '0'); // 4 base-36 digits

function ts() {
  const d = new Date(), p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

// ~1 KB ORU^R01, like a bedside monitor's: MSH, PID, PV1, OBR, six OBX.
function oru(ctl, conn, seq) {
  const t = ts(), mrn = `GEN-${20000 + conn}`;
  const vit = [
    ['8867-4', 'Heart rate', 60 + (seq % 40), '/min', '60-100'],
    ['59408-5', 'SaO2 % BldA PulseOx', 95 + (seq % 5), '%', '95-100'],
    ['8480-6', 'BP sys', 110 + (seq % 30), 'mm[Hg]', '90-140'],
    ['8462-4', 'BP dias', 70 + (seq % 15), 'mm[Hg]', '60-90'],
    ['9279-1', 'Resp rate', 12 + (seq % 8), '/min', '12-20'],
    ['8310-5', 'Body temperature', (36.5 + (seq % 10) / 10).toFixed(1), 'Cel', '36.1-37.8'],
  ];
  let s = `MSH|^~\\&|GEN|OUTSIDE|HDX|HOSPITAL|${t}||ORU^R01^ORU_R01|${ctl}|P|2.5.1||||||UNICODE UTF-8|||` +
    'IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r' +
    `PID|1||${mrn}^^^OUTSIDE^MR||Testperson^Gen^^^^^L||19700101|F|||1 Loopback Lane^^Springfield^^01234^USA\r` +
    `PV1|1|I|ICU^^BED-${conn % 100}^OUTSIDE||||4711^Okonjo^Maren^^^Dr|||MED\r` +
    `OBR|1|${ctl}||182777000^Monitoring of patient^SCT|||${t}||||||||||||||||||F\r`;
  vit.forEach((v, i) => {
    s += `OBX|${i + 1}|NM|${v[0]}^${v[1]}^LN||${v[2]}|${v[3]}^${v[3]}^UCUM|${v[4]}|N|||F|||${t}||||GEN-DEVICE\r`;
  });
  return s;
}

// MSA-1 and MSA-2 of one ACK payload (latin1 string), or null.
function msa(payload) {
  for (const seg of payload.split(/\r\n|\r|\n/)) {
    if (seg.startsWith('MSA')) {
      const sep = seg[3], f = seg.split(sep);
      return [f[1] || '', (f[2] || '').split('^')[0]];
    }
  }
  return null;
}

const lat = []; // ms, measured window only
const tot = { sent: 0, acked: 0, aa: 0, bad: 0, lost: 0, dropped: 0, measured: 0, behind: 0 };
let connected = 0, closed = 0, sizeSum = 0;
const conns = [];
const t0 = process.hrtime.bigint();
const nowMs = () => Number(process.hrtime.bigint() - t0) / 1e6;
let tStart = 0, tMeasure = 0, tEnd = 0, stopped = false;
const interval = o.rate > 0 ? (1000 * o.connections) / o.rate : 0; // ms per connection

function makeConn(idx) {
  const c = { idx, seq: 0, q: [], buf: Buffer.alloc(0), done: false, due: 0, timer: null };
  c.sock = tls.connect({
    host: o.host, port: o.port, ca, cert, key, minVersion: 'TLSv1.3', servername: undefined,
    checkServerIdentity: (host, crt) => tls.checkServerIdentity(o.host, crt),
  });
  c.sock.setNoDelay(true);
  c.sock.on('secureConnect', () => { if (++connected === o.connections) start(); });
  c.sock.on('data', (d) => onData(c, d));
  c.sock.on('error', (e) => { if (!c.done) { tot.dropped++; finish(c, `error ${e.message}`); } });
  c.sock.on('close', () => { if (!c.done) { tot.dropped++; finish(c, 'closed'); } });
  return c;
}

function finish(c) {
  if (c.done) return;
  c.done = true;
  tot.lost += c.q.length;
  c.q = [];
  if (c.timer) clearTimeout(c.timer);
  c.sock.destroy();
  if (++closed === o.connections) report();
}

function pump(c) {
  if (c.done) return;
  const now = nowMs();
  let out = '';
  while (c.q.length < o.inflight) {
    if (now >= tEnd) { stopped = true; break; }
    if (interval) {
      if (c.due > now) {
        if (!c.timer) c.timer = setTimeout(() => { c.timer = null; pump(c); }, c.due - now);
        break;
      }
      if (now - c.due > interval) tot.behind++;
      c.due += interval;
    }
    const ctl = `G${runTag}${c.idx.toString(16).padStart(4, '0')}${(++c.seq).toString(16).padStart(10, '0')}`.slice(0, 20);
    const m = oru(ctl, c.idx, c.seq);
    sizeSum += m.length;
    out += '\x0b' + m + '\x1c\x0d';
    c.q.push([ctl, now]);
    tot.sent++;
  }
  if (out) c.sock.write(Buffer.from(out, 'latin1')); // one write per turn, as hdx bench does
  if (stopped && c.q.length === 0) finish(c);
}

function onData(c, d) {
  c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d;
  let off = 0;
  for (;;) {
    const sb = c.buf.indexOf(SB, off);
    if (sb < 0) { off = c.buf.length; break; }
    let eb = c.buf.indexOf(EB, sb + 1);
    while (eb >= 0 && eb + 1 < c.buf.length && c.buf[eb + 1] !== CR) eb = c.buf.indexOf(EB, eb + 1);
    if (eb < 0 || eb + 1 >= c.buf.length) { off = sb; break; }
    const now = nowMs();
    const r = msa(c.buf.toString('latin1', sb + 1, eb));
    off = eb + 2;
    const head = c.q.shift();
    tot.acked++;
    if (!head || !r || r[0] !== 'AA' || r[1] !== head[0]) {
      tot.bad++;
      c.buf = Buffer.alloc(0);
      finish(c);
      return;
    }
    tot.aa++;
    if (now >= tMeasure && now < tEnd) { tot.measured++; lat.push(now - head[1]); }
  }
  c.buf = off >= c.buf.length ? Buffer.alloc(0) : c.buf.subarray(off);
  pump(c);
}

let cpu0;
function start() {
  tStart = nowMs();
  tMeasure = tStart + o.warmup * 1000;
  tEnd = tMeasure + o.seconds * 1000;
  cpu0 = process.cpuUsage();
  console.log(`outside_gen: ${o.connections} connections to ${o.to}, ${o.inflight} in flight each, ` +
    `${interval ? `open loop ${o.rate} msgs/s` : 'closed loop'}, warmup ${o.warmup} s, measuring ${o.seconds} s`);
  conns.forEach((c, i) => { c.due = tStart + (interval * i) / o.connections; pump(c); });
  // the end: stop sending at tEnd; the last ACKs may take 10 s, then everything is closed
  setTimeout(() => conns.forEach((c) => { if (c.q.length === 0) finish(c); }), tEnd - nowMs() + 50);
  setTimeout(() => conns.forEach((c) => finish(c)), tEnd - nowMs() + 10000).unref();
}

function q(p) {
  if (!lat.length) return 0;
  return lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)];
}

let reported = false;
function report() {
  if (reported) return;
  reported = true;
  const wall = (nowMs() - tStart) / 1000;
  const cpu = cpu0 ? process.cpuUsage(cpu0) : { user: 0, system: 0 };
  lat.sort((a, b) => a - b);
  const rate = tot.measured / o.seconds;
  const ok = tot.bad === 0 && tot.lost === 0 && tot.dropped === 0 && tot.aa > 0;
  console.log(`outside_gen: sent=${tot.sent} acked=${tot.acked} aa=${tot.aa} bad=${tot.bad} ` +
    `lost=${tot.lost} dropped=${tot.dropped} measured=${tot.measured} mean_size=${(sizeSum / Math.max(1, tot.sent)).toFixed(0)}`);
  if (interval) console.log(`outside_gen: target ${o.rate} msgs/s ${rate >= 0.97 * o.rate ? 'held' : 'NOT held'}, late sends ${tot.behind}`);
  console.log(`gen=node msgs_per_s=${rate.toFixed(1)} p50_ms=${q(0.5).toFixed(3)} p99_ms=${q(0.99).toFixed(3)} ` +
    `p999_ms=${q(0.999).toFixed(3)} sent=${tot.sent} acked=${tot.acked} bad=${tot.bad} lost=${tot.lost} ` +
    `connections=${o.connections} inflight=${o.inflight} cpu_cores=${((cpu.user + cpu.system) / 1e6 / wall).toFixed(2)}`);
  process.exit(ok ? 0 : 1);
}

for (let i = 1; i <= o.connections; i++) conns.push(makeConn(i));
// the whole process is bounded: connecting may take 30 s at most
setTimeout(() => {
  if (connected < o.connections) {
    process.stderr.write(`outside_gen: only ${connected}/${o.connections} connections after 30 s\n`);
    process.exit(1);
  }
}, 30000).unref();
setTimeout(() => { process.stderr.write('outside_gen: overall time limit\n'); report(); },
  (o.warmup + o.seconds) * 1000 + 45000).unref();
