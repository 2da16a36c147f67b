#!/usr/bin/env python3
"""gen_clienthello_corpus.py -- writes real ClientHellos (Python ssl, curl,
openssl s_client against a local socket; several ALPN offers) and a few non-TLS
first flights to fuzz/corpus/clienthello/. Run from the project root; nothing
leaves 127.0.0.1. With names as arguments, writes only those seeds."""
import os
import socket
import ssl
import subprocess
import threading

OUT = "fuzz/corpus/clienthello"


def python_hello(sni, max_version=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def capture(cmd):
    """Runs cmd (with {port}) against a local socket; returns its first bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []

    def accept():
        conn, _ = srv.accept()
        conn.settimeout(3)
        data = b""
        try:
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        got.append(data)
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    subprocess.run([a.format(port=port) for a in cmd], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    t.join(5)
    srv.close()
    return got[0] if got else b""


def records(hello, size):
    """Re-frames the handshake bytes of a one-record hello into size-byte records."""
    body = hello[5:5 + int.from_bytes(hello[3:5], "big")]
    return b"".join(b"\x16\x03\x01" + len(body[i:i + size]).to_bytes(2, "big") + body[i:i + size]
                    for i in range(0, len(body), size))


def alpn_near_miss(hello):
    """hello (one record, no ALPN) with an ALPN extension whose second name is
    empty appended: a malformed offer the parser must refuse."""
    ext = b"\x00\x10\x00\x06\x00\x04\x02h2\x00"
    body = bytearray(hello[5:])
    # session_id, cipher_suites, compression, then the extensions' length
    off = 4 + 2 + 32
    off += 1 + body[off]
    off += 2 + int.from_bytes(body[off:off + 2], "big")
    off += 1 + body[off]
    n = int.from_bytes(body[off:off + 2], "big") + len(ext)
    body[off:off + 2] = n.to_bytes(2, "big")
    body += ext
    body[1:4] = (len(body) - 4).to_bytes(3, "big")
    return b"\x16\x03\x01" + len(body).to_bytes(2, "big") + bytes(body)


def main(only=None):
    os.makedirs(OUT, exist_ok=True)
    py = python_hello("example.com")
    seeds = {
        "python_tls13_sni": py,
        "python_tls12_only": python_hello("api.example.org", ssl.TLSVersion.TLSv1_2),
        "python_no_sni": python_hello(None),
        "python_alpn_h2": python_hello("www.example.net", alpn=["h2", "http/1.1"]),
        "python_3_records": records(py, len(py) // 3 + 1),
        "python_split_ext": records(py, 100),
        "curl": capture(["curl", "-sk", "--max-time", "2", "--resolve",
                         "curl.example:{port}:127.0.0.1", "https://curl.example:{port}/"]),
        "openssl_s_client": capture(["openssl", "s_client", "-connect", "127.0.0.1:{port}",
                                     "-servername", "s-client.example"]),
        "openssl_tls12_no_sni": capture(["openssl", "s_client", "-connect", "127.0.0.1:{port}",
                                         "-noservername", "-tls1_2"]),
        "curl_http11": capture(["curl", "-sk", "--http1.1", "--max-time", "2", "--resolve",
                                "curl.example:{port}:127.0.0.1", "https://curl.example:{port}/"]),
        "python_alpn_h2_only": python_hello("grpc.example", alpn=["h2"]),
        "python_alpn_h1_then_h2": python_hello("order.example", alpn=["http/1.1", "h2"]),
        "python_alpn_others": python_hello("other.example", alpn=["grpc-exp", "h3", "h2", "h2"]),
        "alpn_empty_name": alpn_near_miss(py),
        "not_tls_ssh": b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        "not_tls_http": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "not_tls_sslv2": bytes.fromhex("802e0103010015000000100100800300800700c0060040"
                                       "020080040080") + bytes(16),
        "tls_prefix": b"\x16\x03\x01",
    }
    for name, data in seeds.items():
        if only and name not in only:
            continue
        if not data:
            print("skipped", name)
            continue
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])  # names: write only these seeds
