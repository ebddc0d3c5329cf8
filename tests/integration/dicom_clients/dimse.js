// dcmjs-dimse (npm, TEST-CLIENTS.md 4.3) as an SCU: C-ECHO then C-STORE of each file given, over
// TLS with a client certificate, or plain TCP with --plain. Prints one line per response:
// "echo status=0x0000", "store status=0x0000 file=F", and "networkError MESSAGE" on failure.
// usage: node dimse.js HOST PORT CALLING CALLED (--plain | CA CERT KEY) FILE...
'use strict';
const fs = require('fs');
const d = require('dcmjs-dimse');
d.log.setLevel('error');
require('dcmjs').log.setLevel('error');
const { Client, requests: { CEchoRequest, CStoreRequest } } = d;

const a = process.argv.slice(2);
const [host, port, calling, called] = a;
const plain = a[4] === '--plain';
const files = a.slice(plain ? 5 : 7);
const hex = (s) => '0x' + s.toString(16).padStart(4, '0');
const client = new Client();
const echo = new CEchoRequest();
echo.on('response', (r) => console.log('echo status=' + hex(r.getStatus())));
client.addRequest(echo);
for (const f of files) {
  const st = new CStoreRequest(f);
  st.on('response', (r) => console.log('store status=' + hex(r.getStatus()) + ' file=' + f));
  client.addRequest(st);
}
client.on('networkError', (e) => { console.log('networkError ' + e.message); process.exitCode = 1; });
const opts = plain ? {} : {
  securityOptions: {
    ca: fs.readFileSync(a[4]), cert: fs.readFileSync(a[5]), key: fs.readFileSync(a[6]),
    rejectUnauthorized: true, minVersion: 'TLSv1.2',
  },
};
client.send(host, Number(port), calling, called, opts);
