// h2multi.js -- Node's http2 client through egressd's explicit proxy: CONNECT,
// TLS offering ALPN h2 only, then several requests one after the other on the
// same HTTP/2 connection (each its own stream; a header object may set
// ':authority', ':method', ':path' and any field). Prints one JSON line per
// request: {"status", "reason" (X-Egressd-Reason), "body"} or {"error"}.
// Usage: node h2multi.js PROXY_HOST:PORT HOST:PORT CA.pem 'JSON array of header objects'
'use strict';
const fs = require('fs');
const http2 = require('http2');
const net = require('net');
const tls = require('tls');

const [proxy, target, ca, reqsJson] = process.argv.slice(2);
const reqs = JSON.parse(reqsJson);
const [ph, pp] = proxy.split(':');
const fail = (e) => { console.log('error', e.code || '-', e.message); process.exit(3); };
const s = net.connect(Number(pp), ph, () => {
  s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
});
let head = '';
s.on('error', fail);

function one(c, hdrs) {
  return new Promise((resolve) => {
    const req = c.request(hdrs);
    let status = 0; let reason = null; let body = '';
    req.on('response', (h) => { status = h[':status']; reason = h['x-egressd-reason'] || null; });
    req.on('data', (d) => { body += d; });
    req.on('end', () => resolve({ status, reason, body }));
    req.on('error', (e) => resolve({ error: `${e.code || '-'} ${e.message}` }));
    req.end();
  });
}

s.on('data', function onData(d) {
  head += d.toString('latin1');
  if (!head.includes('\r\n\r\n')) return;
  s.removeListener('data', onData);
  if (!/^HTTP\/1\.1 200/.test(head)) { console.log('connect', head.split('\r\n')[0]); process.exit(4); }
  const host = target.split(':')[0];
  const t = tls.connect({ socket: s, servername: host, ca: fs.readFileSync(ca), ALPNProtocols: ['h2'] });
  t.on('error', fail);
  const c = http2.connect(`https://${target}`, { createConnection: () => t });
  c.on('error', fail);
  (async () => {
    for (const h of reqs) console.log(JSON.stringify(await one(c, h)));
    c.close();
  })();
});
