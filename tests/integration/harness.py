"""harness.py -- shared machinery for egressd's integration tests.

Python 3 stdlib only. Provides:
  * Suite / Ctx      a TAP runner: one case per function, a watchdog per case,
                     per-case cleanup of every process and socket it made
  * make_pki()       a throwaway CA + server certificate made with the openssl CLI
  * EchoHTTPServer   TLS or plain HTTP/1.1 upstream echoing method, path, headers
                     and body digest as JSON; /big streams several MB
  * TcpServer        threaded accept loop + a thread per connection (base class)
  * TCPEchoServer    raw TCP echo (non-TLS bytes through a CONNECT tunnel)
  * DNSServer        UDP DNS answering A records from a dict, NXDOMAIN otherwise
  * Egressd          the binary under test (EGRESSD_BIN), started on a free port,
                     stopped with SIGTERM, its stderr checked for sanitizer reports
  * raw client helpers (CONNECT, HTTP request/response parsing) and curl()

Nothing here talks to anything but loopback (or addresses the suite adds to the
loopback interface of its own network namespace).
"""

import atexit
import ctypes
import hashlib
import http.server
import json
import os
import random
import re
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EGRESSD_BIN = os.environ.get("EGRESSD_BIN", "build/egressd")
if not os.path.isabs(EGRESSD_BIN):
    EGRESSD_BIN = os.path.join(ROOT, EGRESSD_BIN)


_SHARED_BIN = {}


def egressd_bin_for_anyone():
    """A copy of EGRESSD_BIN that any user can execute, for cases that run it
    under another uid: the checkout may sit where other users cannot enter
    (/root, a mkdtemp directory). Made once per process in a 0755 directory
    under /tmp, removed at exit."""
    if "path" not in _SHARED_BIN:
        d = tempfile.mkdtemp(prefix="egressd-bin-", dir="/tmp")
        os.chmod(d, 0o755)
        path = os.path.join(d, os.path.basename(EGRESSD_BIN))
        subprocess.run(["cp", EGRESSD_BIN, path], check=True)
        os.chmod(path, 0o755)
        atexit.register(subprocess.run, ["rm", "-rf", d])
        _SHARED_BIN["path"] = path
    return _SHARED_BIN["path"]

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "AddressSanitizer:DEADLYSIGNAL")
IO_TIMEOUT = 10.0          # every socket the tests open
DEFAULT_CASE_TIMEOUT = 25  # seconds per case (watchdog)

# --------------------------------------------------------------------------
# process bookkeeping: everything started is killed at exit, whatever happens

_all_procs = []
_all_procs_lock = threading.Lock()


def _set_pdeathsig():
    # the child gets SIGKILL if the (main thread of the) harness dies
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(cmd, **kw):
    kw.setdefault("preexec_fn", _set_pdeathsig)
    p = subprocess.Popen(cmd, **kw)
    with _all_procs_lock:
        _all_procs.append(p)
    return p


def _kill_all():
    with _all_procs_lock:
        procs = list(_all_procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(timeout=2)
        except Exception:
            pass


atexit.register(_kill_all)


def _on_signal(signum, frame):
    _kill_all()
    sys.stdout.flush()
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                "no_proxy", "ftp_proxy")}
    if extra:
        env.update(extra)
    return env


_HANDED_OUT = set()


def free_port(host="127.0.0.1"):
    """A port free at this moment. The kernel may give the same ephemeral
    port to two binds in a row once the first socket is closed, so a port
    already handed out by this process is never handed out again: two
    ports a case picks (--listen, --metrics, --transparent) always differ."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise AssertionError("free_port: the kernel keeps offering ports already handed out")


def wait_until(pred, timeout=5.0, what="the condition", interval=0.02):
    """Polls pred() until it returns something true (returned) or timeout
    seconds pass (AssertionError naming `what`). For conditions a loaded
    machine may take a while to reach: wait for them, never sleep and hope."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("%s: not within %.1f s" % (what, timeout))
        time.sleep(interval)


def _tcp_sockets(port):
    """(state, rx_queue) of every TCP socket (IPv4 and IPv6, this network
    namespace) whose local port is `port`; None if /proc/net cannot be read."""
    out = None
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                lines = fh.read().split("\n")[1:]
        except OSError:
            continue
        out = out or []
        for l in lines:
            fields = l.split()
            if len(fields) > 4 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                out.append((fields[3], int(fields[4].split(":")[1], 16)))
    return out


# TCP states (include/net/tcp_states.h) in which the listening side still holds
# a connection it accepted (or has yet to accept): ESTABLISHED, SYN_RECV, CLOSE_WAIT
_TCP_HELD = ("01", "03", "08")
_TCP_LISTEN = "0A"


def server_side_conns(port):
    """Connections the server listening on TCP `port` holds or has queued:
    sockets with that local port in a state it has not closed (one still in
    the accept queue is listed too). -1 if /proc/net cannot be read."""
    socks = _tcp_sockets(port)
    return -1 if socks is None else sum(1 for st, _ in socks if st in _TCP_HELD)


def accept_queue(port):
    """Connections waiting in the accept queue of the listener on `port`
    (a listening socket's rx_queue); -1 if /proc/net cannot be read."""
    socks = _tcp_sockets(port)
    return -1 if socks is None else sum(q for st, q in socks if st == _TCP_LISTEN)


# --------------------------------------------------------------------------
# TAP runner


class Skip(Exception):
    pass


class CaseTimeout(Exception):
    pass


class PortInUse(AssertionError):
    """egressd could not bind a port the case chose for it: free_port() only
    finds a port free for a moment (see Ctx.on_free_ports)."""


class Ctx:
    """Per-case resources; cleanup() stops egressd instances (and checks their
    stderr for sanitizer reports), kills processes, closes sockets."""

    def __init__(self, suite, desc):
        self.suite = suite
        self.desc = desc
        self.egressds = []
        self.procs = []
        self.socks = []
        self.diag = []
        self.timed_out = False
        self.tmp = tempfile.mkdtemp(prefix="case-", dir=suite.tmp)

    def note(self, msg):
        self.diag.append(str(msg))

    def sock(self, s):
        self.socks.append(s)
        return s

    def egressd(self, args=(), **kw):
        e = Egressd(self, list(args), **kw)
        self.egressds.append(e)
        try:
            e.start()
        except PortInUse:
            self.egressds.remove(e)  # it exited at start-up, as expected of it
            raise
        return e

    def on_free_ports(self, make, attempts=3):
        """make() starts egressd on ports it takes from free_port() (a
        listen_port, --metrics, ...). Another socket may take one of them before
        egressd binds it: then make() is called again, picking new ones."""
        for i in range(attempts):
            try:
                return make()
            except PortInUse:
                if i == attempts - 1:
                    raise

    def abort(self):
        """Called by the watchdog: break whatever the case is blocked on."""
        self.timed_out = True
        for s in list(self.socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for e in list(self.egressds):
            e.kill()
        for p in list(self.procs):
            try:
                p.kill()
            except OSError:
                pass

    def cleanup(self):
        problems = []
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for e in self.egressds:
            problems.extend(e.stop())
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        return problems


class Suite:
    def __init__(self, name):
        self.name = name
        self.cases = []
        self.n = 0
        self.failed = 0
        self.skipped = 0
        self.tmp = tempfile.mkdtemp(prefix="egressd-it-")
        self.keep_tmp = bool(os.environ.get("EGRESSD_KEEP_TMP"))
        self.only = os.environ.get("EGRESSD_TEST_ONLY")  # regex on descriptions
        atexit.register(self._rmtmp)

    def _rmtmp(self):
        if not self.keep_tmp:
            subprocess.run(["rm", "-rf", self.tmp])

    def case(self, desc, timeout=DEFAULT_CASE_TIMEOUT, skip=None, todo=None):
        def deco(fn):
            self.add(desc, fn, timeout=timeout, skip=skip, todo=todo)
            return fn
        return deco

    def add(self, desc, fn, *args, timeout=DEFAULT_CASE_TIMEOUT, skip=None, todo=None):
        """todo: a reason; a failure of the case is then reported as
        `not ok ... # TODO reason` (known gap, not counted as a failure)."""
        self.cases.append((desc, fn, args, timeout, skip, todo))

    def emit(self, ok, desc, diag=(), directive=""):
        self.n += 1
        line = "%sok %d - %s" % ("" if ok else "not ", self.n, desc)
        if directive:
            line += " # " + directive
        out = [line]
        for d in diag:
            for l in str(d).rstrip("\n").split("\n"):
                out.append("#   " + l)
        print("\n".join(out), flush=True)
        if not ok and not directive.upper().startswith("TODO"):
            self.failed += 1

    def run(self):
        if not os.path.exists(EGRESSD_BIN) and any(
                getattr(c[1], "needs_binary", True) for c in self.cases):
            print("# egressd binary %s does not exist" % EGRESSD_BIN, flush=True)
        t_start = time.time()
        for desc, fn, args, timeout, skip, todo in self.cases:
            if self.only and not re.search(self.only, desc):
                continue
            if callable(skip):
                skip = skip()
            if skip:
                self.skipped += 1
                self.emit(True, desc, directive="SKIP " + skip)
                continue
            ctx = Ctx(self, desc)
            timer = threading.Timer(timeout, ctx.abort)
            timer.daemon = True
            err = None
            skipped = None
            t0 = time.time()
            timer.start()
            try:
                fn(ctx, *args)
            except Skip as e:
                skipped = str(e)
            except AssertionError as e:
                err = "assertion failed: %s" % (e,)
            except Exception as e:
                err = "%s: %s" % (type(e).__name__, e)
                tb = traceback.format_exc().rstrip().split("\n")
                ctx.note("\n".join(tb[-6:]))
            finally:
                timer.cancel()
            problems = []
            try:
                problems = ctx.cleanup()
            except Exception as e:
                problems = ["cleanup error: %r" % (e,)]
            dt = time.time() - t0
            if ctx.timed_out:
                err = "timed out after %ds (%s)" % (timeout, err or "no error")
            if skipped is not None and not err and not problems:
                self.skipped += 1
                self.emit(True, desc, directive="SKIP " + skipped)
                continue
            diag = []
            if err:
                diag.append(err)
            diag.extend(problems)
            if diag:
                diag.extend(ctx.diag)
                for e in ctx.egressds:
                    diag.extend(e.diagnostics())
            self.emit(not diag, desc, diag,
                      directive=("TODO " + todo) if (todo and diag) else "")
            if dt > 10:
                print("#   (slow: %.1fs)" % dt, flush=True)
        print("1..%d" % self.n, flush=True)
        print("# %s: %d tests, %d failed, %d skipped, %.1fs" % (
            self.name, self.n, self.failed, self.skipped, time.time() - t_start),
            flush=True)
        return 1 if self.failed else 0


def check(cond, msg, *diag):
    if not cond:
        raise AssertionError(msg + ("".join("\n" + str(d) for d in diag)))


def check_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


# --------------------------------------------------------------------------
# certificates


def _ossl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr))
    return r.stdout


def make_leaf(d, name, ca_pem, ca_key, sans, cn=None):
    """A server certificate (EC P-256) for `sans` (openssl subjectAltName
    syntax, e.g. ["DNS:x.test", "IP:127.0.0.1"]) signed by ca_pem/ca_key.
    Returns (certfile, keyfile)."""
    os.makedirs(d, exist_ok=True)
    key, csr, crt, ext = (os.path.join(d, name + x) for x in (".key", ".csr", ".pem", ".cnf"))
    _ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", key, "-out", csr, "-subj", "/CN=%s" % (cn or name))
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" % ",".join(sans))
    _ossl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
          "-CAcreateserial", "-out", crt, "-days", "3", "-extfile", ext)
    return crt, key


def make_pki(d, extra_sans=()):
    """CA + server cert for *.test, allowed.test, 127.0.0.1 (and a few more
    names the wildcard and namespace cases use; extra_sans adds more, in
    openssl syntax). Returns a dict of paths (ca, ca_key, cert, key, dir)."""
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, k) for k in
         ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "ext.cnf")}

    def ossl(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr))

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.pem"],
         "-days", "3", "-subj", "/CN=egressd integration test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-new", *ec, "-keyout", p["server.key"], "-out", p["server.csr"],
         "-subj", "/CN=allowed.test")
    with open(p["ext.cnf"], "w") as f:
        f.write("subjectAltName=DNS:*.test,DNS:allowed.test,DNS:*.allowed.test,"
                "DNS:*.b.allowed.test,IP:127.0.0.1,IP:203.0.113.7%s\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n" % "".join("," + x for x in extra_sans))
    ossl("x509", "-req", "-in", p["server.csr"], "-CA", p["ca.pem"],
         "-CAkey", p["ca.key"], "-CAcreateserial", "-out", p["server.pem"],
         "-days", "3", "-extfile", p["ext.cnf"])
    return {"ca": p["ca.pem"], "ca_key": p["ca.key"], "cert": p["server.pem"],
            "key": p["server.key"], "dir": d}


def client_ssl_context(ca, check_hostname=True):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = check_hostname
    return ctx


# --------------------------------------------------------------------------
# deterministic big bodies

_BLOCK = random.Random(20261127).randbytes((1 << 20) + 65536)
CHUNK = 65536


def big_chunks(size):
    """Yields `size` bytes in 64 KiB pieces; every piece carries its index so a
    reordering or duplication changes the digest."""
    k = 0
    left = size
    while left > 0:
        off = (k * 4099) % (1 << 20)
        piece = struct.pack(">Q", k) + _BLOCK[off + 8:off + CHUNK]
        piece = piece[:min(left, CHUNK)]
        yield piece
        left -= len(piece)
        k += 1


def big_sha256(size):
    h = hashlib.sha256()
    for c in big_chunks(size):
        h.update(c)
    return h.hexdigest()


# --------------------------------------------------------------------------
# upstream HTTP echo server (TLS or plain)


# --------------------------------------------------------------------------
# WebSocket (RFC 6455), just enough for an echo


def ws_accept(key):
    import base64
    return base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


def ws_frame(opcode, payload, mask=False, fin=True, rsv=0):
    """One frame (final unless fin=False); masked (as a client must) when mask=True."""
    hdr = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([m | n])
    elif n < 65536:
        hdr += bytes([m | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        hdr += key
    return hdr + payload


def ws_read_frame(read):
    """read(n) -> bytes. Returns (opcode, unmasked payload, was_masked) or None at EOF."""
    fr = _ws_read(read)
    return fr and fr[1:]


def _ws_read(read):
    """One frame: (fin, opcode, unmasked payload, was_masked) or None at EOF."""
    h = read(2)
    if len(h) < 2:
        return None
    fin = bool(h[0] & 0x80)
    opcode = h[0] & 0x0F
    masked = bool(h[1] & 0x80)
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read(8))[0]
    key = read(4) if masked else b""
    payload = read(n) if n else b""
    if len(payload) < n:
        return None
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload, masked


class WSReader:
    """Reads WebSocket control frames and whole (reassembled) data messages;
    a control frame between the fragments of a message is returned on its
    own, the message once its last fragment is in."""

    def __init__(self, read):
        self.read = read
        self.op, self.data = None, b""

    def next(self):
        """(opcode, payload), or None at EOF."""
        while True:
            try:
                fr = _ws_read(self.read)
            except ConnectionError:
                return None
            if fr is None:
                return None
            fin, opcode, payload, _ = fr
            if opcode >= 8:
                return opcode, payload
            self.op = self.op if opcode == 0 else opcode
            self.data += payload
            if fin:
                out = (self.op, self.data)
                self.op, self.data = None, b""
                return out


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15
    server_version = "egressd-test-upstream/1"

    def log_message(self, fmt, *args):
        pass

    def handle(self):
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                self.server.handshake_errors.append(repr(e))
                self.close_connection = True
                return
            self.server.handshakes.append(getattr(self.request, "sni_seen", None))
        super().handle()

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        l = self.rfile.readline(65537)
                        if l in (b"\r\n", b"\n", b""):
                            break
                    break
                body += self.rfile.read(size)
                self.rfile.readline(3)
            return bytes(body), "chunked"
        cl = self.headers.get("Content-Length")
        if cl is not None:
            return self.rfile.read(int(cl)), "content-length"
        return b"", "none"

    def _any(self):
        self.server.requests += 1
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/ws" and (self.headers.get("Upgrade") or "").lower() == "websocket":
            self._websocket()
            return
        body, framing = self._read_body()
        info = {
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "framing": framing,
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body": body.decode("latin-1") if len(body) <= 4096 else None,
            "peer": "%s:%d" % self.client_address[:2],
            "local": "%s:%d" % self.request.getsockname()[:2],
            "tls": isinstance(self.request, ssl.SSLSocket),
            "sni": getattr(self.request, "sni_seen", None),
        }
        self.server.seen.append(info)  # what the upstream really received
        if u.path == "/big":
            size = int(q.get("size", [str(8 << 20)])[0])
            chunked = q.get("chunked", ["0"])[0] == "1"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            for c in big_chunks(size):
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                else:
                    self.wfile.write(c)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        status = 200
        if u.path.startswith("/status/"):
            status = int(u.path.split("/")[2])
        if "say" in q:
            # ?say=KEY[&n=N]: the body also carries server.values[KEY], N times,
            # at varying offsets (so it straddles chunk and record boundaries)
            v = self.server.values[q["say"][0]]
            n = int(q.get("n", ["1"])[0])
            info["say"] = "".join(v + "." * (i % 37) for i in range(n))
        out = json.dumps(info).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if "hdr" in q:
            # ?hdr=KEY: a response header carrying server.values[KEY]
            self.send_header("X-Echo-Value", "v=%s; again=%s" % (
                self.server.values[q["hdr"][0]], self.server.values[q["hdr"][0]]))
        if q.get("chunked", ["0"])[0] == "1":
            self.send_header("Transfer-Encoding", "chunked")
            if "trailer" in q:
                self.send_header("Trailer", "X-Echo-Trailer, X-Check")
            self.end_headers()
            for i in range(0, len(out), 100):
                piece = out[i:i + 100]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if "trailer" in q:
                # ?trailer=KEY: trailer fields after the last chunk, one carrying
                # server.values[KEY]
                self.wfile.write(b"0\r\nX-Echo-Trailer: v=%s\r\nX-Check: done\r\n\r\n" %
                                 self.server.values[q["trailer"][0]].encode())
            else:
                self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(out)))
            if u.path == "/close":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(out)
        self.wfile.flush()

    def _websocket(self):
        """Minimal RFC 6455 server: handshake, then echo every text/binary
        frame (unmasked) until a close frame or EOF."""
        key = self.headers.get("Sec-WebSocket-Key") or ""
        self.server.seen.append({
            "method": self.command, "path": self.path, "websocket": True,
            "headers": [[k, v] for k, v in self.headers.items()],
            "tls": isinstance(self.request, ssl.SSLSocket)})
        self.close_connection = True
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept(key))
        self.end_headers()
        self.wfile.flush()
        while True:
            fr = ws_read_frame(self.rfile.read)
            if fr is None:
                return
            opcode, payload, masked = fr
            self.server.ws_frames.append((opcode, payload, masked))
            if opcode == 8:
                self.wfile.write(ws_frame(8, payload[:2]))
                self.wfile.flush()
                return
            if opcode == 1 and payload.startswith(b"say:"):
                # the value of server.values[KEY] split across two fragments,
                # with a ping carrying it in between
                v = self.server.values[payload[4:].decode()].encode()
                self.wfile.write(ws_frame(1, b"v=" + v[:5], fin=False) + ws_frame(9, v) +
                                 ws_frame(0, v[5:] + b" end"))
            elif opcode == 1 and payload.startswith(b"close-say:"):
                v = self.server.values[payload[10:].decode()].encode()
                self.wfile.write(ws_frame(8, b"\x03\xe8" + v))
                self.wfile.flush()
                return
            elif opcode == 1 and payload == b"rsv":
                self.wfile.write(ws_frame(1, b"compressed?", rsv=4))
            elif opcode in (1, 2):
                self.wfile.write(ws_frame(opcode, payload))
            self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _any


class EchoHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host="127.0.0.1", tls=None, port=0):
        """tls: None for plain HTTP, else (certfile, keyfile)."""
        self.ssl_ctx = None
        self.snis = []            # SNI of every ClientHello seen (None = no SNI)
        self.handshakes = []
        self.handshake_errors = []
        self.requests = 0
        self.seen = []            # info dict of every request received (see EchoHandler)
        self.values = {}          # KEY -> string for ?say=KEY and ?hdr=KEY
        self.ws_frames = []       # (opcode, payload, masked) of WebSocket frames received
        if tls:
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.load_cert_chain(*tls)

            def sni_cb(sslsock, name, _ctx):
                self.snis.append(name)
                sslsock.sni_seen = name
            c.sni_callback = sni_cb
            self.ssl_ctx = c
        super().__init__((host, port), EchoHandler)
        self.host = host
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(15)
        if self.ssl_ctx:
            # handshake in the handler thread, so a silent client cannot block accept()
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        pass  # resets and timeouts from tests that cut connections are expected


class TcpServer:
    """A threaded TCP server: one thread accepts on (host, port) (port 0: any
    free port), each connection is served by serve(conn) in a thread of its
    own and closed afterwards (socket and TLS errors end it quietly). With
    tls=(certfile, keyfile) the connection is a server-side TLS socket (the
    handshake is done in the connection's thread). .connections counts the
    connections accepted. Subclasses override serve(); accepted() (in the
    accept thread) and listen_socket() may be overridden too."""
    backlog = 64
    conn_timeout = 15

    def __init__(self, host="127.0.0.1", port=0, tls=None):
        self.host = host
        self.ssl_ctx = None
        if tls:
            self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_ctx.load_cert_chain(*tls)
        self.sock = self.listen_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def listen_socket(self, host, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(self.backlog)
        return s

    def _accept(self):
        while True:
            try:
                c, addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted(c, addr)

    def accepted(self, c, addr):
        threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(self.conn_timeout)
            if self.ssl_ctx:
                c = self.ssl_ctx.wrap_socket(c, server_side=True)
            self.serve(c)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def serve(self, c):
        raise NotImplementedError


class TCPEchoServer(TcpServer):
    """Raw TCP echo; half-closes after the client's EOF."""

    def serve(self, c):
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------
# DNS


class DNSServer:
    """UDP DNS on 127.0.0.1: A answers from `records` (name -> [ipv4...]);
    other types for a known name get an empty NOERROR answer; unknown names
    NXDOMAIN. Every query is recorded in .queries as (name, qtype)."""

    def __init__(self, records, host="127.0.0.1"):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                resp = self._answer(data)
            except Exception:
                continue
            if resp:
                try:
                    self.sock.sendto(resp, addr)
                except OSError:
                    pass

    def _answer(self, data):
        if len(data) < 12:
            return None
        qid, flags, qd, _an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
        if qd != 1 or flags & 0x8000:
            return None
        i = 12
        labels = []
        while True:
            n = data[i]
            i += 1
            if n == 0:
                break
            labels.append(data[i:i + n].decode("ascii", "replace"))
            i += n
        qtype, qclass = struct.unpack(">HH", data[i:i + 4])
        question = data[12:i + 4]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        answers = b""
        ancount = 0
        rcode = 0
        if name in self.records:
            if qtype == 1 and qclass == 1:
                for a in self.records[name]:
                    answers += struct.pack(">HHHIH", 0xC00C, 1, 1, 5, 4) + \
                        socket.inet_aton(a)
                    ancount += 1
        else:
            rcode = 3
        rflags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        return struct.pack(">HHHHHH", qid, rflags, 1, ancount, 0, 0) + question + answers


# --------------------------------------------------------------------------
# the binary under test


class Egressd:
    def __init__(self, ctx, args, listen_port=None, log=True, dns=None,
                 threads=2, env=None):
        self.ctx = ctx
        self.args = args
        self.port = listen_port
        self.dns = dns
        self.threads = threads
        self.env = env
        self.proc = None
        self.idx = len(ctx.egressds)
        base = os.path.join(ctx.tmp, "egressd%d" % self.idx)
        self.log_path = base + ".log" if log else None
        self.out_path = base + ".stdout"
        self.err_path = base + ".stderr"
        self.stopped = False
        self.exit_problems = []

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def command(self):
        cmd = [EGRESSD_BIN, "serve", "--listen", self.addr]
        if self.log_path:
            cmd += ["--log", self.log_path]
        if self.dns and "--dns" not in self.args:
            cmd += ["--dns", self.dns]
        if self.threads and "--threads" not in self.args:
            cmd += ["--threads", str(self.threads)]
        return cmd + self.args

    def start(self):
        if not os.path.exists(EGRESSD_BIN):
            raise AssertionError("egressd binary %s does not exist" % EGRESSD_BIN)
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            env = clean_env(self.env)
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
            self.cmdline = self.command()
            with open(self.out_path, "wb") as o, open(self.err_path, "wb") as e:
                self.proc = spawn(self.cmdline, stdout=o, stderr=e,
                                  stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
            deadline = time.time() + 10
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                    s.close()
                except OSError:
                    time.sleep(0.02)
                    continue
                self._wait_probe_gone()
                return self
            err = self.stderr()
            if self.proc.poll() is None:
                self.kill()
                raise AssertionError("egressd did not accept connections within 10 s\n"
                                     "cmd: %s\nstderr: %s" % (" ".join(self.cmdline), err[-2000:]))
            if "in use" in err:
                if not fixed:
                    continue
                raise PortInUse("egressd could not bind a port it was given\ncmd: %s\nstderr: %s"
                                % (" ".join(self.cmdline), err[-2000:]))
            raise AssertionError("egressd exited with %s at startup\ncmd: %s\nstderr: %s" % (
                self.proc.returncode, " ".join(self.cmdline), err[-2000:]))
        # every listen port tried was taken: a port the caller chose (--metrics
        # ...) may be the one in use, so let Ctx.on_free_ports pick new ones
        raise PortInUse("could not find a free port for egressd\ncmd: %s\nstderr: %s"
                        % (" ".join(self.cmdline), self.stderr()[-2000:]))

    def _wait_probe_gone(self, timeout=10.0):
        """The readiness probe above is a connection of its own. Until egressd
        has accepted and closed it, it counts against --max-connections, in
        metrics and in descriptor counts: wait, so every case starts from rest."""
        try:
            wait_until(lambda: server_side_conns(self.port) <= 0 or self.proc.poll() is not None,
                       timeout, "egressd closing the harness's readiness probe")
        except AssertionError:
            raise AssertionError("egressd still holds the readiness probe connection %.0f s "
                                 "after it closed (port %d)\ncmd: %s\nstderr: %s" % (
                                     timeout, self.port, " ".join(self.cmdline),
                                     self.stderr()[-2000:]))

    def rss_kb(self):
        """VmRSS of the running egressd in KiB (None if unavailable)."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        return int(l.split()[1])
        except (OSError, AttributeError, ValueError):
            pass
        return None

    def stdout(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass

    def stop(self):
        """SIGTERM, wait; returns a list of problems (crash, sanitizer report)."""
        if self.stopped or not self.proc:
            return self.exit_problems
        self.stopped = True
        problems = []
        rc = self.proc.poll()
        if rc is not None:
            if not self.ctx.timed_out:
                problems.append("egressd died during the test (status %s)" % rc)
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append("egressd did not exit within 10 s of SIGTERM")
                self.proc.kill()
                rc = self.proc.wait()
            if rc not in (0, -signal.SIGTERM) and not self.ctx.timed_out:
                problems.append("egressd exited with status %s after SIGTERM" % rc)
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            if m in err:
                i = err.index(m)
                problems.append("sanitizer report in egressd stderr:\n" +
                                err[max(0, i - 200):i + 3000])
                break
        self.exit_problems = problems
        return problems

    def diagnostics(self):
        out = ["egressd#%d cmd: %s" % (self.idx, " ".join(getattr(self, "cmdline", [])))]
        err = self.stderr().strip()
        if err:
            out.append("egressd#%d stderr (tail):\n%s" % (self.idx, err[-1500:]))
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().split("\n")
            out.append("egressd#%d log (tail):\n%s" % (self.idx, "\n".join(lines[-12:])))
        return out

    # audit log ------------------------------------------------------------

    def log_lines(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return []
        with open(self.log_path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
        # a last line without its newline may still be being written
        lines = data.split("\n")
        return [l for l in lines[:-1] if l.strip()]

    def log_events(self):
        evs = []
        for l in self.log_lines():
            try:
                evs.append(json.loads(l))
            except ValueError:
                raise AssertionError("audit log line is not JSON: %r" % l)
        return evs

    def wait_log(self, pred, timeout=10.0, what="log event"):
        """Polls the audit log until some event satisfies pred; returns those.
        The deadline only bounds a failure (a hit returns at once): it is
        generous for a loaded machine running the ASan build."""
        deadline = time.time() + timeout
        while True:
            evs = self.log_events()
            hits = [e for e in evs if pred(e)]
            if hits:
                return hits
            if time.time() > deadline:
                raise AssertionError("no %s in the audit log within %.0fs; log:\n%s" % (
                    what, timeout, "\n".join(self.log_lines()[-10:])))
            time.sleep(0.05)


def run_egressd(args, timeout=15, env=None):
    """One-shot command (check, bad-config serve). Returns CompletedProcess;
    raises if a sanitizer report shows up on stderr."""
    if not os.path.exists(EGRESSD_BIN):
        raise AssertionError("egressd binary %s does not exist" % EGRESSD_BIN)
    e = clean_env(env)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
    e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    p = spawn([EGRESSD_BIN] + list(args), stdout=subprocess.PIPE,
              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=e, cwd=ROOT)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("egressd %s did not finish within %ds" % (" ".join(args), timeout))
    r = subprocess.CompletedProcess(p.args, p.returncode,
                                    out.decode("utf-8", "replace"),
                                    err.decode("utf-8", "replace"))
    for m in SANITIZER_MARKERS:
        if m in r.stderr:
            raise AssertionError("sanitizer report from egressd %s:\n%s" % (
                " ".join(args), r.stderr[-3000:]))
    if r.returncode < 0:
        raise AssertionError("egressd %s died of signal %d" % (" ".join(args), -r.returncode))
    return r


# --------------------------------------------------------------------------
# raw client helpers


class Reader:
    """Buffered reader over a socket that never reads past what it is asked
    for by more than one recv (callers check .buf before handing the socket on)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
        self.buf += d
        return bool(d)

    def until(self, delim, limit=1 << 20):
        while delim not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (delim, limit))
            if not self._fill():
                raise ConnectionError("EOF before %r (got %r)" % (delim, self.buf[:300]))
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("EOF after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self, limit=64 << 20):
        try:
            while len(self.buf) <= limit and self._fill():
                pass
        except ConnectionResetError:
            pass
        out, self.buf = self.buf, b""
        return out


def got(ctx, b):
    """Records bytes a client received in ctx.client_bytes (suites that handle
    secrets look there for real values at the end of a case)."""
    if not hasattr(ctx, "client_bytes"):
        ctx.client_bytes = bytearray()
    ctx.client_bytes += b


class RecReader(Reader):
    """Reader that records every byte the client received (see got())."""

    def __init__(self, ctx, sock):
        super().__init__(sock)
        self.ctx = ctx

    def _fill(self):
        n = len(self.buf)
        ok = super()._fill()
        got(self.ctx, self.buf[n:])
        return ok


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("response body is not JSON: %r" % self.body[:300])

    def __repr__(self):
        return "<%d %s %r body=%r>" % (self.status, self.reason, self.headers,
                                       self.body[:200])


def next_head(c, buf=b""):
    """For test servers: reads socket c until buf holds a whole message head.
    -> (head without its blank line, the bytes after it); (None, buf) on EOF."""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return None, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def read_head(r):
    head = r.until(b"\r\n\r\n", limit=65536)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise AssertionError("bad status line %r" % lines[0])
    headers = []
    for l in lines[1:]:
        if not l:
            continue
        k, _, v = l.partition(":")
        headers.append((k.strip(), v.strip()))
    return int(m.group(1)), m.group(2) or "", headers, head


def read_response(r, method="GET", connect=False):
    """Reads one response (head and body by its framing)."""
    status, reason, headers, head = read_head(r)
    resp = Response(status, reason, headers, b"", head)
    if connect and status == 200:
        return resp
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return resp
    te = (resp.header("Transfer-Encoding") or "").lower()
    cl = resp.header("Content-Length")
    if "chunked" in te:
        body = bytearray()
        while True:
            line = r.until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while r.until(b"\r\n") != b"\r\n":
                    pass
                break
            body += r.exactly(size)
            r.exactly(2)
        resp.body = bytes(body)
    elif cl is not None:
        resp.body = r.exactly(int(cl))
    else:
        resp.body = r.rest()
    return resp


def connect_proxy(ctx, port, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return ctx.sock(s)


def proxy_connect(ctx, proxy_port, target, extra_headers=()):
    """Sends CONNECT target; returns (sock, Reader, Response). For a refusal the
    response body is read (Content-Length or until close)."""
    s = connect_proxy(ctx, proxy_port)
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
    for h in extra_headers:
        req += h + "\r\n"
    s.sendall((req + "\r\n").encode())
    r = Reader(s)
    resp = read_response(r, connect=True)
    if resp.status == 200 and r.buf:
        raise AssertionError("bytes after the 200 to CONNECT before the client spoke: %r"
                             % r.buf[:100])
    return s, r, resp


def http_request(method, target, headers=(), body=None, chunked_body=None):
    """Serializes a request. body: bytes with Content-Length; chunked_body: list
    of byte pieces sent with Transfer-Encoding: chunked."""
    lines = ["%s %s HTTP/1.1" % (method, target)]
    lines += list(headers)
    payload = b""
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
        payload = body
    elif chunked_body is not None:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in chunked_body if p) + b"0\r\n\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def tls_over(ctx, sock, server_hostname, ca, check_hostname=False):
    c = client_ssl_context(ca, check_hostname=check_hostname)
    t = c.wrap_socket(sock, server_hostname=server_hostname)
    t.settimeout(IO_TIMEOUT)
    return ctx.sock(t)


def curl(ctx, *args, timeout=30, input=None):
    """Runs the real curl (no config file, no proxy env). Returns CompletedProcess
    with bytes stdout and text stderr."""
    cmd = ["curl", "-q", "-sS", "--max-time", str(timeout - 2), "--connect-timeout", "5"] + list(args)
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
              env=clean_env())
    ctx.procs.append(p)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("curl timed out: %s" % " ".join(cmd))
    r = subprocess.CompletedProcess(cmd, p.returncode, out, err.decode("utf-8", "replace"))
    ctx.note("curl %s -> exit %d %s" % (" ".join(args), r.returncode, r.stderr.strip()[:300]))
    return r


# --------------------------------------------------------------------------
# network namespace


def in_netns():
    return os.environ.get("EGRESSD_TEST_NETNS") == "1"


def maybe_reexec_in_netns(script):
    """As root, re-executes the calling script inside `unshare --net` (a private
    network namespace with only loopback). Inside, brings lo up and adds the
    documentation address 203.0.113.7/32 (and the private 10.0.0.5/32) to it. Returns True when running inside
    a namespace prepared that way."""
    if in_netns():
        r1 = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
        # 10.0.0.5 too: a private address that answers, so connecting to it
        # (instead of refusing it) is seen rather than failing harmlessly
        r2 = subprocess.run("ip addr add 203.0.113.7/32 dev lo && ip addr add 10.0.0.5/32 dev lo",
                            shell=True, capture_output=True)
        if r1.returncode != 0 or r2.returncode != 0:
            print("# could not set up lo in the namespace: %s %s" % (
                r1.stderr.decode().strip(), r2.stderr.decode().strip()), flush=True)
            return False
        return True
    if os.environ.get("EGRESSD_NO_NETNS") == "1" or os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if probe.returncode != 0:
        print("# unshare --net unavailable (%s); namespace cases will be skipped" %
              probe.stderr.decode().strip(), flush=True)
        return False
    env = dict(os.environ, EGRESSD_TEST_NETNS="1")
    sys.stdout.flush()
    os.execvpe("unshare", ["unshare", "--net", "--", sys.executable,
                           os.path.abspath(script)] + sys.argv[1:], env)
