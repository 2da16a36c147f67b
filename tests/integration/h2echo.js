// h2echo.js -- an HTTPS upstream for h2_test.py that speaks HTTP/2 and
// HTTP/1.1 (ALPN picks): each request is answered with JSON naming the
// protocol, method, path, headers and body length, and the sha256 of its
// Authorization (so a test sees what arrived without a value echoed);
// /big/N: N bytes of 'x' and then the Authorization value.
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
srv.on('request', (req, res) => {
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => {
    const big = /^\/big\/(\d+)$/.exec(req.url);
    if (big) { // N bytes of 'x', then the Authorization value (a redaction check)
      res.setHeader('content-type', 'application/octet-stream');
      res.end(Buffer.concat([Buffer.alloc(Number(big[1]), 'x'),
                             Buffer.from(req.headers.authorization || '')]));
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ proto: req.httpVersion, method: req.method, path: req.url,
                             headers: req.headers, body: n,
                             auth_sha256: crypto.createHash('sha256')
                               .update(req.headers.authorization || '').digest('hex') }));
  });
});
srv.listen(0, '127.0.0.1', () => { console.log(srv.address().port); });
