// h2client.js -- Node's own http2 client through egressd's explicit proxy:
// CONNECT, then TLS offering ALPN h2 only (as gRPC and Node's http2 do), then
// one GET. Prints the reply's status and body, or "error CODE MESSAGE".
// Usage: node h2client.js PROXY_HOST:PORT HOST:PORT PATH CA.pem [HEADER:VALUE]
'use strict';
const fs = require('fs');
const http2 = require('http2');
const net = require('net');
const tls = require('tls');

const [proxy, target, path, ca, extra] = process.argv.slice(2);
const [ph, pp] = proxy.split(':');
const fail = (e) => { console.log('error', e.code || '-', e.message); process.exit(3); };
const s = net.connect(Number(pp), ph, () => {
  s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
});
let head = '';
s.on('error', fail);
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
  const hdrs = { ':path': path };
  if (extra) { const i = extra.indexOf(':'); hdrs[extra.slice(0, i).toLowerCase()] = extra.slice(i + 1).trim(); }
  const req = c.request(hdrs);
  let status = 0; let body = '';
  req.on('response', (h) => { status = h[':status']; });
  req.on('data', (d) => { body += d; });
  req.on('end', () => { console.log(status); console.log(body); c.close(); });
  req.on('error', fail);
  req.end();
});
