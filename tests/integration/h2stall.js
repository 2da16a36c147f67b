// h2stall.js -- a sandbox that stops reading: Node's http2 client through
// egressd's explicit proxy (CONNECT, TLS offering h2) asks for PATH, reads
// its first DATA, then pauses the stream and never reads again (so its flow
// control windows stay shut). Prints "paused BYTES" once paused, then waits
// until stdin closes.
// Usage: node h2stall.js PROXY_HOST:PORT HOST:PORT PATH CA.pem
'use strict';
const fs = require('fs');
const http2 = require('http2');
const net = require('net');
const tls = require('tls');

const [proxy, target, path, ca] = process.argv.slice(2);
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
  const host = target.split(':')[0];
  const t = tls.connect({ socket: s, servername: host, ca: fs.readFileSync(ca), ALPNProtocols: ['h2'] });
  t.on('error', fail);
  const c = http2.connect(`https://${target}`, { createConnection: () => t });
  c.on('error', fail);
  const req = c.request({ ':path': path });
  req.on('error', fail);
  req.once('data', (d) => {
    req.pause();
    console.log('paused', d.length);
  });
  req.end();
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
