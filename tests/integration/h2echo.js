// h2echo.js -- an HTTPS upstream for h2_test.py that speaks HTTP/2 and
// HTTP/1.1 (ALPN picks): each request is answered with JSON naming the
// protocol, method, path, headers and body length, and the sha256 of its
// Authorization (so a test sees what arrived without a value echoed);
// /big/N: N bytes of 'x' and then the Authorization value. "conn" numbers the
// connection the request came on. /chunked: a reply without a length (two
// writes) echoing Authorization, with a trailer x-echo echoing it too;
// /status/N: an empty reply with status N; /reset: the stream is reset
// (HTTP/1.1: the socket destroyed); /goaway: GOAWAY first (the session
// closes once this reply is done), then the JSON reply. An HTTP/1.1
// WebSocket upgrade gets 101 and one text frame of JSON (proto, auth_sha256).
// Prints its port. With "h1": HTTP/1.1 only (ALPN http/1.1).
// Usage: node h2echo.js KEY.pem CERT.pem [h1]
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http2 = require('http2');
const https = require('https');

const [key, cert, mode] = process.argv.slice(2);
const tlsOpts = { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
const srv = mode === 'h1'
  ? https.createServer({ ...tlsOpts, ALPNProtocols: ['http/1.1'] })
  : http2.createSecureServer({ ...tlsOpts, allowHTTP1: true });
const conns = new WeakMap();
let nconn = 0;
const connOf = (req) => {
  const k = req.stream ? req.stream.session : req.socket;
  if (!conns.has(k)) conns.set(k, ++nconn);
  return conns.get(k);
};
const sha = (s) => crypto.createHash('sha256').update(s || '').digest('hex');
srv.on('upgrade', (req, socket) => {
  const accept = crypto.createHash('sha1')
    .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  const msg = Buffer.from(JSON.stringify({ proto: req.httpVersion,
                                           auth_sha256: sha(req.headers.authorization) }));
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
               'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  socket.end(Buffer.concat([Buffer.from([0x81, msg.length]), msg]));
});
srv.on('request', (req, res) => {
  let n = 0;
  if (req.url === '/reset') {
    if (req.stream) req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else req.socket.destroy();
    return;
  }
  if (req.url === '/goaway' && req.stream) req.stream.session.close();
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => {
    const status = /^\/status\/(\d+)$/.exec(req.url);
    if (status) {
      res.statusCode = Number(status[1]);
      res.end();
      return;
    }
    if (req.url === '/chunked') {
      res.setHeader('content-type', 'text/plain');
      res.write('first ' + (req.headers.authorization || '') + '\n');
      res.addTrailers({ 'x-echo': req.headers.authorization || '' });
      setImmediate(() => res.end('second ' + (req.headers.authorization || '') + '\n'));
      return;
    }
    const big = /^\/big\/(\d+)$/.exec(req.url);
    if (big) { // N bytes of 'x', then the Authorization value (a redaction check)
      res.setHeader('content-type', 'application/octet-stream');
      res.end(Buffer.concat([Buffer.alloc(Number(big[1]), 'x'),
                             Buffer.from(req.headers.authorization || '')]));
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ proto: req.httpVersion, method: req.method, path: req.url,
                             headers: req.headers, body: n, conn: connOf(req),
                             auth_sha256: crypto.createHash('sha256')
                               .update(req.headers.authorization || '').digest('hex') }));
  });
});
srv.listen(0, '127.0.0.1', () => { console.log(srv.address().port); });
