#!/usr/bin/env python3
"""hsprof.py -- where a new intercepted connection's proxy CPU goes: `perf record` of one
egressd during bench.py's new-connection cell (loadgen --mode new -c 8), the samples
sorted into the handshake's parts (a sample counts in the first category whose marker is
on its stack), scaled to µs per connection by the cell's measured CPU.

    bench/hsprof.py [BINARY] [intercept|tunnel]      (root: perf; HSPROF_SECONDS, default 5)

Debian's libssl/libcrypto carry no symbols for their static functions: the categories are
told apart by the exported functions on the stack (EVP_PKEY_generate, EVP_DigestSign*, ...),
and "other libssl/libcrypto" is what no marker names (state machine, ASN.1, providers).
"""
import collections
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def has(s, *names):
    return any(f in names for f, _ in s)


def has_prefix(s, *prefixes):
    return any(f.startswith(prefixes) for f, _ in s)


def kernel(s):
    return s[0][1].startswith("[kernel")


CATEGORIES = [  # (name, test on the stack: list of (symbol, dso), leaf first)
    ("key shares generated (X25519, both sides)", lambda s: has(s, "EVP_PKEY_generate")),
    ("leaf signature (ECDSA P-256, with its init and fetches)",
     lambda s: has(s, "EVP_DigestSignFinal", "EVP_DigestSignInit_ex", "EVP_PKEY_digestsign_supports_digest")),
    ("session copies through DER (i2d/d2i_SSL_SESSION: tickets)",
     lambda s: has(s, "i2d_SSL_SESSION", "d2i_SSL_SESSION")),
    ("key schedule: HKDF, finished MACs, HMAC (with their fetches)",
     lambda s: has_prefix(s, "EVP_KDF", "EVP_Q_mac", "HMAC", "EVP_MAC")),
    ("transcript hashes, record ciphers", lambda s: has_prefix(s, "EVP_Digest", "EVP_MD_CTX", "EVP_Cipher",
                                                                  "EVP_Encrypt", "EVP_Decrypt", "SHA")),
    ("RAND (with its getpid fork check)", lambda s: has_prefix(s, "RAND_", "EVP_RAND")),
    ("SSL objects: tls_new_*, SSL_new, SSL_free",
     lambda s: has(s, "tls_new_downstream", "tls_new_upstream", "SSL_free", "SSL_new")),
    ("kernel: connect, accept, close, socket",
     lambda s: kernel(s) and has_prefix(s, "__libc_connect", "accept4", "__GI___close", "__close", "__GI___socket")),
    ("kernel: read, write", lambda s: kernel(s) and has_prefix(s, "__GI___writev", "__GI___libc_write", "__libc_read",
                                                               "__GI___readv", "__GI___libc_read", "read", "write")),
    ("kernel: epoll, other", kernel),
    ("other libssl/libcrypto (state machine, ASN.1, providers, X25519 derive)",
     lambda s: s[0][1] in ("libssl.so.3", "libcrypto.so.3")),
    ("malloc/free", lambda s: s[0][0] in ("malloc", "_int_malloc", "_int_free", "cfree@GLIBC_2.2.5", "malloc_consolidate",
                                          "__GI___libc_malloc", "__GI___libc_free", "unlink_chunk.constprop.0")),
    ("libevent, egressd, libc", lambda s: True),
]


def stacks(script):
    """perf script -F ip,sym,dso output -> [[(symbol, dso), ...], ...]"""
    out, cur = [], []
    for line in script.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = []
            continue
        m = re.match(r"\s+\S+ (\S+) \((.*)\)$", line)
        if m:
            cur.append((m.group(1), os.path.basename(m.group(2))))
    if cur:
        out.append(cur)
    return out


def main():
    exe = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else bench.EGRESSD)
    path = sys.argv[2] if len(sys.argv) > 2 else "intercept"
    bench.DURATION = float(os.environ.get("HSPROF_SECONDS", "5"))
    data = tempfile.mktemp(prefix="hsprof-", suffix=".data")
    try:
        bench.setup_upstream()
        r = bench.egressd_row(path, path, path == "intercept", exe)
        r.start()
        if r.inject and not bench.check_injection(r):
            raise RuntimeError("secret not injected")
        perf = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", data,
                                 "-p", str(r.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cell = bench.run_cell(r, ["--mode", "new", "-c", "8"])
        perf.send_signal(2)
        perf.wait()
    finally:
        bench.teardown()
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"], capture_output=True,
                            text=True).stdout
    os.unlink(data)
    per_conn = cell["proxy_cpu_s"] / max(1, cell["requests_total"]) * 1e6
    s = stacks(script)
    count = collections.Counter()
    for st in s:
        count[next(name for name, test in CATEGORIES if test(st))] += 1
    print("| %s, new connection c=8: %.0f µs proxy CPU per connection (under perf), %d samples | share | µs |"
          % (path, per_conn, len(s)))
    print("|---|---|---|")
    for name, _ in CATEGORIES:
        share = count[name] / max(1, len(s))
        print("| %s | %.1f%% | %.0f |" % (name, 100 * share, share * per_conn))


if __name__ == "__main__":
    main()
