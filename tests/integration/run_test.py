#!/usr/bin/env python3
"""run_test.py -- integration tests of `egressd run -- CMD`: the jail (network
namespace, veth, iptables redirection, resolv.conf), the transparent
decisions (TLS SNI, HTTP Host, synthetic DNS addresses, IP patterns for
everything else), the DNS responder, the command's environment, exit statuses
and teardown on every exit path. Real curl, Python urllib/ssl and Node's https
module run inside the jail against TLS / HTTP / raw TCP upstreams on the host
side (tests/integration/harness.py). Prints TAP; exits 1 if any case failed.

Root only (network namespaces and iptables); otherwise every case is skipped.
As root the suite re-executes itself inside `unshare --net`: the "host"
namespace egressd runs in is the suite's own, with 203.0.113.7 on its
loopback, so nothing leaves the machine and the iptables rules egressd adds
die with it. What is global -- /var/run/netns and /etc/netns -- is checked
after every case and purged of anything a run left behind.

The program inside the jail is this same file, `run_test.py --jail-tool
STEPS` (one JSON line per step), or curl / node started by it.

Environment: EGRESSD_BIN (default build/egressd), EGRESSD_TEST_ONLY=REGEX,
EGRESSD_KEEP_TMP=1.
"""

import json
import os
import re
import shlex
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True

# --------------------------------------------------------------------------
# the jail tool: what runs inside `egressd run` (no harness, no netns re-exec)
#
# argv: --jail-tool STEPS, STEPS a JSON list of [kind, args...]:
#   ["env"]                         environment, resolv.conf, IPv6 sysctls, addresses, CA files
#   ["dns", [[name, qtype], ...]]   raw queries to the resolv.conf nameserver, and getaddrinfo
#   ["urllib", url, {hdr: value}]   urllib.request ("{{NAME}}" in values: from the environment)
#   ["tls", host, port, sni|null, request|null, alpn|null]   ssl with SSL_CERT_FILE, no
#                                   hostname check; alpn: the protocols offered
#   ["tcp", host, port, send|null, wait]          raw TCP, reads for up to `wait` s
#   ["udp", [[host, port], ...], payload]         datagrams ("$NAMESERVER" = resolv.conf's)
#   ["exec", argv...]               a program ("{{NAME}}" in arguments: from the environment)
#   ["sleep", seconds]
#   ["files", [[op, path, arg], ...]]  read/write/delete/exists/rename/connect/wait

def expand(s):
    """{{NAME}} anywhere in a string becomes the environment's value."""
    if isinstance(s, str):
        return re.sub(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}", lambda m: os.environ.get(m.group(1), ""), s)
    return s


def nameserver():
    with open("/etc/resolv.conf") as f:
        for line in f:
            p = line.split()
            if len(p) >= 2 and p[0] == "nameserver":
                return p[1]
    return None


def dns_query(server, name, qtype):
    qid = int.from_bytes(os.urandom(2), "big")
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        s.sendto(pkt, (server, 53))
        data, _ = s.recvfrom(4096)
    except OSError as e:
        return {"error": repr(e)}
    finally:
        s.close()
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    i = 12

    def skip_name(i):
        while True:
            n = data[i]
            if n & 0xC0 == 0xC0:
                return i + 2
            i += 1
            if n == 0:
                return i
            i += n
    for _ in range(qd):
        i = skip_name(i) + 4
    answers = []
    for _ in range(an):
        i = skip_name(i)
        t, _c, ttl, rdlen = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        rd = data[i:i + rdlen]
        i += rdlen
        answers.append({"type": t, "ttl": ttl,
                        "addr": socket.inet_ntoa(rd) if t == 1 and rdlen == 4 else rd.hex()})
    return {"id_ok": rid == qid, "rcode": flags & 0xF, "answers": answers}


def step_env(_):
    r = {"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid(),
         "groups": sorted(os.getgroups())}
    try:
        with open("/etc/resolv.conf") as f:
            r["resolv"] = f.read()
    except OSError as e:
        r["resolv"] = repr(e)
    for k in ("all", "default"):
        try:
            with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % k) as f:
                r["disable_ipv6_" + k] = f.read().strip()
        except OSError as e:
            r["disable_ipv6_" + k] = repr(e)
    try:
        r["ip_addr"] = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True,
                                      timeout=10).stdout
        r["ip_route"] = subprocess.run(["ip", "route"], capture_output=True, text=True,
                                       timeout=10).stdout
    except OSError as e:
        r["ip_addr"] = repr(e)
    ca = {}
    for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
              "DENO_CERT", "GIT_SSL_CAINFO", "NPM_CONFIG_CAFILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
              "PIP_CERT", "AWS_CA_BUNDLE", "CARGO_HTTP_CAINFO"):
        p = os.environ.get(k)
        try:
            with open(p) as f:
                ca[k] = f.read()
        except (OSError, TypeError) as e:
            ca[k] = "UNREADABLE: %r" % e
    r["ca_files"] = ca
    return r


def step_dns(a):
    server = nameserver()
    r = {"nameserver": server, "queries": []}
    for name, qtype in a[0]:
        r["queries"].append(dict(dns_query(server, name, qtype), name=name, qtype=qtype))
    r["gai"] = {}
    for name, _ in a[0]:
        try:
            r["gai"][name] = sorted({x[4][0] for x in socket.getaddrinfo(
                name, 443, socket.AF_INET, socket.SOCK_STREAM)})
        except socket.gaierror as e:
            r["gai"][name] = "gaierror %d" % e.errno
    return r


def step_urllib(a):
    url, hdrs = a[0], a[1] if len(a) > 1 else {}
    req = urllib.request.Request(url, headers={k: expand(v) for k, v in hdrs.items()})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return {"status": resp.status, "headers": dict(resp.headers),
                    "body": resp.read().decode("latin-1")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "headers": dict(e.headers),
                "body": e.read().decode("latin-1")}
    except Exception as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


def read_all(s, wait):
    s.settimeout(wait)
    data = b""
    err = None
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except socket.timeout:
        err = "timeout"
    except OSError as e:
        err = "%s: %s" % (type(e).__name__, e)
    return data, err


def step_tls(a):
    host, port, sni, request = a[0], a[1], a[2], a[3] if len(a) > 3 else None
    c = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    c.check_hostname = False
    if len(a) > 4 and a[4]:
        c.set_alpn_protocols(a[4])
    try:
        s = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        return {"error": "connect: %s" % e}
    try:
        t = c.wrap_socket(s, server_hostname=sni)
    except Exception as e:
        s.close()
        return {"error": "handshake: %s: %s" % (type(e).__name__, e)}
    try:
        if request:
            t.sendall(request.encode("latin-1"))
        data, err = read_all(t, 10)
        return {"handshake": True, "alpn": t.selected_alpn_protocol(),
                "data": data.decode("latin-1"), "read_error": err}
    finally:
        t.close()


def step_tcp(a):
    host, port, send, wait = a
    try:
        s = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        return {"error": "connect: %s" % e}
    try:
        if send is not None:
            s.sendall(send.encode("latin-1"))
        s.settimeout(wait)
        data = b""
        err = None
        t_end = time.time() + wait
        try:
            # until the peer closes or `wait` passes; an echo server answers
            # a line, a banner server writes first
            while time.time() < t_end:
                s.settimeout(max(0.05, t_end - time.time()))
                d = s.recv(65536)
                if not d:
                    err = "eof"
                    break
                data += d
                if send is not None and data.endswith(send.encode("latin-1")):
                    break
                if send is None and data.endswith(b"\n"):
                    break
        except socket.timeout:
            err = "timeout"
        except OSError as e:
            err = "%s: %s" % (type(e).__name__, e)
        return {"data": data.decode("latin-1"), "read_error": err}
    finally:
        s.close()


def step_udp(a):
    targets, payload = a
    sent = []
    for host, port in targets:
        if host == "$NAMESERVER":
            host = nameserver()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.sendto(payload.encode(), (host, port))
            sent.append([host, port, "sent"])
        except OSError as e:
            sent.append([host, port, repr(e)])
        finally:
            s.close()
    return {"sent": sent}


def step_exec(a):
    argv = [expand(x) for x in a]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=40)
    except Exception as e:
        return {"error": repr(e)}
    return {"rc": p.returncode, "stdout": p.stdout.decode("latin-1"),
            "stderr": p.stderr.decode("latin-1")}


def step_sleep(a):
    time.sleep(a[0])
    return {}


def _libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def _connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as e:
        return "refused: %s" % e


def step_escape(a):
    """Everything a command might try to get out of the jail; each attempt's
    outcome. Never prints a secret: reads are summarised (byte count, and
    whether a value the test made, "sk-REAL-", was in them)."""
    o = a[0]
    deadline = time.time() + 20
    while not os.path.exists(o["pidfile"]) and time.time() < deadline:
        time.sleep(0.05)
    with open(o["pidfile"]) as f:
        pid = int(f.read())
    libc, r = _libc(), {}
    with open("/proc/self/status") as f:
        r["caps"] = {l.split(":")[0]: l.split()[1] for l in f if l.startswith("Cap")}
    r["pids"] = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
    r["fds"] = {}
    for d in os.listdir("/proc/self/fd"):
        try:
            r["fds"][d] = os.readlink("/proc/self/fd/" + d)
        except OSError:
            pass  # listdir's own descriptor, closed by now
    seen = []
    for d in ["%d" % pid] + [str(x) for x in r["pids"]]:
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                if b"sk-REAL-" in f.read():
                    seen.append(d)
        except OSError:
            pass
    r["environ_with_secret"] = seen
    r["files"] = {}
    for path in o["files"]:
        try:
            with open(path, "rb") as f:
                data = f.read()
            r["files"][path] = "read %d bytes%s" % (len(data), ", a secret" if b"sk-REAL-" in data
                                                    or b"PRIVATE KEY" in data else "")
        except OSError as e:
            r["files"][path] = "error: %s" % e.strerror
    try:
        os.kill(pid, 0)
        r["kill"] = "ok"
    except OSError as e:
        r["kill"] = "error: %s" % e.strerror
    rc = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    r["ptrace"] = "ok" if rc == 0 else "error: %s" % os.strerror(__import__("ctypes").get_errno())
    rc = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
    r["mount"] = "ok" if rc == 0 else "error: %s" % os.strerror(__import__("ctypes").get_errno())
    # a kernel knob uid 0 may write by its permission bits: written back
    # with the value it has, so that succeeding changes nothing
    try:
        with open("/proc/sys/kernel/printk_ratelimit") as f:
            v = f.read()
        with open("/proc/sys/kernel/printk_ratelimit", "w") as f:
            f.write(v)
        r["sysctl_write"] = "ok"
    except OSError as e:
        r["sysctl_write"] = "error: %s" % e.strerror
    import stat as st_
    r["block_devices"] = sorted(d for d in os.listdir("/dev")
                                if st_.S_ISBLK(os.lstat("/dev/" + d).st_mode))
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        r["raw_socket"] = "ok"
    except OSError as e:
        r["raw_socket"] = "error: %s" % e.strerror
    r["write"] = {}
    for path in o.get("write", []):  # opened for appending, nothing written
        try:
            with open(path, "a"):
                pass
            r["write"][path] = "opened"
        except OSError as e:
            r["write"][path] = "error: %s" % e.strerror
    targets = [tuple(t) for t in o.get("connect", [])]
    r["connect"] = {"%s:%d (here)" % t: _connect(*t) for t in targets}
    r["setns"] = {}
    ns = ["/proc/%d/ns/%s" % (pid, k) for k in ("net", "mnt", "pid", "ipc", "uts", "cgroup",
                                                "user")] + ["/proc/1/ns/net"]
    try:
        ns += ["/var/run/netns/" + n for n in sorted(os.listdir("/var/run/netns"))]
    except OSError:
        pass
    for path in ns:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            r["setns"][path] = "open: %s" % e.strerror
            continue
        rc = libc.setns(fd, 0)
        err = __import__("ctypes").get_errno()
        os.close(fd)
        if rc != 0:
            r["setns"][path] = "setns: %s" % os.strerror(err)
            continue
        r["setns"][path] = "entered"
        for t in targets:
            r["connect"]["%s:%d (after entering %s)" % (t[0], t[1], path)] = _connect(*t)
    return r


def step_files(a):
    """File operations in order, each [op, path, arg]: read (the content),
    write (arg, truncating), delete, exists, rename (to arg), connect (a Unix
    socket), wait (until path exists, up to arg seconds); each outcome, or
    "error: ..."."""
    out = []
    for op in a[0]:
        kind, path = op[0], op[1]
        try:
            if kind == "read":
                with open(path, "rb") as f:
                    r = "read: " + f.read().decode("latin-1")
            elif kind == "write":
                with open(path, "wb") as f:
                    f.write(op[2].encode("latin-1"))
                r = "written"
            elif kind == "delete":
                os.unlink(path)
                r = "deleted" if not os.path.lexists(path) else "still there"
            elif kind == "exists":
                r = "exists" if os.path.lexists(path) else "absent"
            elif kind == "rename":
                os.rename(path, op[2])
                r = "renamed"
            elif kind == "connect":  # a Unix socket
                c = socket.socket(socket.AF_UNIX)
                c.settimeout(5)
                try:
                    c.connect(path)
                finally:
                    c.close()
                r = "connected"
            else:  # wait
                deadline = time.time() + op[2]
                while not os.path.exists(path) and time.time() < deadline:
                    time.sleep(0.05)
                r = "exists" if os.path.exists(path) else "absent"
        except OSError as e:
            r = "error: %s" % e.strerror
        out.append([kind, path, r])
    return {"ops": out}


def step_listen(a):
    """Listens on 0.0.0.0:port for up to `wait` seconds, until the file
    `stop` exists; the peers it accepted."""
    port, wait, stop = a
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    s.settimeout(0.2)
    got, end = [], time.time() + wait
    while time.time() < end and not os.path.exists(stop):
        try:
            c, peer = s.accept()
            got.append(peer[0])
            c.close()
        except socket.timeout:
            pass
    s.close()
    return {"accepted": got}


STEPS = {"env": step_env, "dns": step_dns, "urllib": step_urllib, "tls": step_tls,
         "tcp": step_tcp, "udp": step_udp, "exec": step_exec, "sleep": step_sleep,
         "escape": step_escape, "listen": step_listen, "files": step_files}


def tool_main(steps):
    for i, st in enumerate(json.loads(steps)):
        try:
            r = STEPS[st[0]](st[1:])
        except Exception as e:
            r = {"error": "tool: %s: %s" % (type(e).__name__, e)}
        r.update(step=i, kind=st[0])
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--jail-tool":
    sys.exit(tool_main(sys.argv[2]))

# --------------------------------------------------------------------------
# the suite

import shutil  # noqa: E402
import tempfile  # noqa: E402
import signal  # noqa: E402
import uuid  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, make_pki, EchoHTTPServer,  # noqa: E402
                     TcpServer, TCPEchoServer, DNSServer, run_egressd, clean_env, spawn,
                     maybe_reexec_in_netns, EGRESSD_BIN, SANITIZER_MARKERS, ROOT,
                     egressd_bin_for_anyone)

IS_ROOT = os.geteuid() == 0
NETNS = maybe_reexec_in_netns(__file__) if IS_ROOT else False

PUB = "203.0.113.7"      # on the suite's loopback: IP-pattern upstreams listen here
ELSEWHERE = "203.0.113.9"  # not local anywhere: reachable only by a name egressd checks
TOOL = os.path.abspath(__file__)  # copied by setup() where any user can read it
# inside the jail the command runs as another user: a system python, not one
# under a home directory only root may enter
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
JAIL_USER = {"SUDO_UID": "65534", "SUDO_GID": "65534", "SUDO_USER": "nobody"}
NODE = shutil.which("node")
PH_RE = r"egressd-ph-[0-9a-f]{32}"
CA_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
           "DENO_CERT", "GIT_SSL_CAINFO", "NPM_CONFIG_CAFILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
           "PIP_CERT", "AWS_CA_BUNDLE", "CARGO_HTTP_CAINFO")
_RND = uuid.uuid4().hex
REAL = {"SKEY": "sk-REAL-S-" + _RND[:20],   # --secret SKEY=secret.test (egressd's env)
        "BKEY": "sk-REAL-B-" + _RND[12:32],  # policy file: valueFromEnv SRC_B
        "FKEY": "sk-REAL-F-" + _RND[6:26]}   # escape cases: valueFromFile (root's, 0600)

suite = Suite("run")
W = {}  # the world: certificates, upstreams, policy; filled by setup()


def skip_reason():
    if not IS_ROOT:
        return "not root: egressd run needs network namespaces and iptables"
    if not NETNS:
        return "could not enter a private network namespace (unshare --net)"
    return None


class BannerServer(TcpServer):
    """Server speaks first: writes a banner line on accept, then echoes."""
    backlog = 16

    @property
    def banner(self):
        return b"220 egressd-test banner %d\r\n" % self.port

    def serve(self, c):
        c.sendall(self.banner)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)


class UDPSink:
    """UDP on 0.0.0.0: reachable at 203.0.113.7 and at every jail's host end."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]
        self.got = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                d, a = self.sock.recvfrom(65536)
            except OSError:
                return
            self.got.append((d, a))


NODE_CLIENT = r"""
const https = require('https');
const spec = JSON.parse(process.argv[2]);
const ev = v => v.replace(/\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}/g, (m, n) => process.env[n] || '');
const u = new URL(spec.url);
const headers = {};
for (const [k, v] of Object.entries(spec.headers || {})) headers[k] = ev(v);
if (spec.connect) headers.Host = u.host;
const opts = { host: spec.connect || u.hostname, port: Number(u.port || 443),
               path: u.pathname + u.search, headers, servername: spec.servername || u.hostname };
const done = o => { console.log(JSON.stringify(o)); };
const req = https.request(opts, res => {
  let body = '';
  res.setEncoding('latin1');
  res.on('data', d => { body += d; });
  res.on('end', () => done({ status: res.statusCode, headers: res.headers, body }));
});
req.setTimeout(15000, () => req.destroy(new Error('timeout')));
req.on('error', e => done({ error: (e.code || '') + ' ' + e.message }));
req.end();
"""


def setup():
    pki = make_pki(os.path.join(suite.tmp, "pki"),
                   extra_sans=["DNS:secret.test", "DNS:denied.test", "DNS:other.test"])
    W["pki"] = pki
    tls = (pki["cert"], pki["key"])
    W["tls"] = EchoHTTPServer("127.0.0.1", tls=tls)
    W["plain"] = EchoHTTPServer("127.0.0.1")
    W["ip_tls"] = EchoHTTPServer(PUB, tls=tls)       # 203.0.113.7:port is on the list
    W["ip_tls_no"] = EchoHTTPServer(PUB, tls=tls)    # ... this port is not
    W["echo"] = TCPEchoServer(PUB)
    W["echo_no"] = TCPEchoServer(PUB)
    W["banner"] = BannerServer(PUB)
    W["banner_no"] = BannerServer(PUB)
    W["udp"] = UDPSink()
    W["dns"] = DNSServer({n: ["127.0.0.1"] for n in
                          ("allowed.test", "secret.test", "denied.test", "other.test")})
    W["P"], W["Q"] = W["tls"].port, W["plain"].port
    for k in ("tls", "plain"):
        W[k].values.update(REAL)
    W["state"] = os.path.join(suite.tmp, "state")
    r = run_egressd(["ca", "init", "--state-dir", W["state"]], timeout=60)
    check_eq(r.returncode, 0, "egressd ca init (%s)" % r.stderr.strip())
    W["policy"] = os.path.join(suite.tmp, "policy.json")
    with open(W["policy"], "w") as f:
        json.dump({"allowNet": ["allowed.test", "secret.test",
                                "%s:%d" % (PUB, W["ip_tls"].port),
                                "%s:%d" % (PUB, W["echo"].port),
                                "%s:%d" % (PUB, W["banner"].port)],
                   "secrets": {"BKEY": {"hosts": ["secret.test"], "valueFromEnv": "SRC_B"}}},
                  f, indent=1)
    global TOOL
    TOOL = os.path.join(suite.tmp, "jail_tool.py")
    shutil.copy(os.path.abspath(__file__), TOOL)
    os.chmod(TOOL, 0o644)
    # a valueFromFile secret (root's, 0600) for the escape cases
    W["fkey"] = os.path.join(suite.tmp, "fkey.txt")
    with open(W["fkey"], "w") as f:
        f.write(REAL["FKEY"] + "\n")
    os.chmod(W["fkey"], 0o600)
    W["fpolicy"] = os.path.join(suite.tmp, "fpolicy.json")
    with open(W["fpolicy"], "w") as f:
        json.dump({"secrets": {"FKEY": {"hosts": ["secret.test"], "valueFromFile": W["fkey"]}}}, f)
    W["node_js"] = os.path.join(suite.tmp, "client.js")
    with open(W["node_js"], "w") as f:
        f.write(NODE_CLIENT)
    os.chmod(suite.tmp, 0o755)


def policy_args(log):
    P, Q = W["P"], W["Q"]
    return ["-c", W["policy"], "--secret", "SKEY=secret.test", "--state-dir", W["state"],
            "--upstream-ca", W["pki"]["ca"], "--allow-private", "127.0.0.0/8",
            "--resolve", "allowed.test:%d:127.0.0.1" % P,
            "--resolve", "secret.test:%d:127.0.0.1" % P,
            "--resolve", "allowed.test:%d:127.0.0.1" % Q,
            "--dns", "127.0.0.1:%d" % W["dns"].port, "--log", log]


# --------------------------------------------------------------------------
# what a jail leaves behind, and removing it when egressd did not


def _out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


ALL_RUN_PIDS = set()  # every egressd run this suite started (it names its jail after its pid)


def jail_traces(pids):
    """Every trace of the jails of the `egressd run` processes `pids`:
    namespaces, veth ends, iptables rules, /etc/netns entries. Jails of other
    processes (another suite running at the same time) are not ours to judge
    or remove: /var/run/netns and /etc/netns are shared by the whole host."""
    t = set()
    names = re.compile(r"egressd-(%s)-\d+\b" % "|".join(str(p) for p in pids)) if pids else None
    if not names:
        return t
    for l in _out(["ip", "netns", "list"]).splitlines():
        m = names.match(l)
        if m:
            t.add(("netns", m.group(0)))
    hexes = tuple("eg%s%06x" % (e, p & 0xffffff) for p in pids for e in "hj")
    for m in re.finditer(r"^\d+: (eg[hj][0-9a-f]+)[@:]", _out(["ip", "-o", "link"]), re.M):
        if m.group(1).startswith(hexes):
            t.add(("link", m.group(1)))
    for table in ("filter", "nat"):
        for l in _out(["iptables", "-w", "-t", table, "-S"]).splitlines():
            if names.search(l):
                t.add(("iptables", table, l))
    try:
        for d in os.listdir("/etc/netns"):
            if names.fullmatch(d):
                t.add(("etc", "/etc/netns/" + d))
    except OSError:
        pass
    return t


def purge(traces):
    for tr in sorted(traces):
        if tr[0] == "netns":
            for pid in _out(["ip", "netns", "pids", tr[1]]).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", tr[1]], capture_output=True)
        elif tr[0] == "link":
            subprocess.run(["ip", "link", "del", tr[1]], capture_output=True)
        elif tr[0] == "iptables" and tr[2].startswith("-A "):
            subprocess.run(["iptables", "-w", "-t", tr[1], "-D"] + tr[2].split()[1:],
                           capture_output=True)
        elif tr[0] == "etc":
            subprocess.run(["rm", "-rf", tr[1]])


def sleep_marker():
    """An argument for `sleep` that names it: 300.<12 random digits> seconds.
    The command's pids are its own PID namespace's, so the test finds the
    process by its command line instead."""
    return "300.%012d" % (uuid.uuid4().int % 10 ** 12)


def procs_with(marker):
    """Live (not zombie) pids whose command line holds marker, but for the
    egressd run processes (whose own command line holds the command's)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in ALL_RUN_PIDS:
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if marker.encode() not in f.read():
                    continue
        except OSError:
            continue
        if proc_alive(int(d)):
            out.append(int(d))
    return out


def sleeping(marker):
    """Live pids of the command's own `sleep MARKER` (argv exactly that): not
    the jail's init or the clone before its exec, whose command lines hold
    the marker too (and read empty for a moment while they exec)."""
    want = b"sleep\0" + marker.encode() + b"\0"
    out = []
    for pid in procs_with(marker):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read() == want:
                    out.append(pid)
        except OSError:
            continue
    return out


def wait_gone(marker, secs=3):
    deadline = time.time() + secs
    while procs_with(marker) and time.time() < deadline:
        time.sleep(0.05)
    return not procs_with(marker)


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------
# egressd run


class Run:
    def __init__(self, ctx, cmd, args=None, extra=(), env=None, argv0=None, preexec=None,
                 sudo=True):
        ctx.runs = getattr(ctx, "runs", [])
        self.idx = len(ctx.runs)
        base = os.path.join(ctx.tmp, "run%d" % self.idx)
        self.log = base + ".log"
        self.out_path, self.err_path = base + ".stdout", base + ".stderr"
        pol = policy_args(self.log) if args is None else list(args)
        self.argv = [argv0 or EGRESSD_BIN, "run"] + pol + list(extra) + ["--"] + list(cmd)
        # as if started through sudo by nobody: the command runs as uid 65534
        e = clean_env(dict({"SKEY": REAL["SKEY"], "SRC_B": REAL["BKEY"]},
                           **(JAIL_USER if sudo else {}), **(env or {})))
        if not sudo:
            for k in JAIL_USER:
                e.pop(k, None)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        kw = {"preexec_fn": preexec} if preexec else {}
        with open(self.out_path, "wb") as o, open(self.err_path, "wb") as er:
            self.proc = spawn(self.argv, stdout=o, stderr=er, stdin=subprocess.DEVNULL,
                              env=e, cwd=ROOT, **kw)
        self.rc = None
        ALL_RUN_PIDS.add(self.proc.pid)
        ctx.procs.append(self.proc)
        ctx.runs.append(self)

    def wait(self, timeout=60):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("egressd run did not exit within %ds" % timeout)
        return self.rc

    def _read(self, p):
        try:
            with open(p, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        return self._read(self.out_path)

    def stderr(self):
        return self._read(self.err_path)

    def results(self):
        res = []
        for l in self.stdout().splitlines():
            if l.startswith("{"):
                try:
                    d = json.loads(l)
                except ValueError:
                    continue
                if "step" in d:
                    res.append(d)
        return res

    def diagnostics(self):
        out = ["run#%d: %s -> %s" % (self.idx, " ".join(self.argv), self.rc),
               "run#%d stdout (tail):\n%s" % (self.idx, self.stdout()[-2500:]),
               "run#%d stderr (tail):\n%s" % (self.idx, self.stderr()[-2500:])]
        log = self._read(self.log).strip().split("\n")
        if log and log[0]:
            out.append("run#%d audit log (tail):\n%s" % (self.idx, "\n".join(log[-12:])))
        return out


def tool(steps):
    return [PY, TOOL, "--jail-tool", json.dumps(steps)]


def run_tool(ctx, steps, timeout=60, **kw):
    """One `egressd run` of the jail tool; checks exit 0 and one result per
    step; returns the results."""
    r = Run(ctx, tool(steps), **kw)
    rc = r.wait(timeout)
    res = r.results()
    check_eq(rc, 0, "egressd run exit status")
    check_eq(len(res), len(steps), "results from the jail tool")
    return res


def rcase(desc, timeout=60, skip=None):
    """A case: afterwards every run must have exited by itself, printed no
    sanitizer report, and left no namespace, veth, rule or /etc/netns entry
    (anything left is then removed, so later cases start clean)."""
    def deco(fn):
        def wrapped(ctx):
            if W.get("setup_error"):
                raise AssertionError("setup failed: %s" % W["setup_error"])
            problems = []
            try:
                fn(ctx)
            finally:
                runs = getattr(ctx, "runs", [])
                killed = False
                for r in runs:
                    if r.proc.poll() is None:
                        r.proc.kill()
                        r.proc.wait()
                        killed = True
                for r in runs:
                    err = r.stderr()
                    for m in SANITIZER_MARKERS:
                        if m in err:
                            i = err.index(m)
                            problems.append("sanitizer report in egressd run stderr:\n" +
                                            err[max(0, i - 200):i + 3000])
                            break
                    for name, real in REAL.items():
                        for what, data in (("stdout (the command's output)", r.stdout()),
                                           ("stderr", err), ("audit log", r._read(r.log))):
                            if real in data:
                                problems.append("real value of %s in run#%d %s" % (name, r.idx, what))
                left = jail_traces({r.proc.pid for r in runs})
                if left:
                    purge(left)
                    if not killed:
                        problems.append("left behind after egressd run exited:\n" +
                                        "\n".join(" ".join(t) for t in sorted(left)))
                if problems or sys.exc_info()[0] is not None:
                    for r in runs:
                        for d in r.diagnostics():
                            ctx.note(d)
            if problems:
                raise AssertionError("\n".join(problems))
        suite.add(desc, wrapped, timeout=timeout, skip=skip or skip_reason)
        return fn
    return deco


def seen(srv, tok):
    return [s for s in srv.seen if tok in s.get("path", "")]


def hdr(info, name):
    for k, v in info["headers"]:
        if k.lower() == name.lower():
            return v
    return None


def in_net(a, net, prefix):
    try:
        x = struct.unpack(">I", socket.inet_aton(a))[0]
    except (OSError, TypeError):
        return False
    n = struct.unpack(">I", socket.inet_aton(net))[0]
    return x >> (32 - prefix) == n >> (32 - prefix)


def synthetic(a):
    return in_net(a, "198.18.0.0", 15)


def token():
    return uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------
# exit statuses and teardown

EXITS = [
    ("exit status 0", ["true"], 0),
    ("exit status 3", ["sh", "-c", "exit 3"], 3),
    ("exit status 2 (CMD's, not egressd's usage error)", ["sh", "-c", "exit 2"], 2),
    ("command killing itself with SIGKILL: 128+9", ["sh", "-c", "kill -KILL $$"], 137),
    ("command crashing (SIGSEGV): 128+11",
     [PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], 139),
]


def exit_case(ctx, cmd, want):
    r = Run(ctx, cmd)
    check_eq(r.wait(), want, "egressd run exit status")


for _d, _c, _w in EXITS:
    rcase("run: %s, nothing left behind" % _d)(lambda ctx, c=_c, w=_w: exit_case(ctx, c, w))


@rcase("run: a background process the command leaves is killed at exit")
def _(ctx):
    mk = sleep_marker()
    r = Run(ctx, ["sh", "-c", "sleep %s >/dev/null 2>&1 & echo bg=$!" % mk])
    check_eq(r.wait(), 0, "egressd run exit status")
    check(re.search(r"bg=(\d+)", r.stdout()), "no bg=PID from the command")
    check(wait_gone(mk), "the background sleep is still alive: %r" % procs_with(mk))


def wait_started(r, mk):
    """Waits for the command's `child=` line and its sleep; the sleep's pids."""
    deadline = time.time() + 20
    while time.time() < deadline and r.proc.poll() is None:
        if "child=" in r.stdout() and sleeping(mk):
            return sleeping(mk)
        time.sleep(0.05)
    return []


def signal_case(ctx, sig):
    mk = sleep_marker()
    r = Run(ctx, ["sh", "-c", "sleep %s & echo child=$!; wait" % mk])
    check(wait_started(r, mk), "the command did not start (egressd run status %s)" % r.proc.poll())
    live = jail_traces({r.proc.pid})
    kinds = {t[0] for t in live}
    check({"netns", "link", "iptables", "etc"} <= kinds,
          "while the command runs, a namespace, a veth, rules and /etc/netns/NAME exist "
          "(saw %s)" % sorted(live))
    r.proc.send_signal(sig)
    rc = r.wait(15)
    ctx.note("egressd run exit status after %s: %s" % (signal.Signals(sig).name, rc))
    check(wait_gone(mk, 1), "the command's sleep survived: %r" % procs_with(mk))
    check(rc is not None and rc >= 0, "egressd run died of signal %s instead of exiting" %
          (-rc if rc is not None else "?"))


@rcase("run: SIGTERM reaches a command without handlers through the jail's init: 128+15")
def _(ctx):
    mk = sleep_marker()
    r = Run(ctx, ["sleep", mk])
    deadline = time.time() + 20
    while time.time() < deadline and r.proc.poll() is None and not sleeping(mk):
        time.sleep(0.05)
    check(sleeping(mk), "the command did not start (egressd run status %s)" % r.proc.poll())
    r.proc.send_signal(signal.SIGTERM)
    check_eq(r.wait(15), 143, "egressd run exit status (sleep killed by SIGTERM)")


@rcase("run: orphans the command leaves are reaped inside the jail (no zombie)")
def _(ctx):
    script = ("(sh -c 'exit 0' &); (sleep 0.2 &); sleep 1; "
              "for f in /proc/[0-9]*/stat; do read -r l < $f && echo \"$l\"; done")
    r = Run(ctx, ["sh", "-c", script])
    check_eq(r.wait(), 0, "egressd run exit status")
    states = re.findall(r"^\d+ \((\S+)\) (\S)", r.stdout(), re.M)
    check(states, "no /proc/PID/stat lines from inside: %r" % r.stdout()[-300:])
    check(not [x for x in states if x[1] == "Z"], "zombies inside: %r" % states)


rcase("run: SIGTERM to egressd run while the command sleeps: command killed, nothing left")(
    lambda ctx: signal_case(ctx, signal.SIGTERM))
rcase("run: SIGINT to egressd run while the command sleeps: command killed, nothing left")(
    lambda ctx: signal_case(ctx, signal.SIGINT))


@rcase("run: a jail left by a SIGKILLed egressd run is removed by the next run, which works")
def _(ctx):
    mk = sleep_marker()
    r = Run(ctx, ["sh", "-c", "sleep %s & echo child=$!; wait" % mk])
    check(wait_started(r, mk), "the command did not start (egressd run status %s)" % r.proc.poll())
    live = jail_traces({r.proc.pid})
    names = [t[1] for t in live if t[0] == "netns"]
    check(len(names) == 1, "one namespace while it runs: %r" % sorted(live))
    r.proc.kill()
    r.wait(10)
    # the command dies with egressd (its init has SIGKILL as parent-death signal)
    check(wait_gone(mk), "the dead run's sleep is still alive: %r" % procs_with(mk))
    check_eq(jail_traces({r.proc.pid}), live, "what SIGKILL leaves behind")
    check(os.path.exists("/run/egressd-jails/" + names[0]), "no owner lock file for the jail")
    r2 = Run(ctx, tool([["urllib", "https://allowed.test:%d/after-kill-%s" % (W["P"], token())]]))
    check_eq(r2.wait(), 0, "the next run's exit status")
    res = r2.results()
    check(res and res[0].get("status") == 200, "the next run's request through its jail: %r" % res)
    check_eq(jail_traces({r.proc.pid}), set(), "traces of the dead run's jail after the next run")
    check("removing jail %s, left by an egressd that died" % names[0] in r2.stderr(),
          "the next run says what it removed: %r" % r2.stderr()[-300:])
    check(not os.path.exists("/run/egressd-jails/" + names[0]), "owner lock file left")


@rcase("run: two runs at once get distinct namespaces and subnets, both work")
def _(ctx):
    tok = token()
    steps = [["env"], ["urllib", "https://allowed.test:%d/twice-%s" % (W["P"], tok)], ["sleep", 3]]
    r1, r2 = Run(ctx, tool(steps)), Run(ctx, tool(steps))
    # both jails exist at once while the commands sleep: polled, as setting a jail
    # up can take more than a second on a loaded machine
    live = set()
    deadline = time.time() + 20
    while time.time() < deadline and (r1.proc.poll() is None or r2.proc.poll() is None):
        live = {t[1] for t in jail_traces({r1.proc.pid, r2.proc.pid}) if t[0] == "netns"}
        if len(live) >= 2:
            break
        time.sleep(0.1)
    check_eq(r1.wait(), 0, "first run exit status")
    check_eq(r2.wait(), 0, "second run exit status")
    res = [r1.results(), r2.results()]
    check(all(len(x) == 3 for x in res), "missing results: %r" % res)
    ns = [re.search(r"nameserver (\S+)", x[0]["resolv"]).group(1) for x in res]
    check(ns[0] != ns[1], "both jails have nameserver %s" % ns[0])
    for x in res:
        check_eq(x[1].get("status"), 200, "allowed.test through each jail (%r)" % x[1])
    check(len(live) >= 2, "expected two namespaces at once, saw %s" % sorted(live))


@rcase("run: 125 with a message when the jail cannot be set up (no ip/iptables in PATH)")
def _(ctx):
    r = Run(ctx, ["/bin/true"], env={"PATH": "/nonexistent-egressd-test"})
    check_eq(r.wait(), 125, "egressd run exit status")
    check(r.stderr().strip(), "no message on stderr")


@rcase("run: as a non-root user, 125 and 'needs root'")
def _(ctx):
    state = os.path.join(ctx.tmp, "nobody-state")
    os.makedirs(state, mode=0o700)
    os.chown(state, 65534, 65534)
    os.chmod(ctx.tmp, 0o755)

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    # a copy: the checkout may sit in a directory uid 65534 cannot enter
    r = Run(ctx, ["/bin/true"], args=["--state-dir", state, "--allow-net", "allowed.test"],
            env={"HOME": state}, preexec=drop, argv0=egressd_bin_for_anyone())
    rc = r.wait()
    check_eq(rc, 125, "egressd run exit status as uid 65534")
    check("needs root" in r.stderr(), "stderr does not say it needs root: %r" % r.stderr()[-300:])


# --------------------------------------------------------------------------
# who the command runs as, and what it cannot reach


@rcase("jail: as root without sudo and without --user, run refuses (125), makes no jail")
def _(ctx):
    r = Run(ctx, ["/bin/true"], sudo=False)
    check_eq(r.wait(), 125, "egressd run exit status")
    check("refusing to run the command as root" in r.stderr() and "--user" in r.stderr(),
          "stderr does not say why: %r" % r.stderr()[-400:])
    check(not os.path.exists("/run/egressd-jails/egressd-%d-0" % r.proc.pid),
          "a jail was made for a refused run")


@rcase("jail: started through sudo, the command runs as SUDO_UID/SUDO_GID with the user's "
       "groups and HOME from the passwd entry")
def _(ctx):
    import pwd
    res = run_tool(ctx, [["env"]])[0]
    pw = pwd.getpwuid(65534)
    check_eq((res["uid"], res["gid"]), (65534, 65534), "uid and gid inside")
    want = sorted({65534} | set(os.getgrouplist(pw.pw_name, 65534)))
    check_eq(res["groups"], want, "supplementary groups inside")
    check_eq(res["env"].get("HOME"), pw.pw_dir, "HOME inside")
    check_eq(res["env"].get("USER"), pw.pw_name, "USER inside")


def escape_steps(pidfile, extra_connect=(), write=()):
    st = W["state"]
    return [["escape", {"pidfile": pidfile, "write": list(write),
                        "files": [os.path.join(st, "ca.key"), os.path.join(st, "placeholder.key"),
                                  W["fkey"], W["policy"], W["fpolicy"]],
                        "connect": [["127.0.0.1", W["Q"]]] + [list(c) for c in extra_connect]}]]


def run_escape(ctx, extra=(), sudo=True, write=()):
    """The escape probe in a jail whose egressd has a valueFromFile secret;
    the probe learns egressd's pid from a file the test writes once the run
    started: under /run, not /tmp, as uid 0's /tmp is an overlay that need
    not show a file the host makes under a name the probe already looked up."""
    pidfile = os.path.join("/run", "egressd-test-pid-" + token())
    r = Run(ctx, tool(escape_steps(pidfile, write=write)), args=policy_args(os.path.join(ctx.tmp, "e.log")) +
            ["-c", W["fpolicy"]], extra=extra, sudo=sudo)
    try:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(r.proc.pid))
        os.chmod(pidfile + ".tmp", 0o644)
        os.rename(pidfile + ".tmp", pidfile)
        check_eq(r.wait(), 0, "egressd run exit status")
    finally:
        for p in (pidfile, pidfile + ".tmp"):
            if os.path.exists(p):
                os.unlink(p)
    res = r.results()
    check(len(res) == 1 and "error" not in res[0], "the probe's result: %r" % res)
    ctx.note("inside: %s" % json.dumps(res[0], indent=1)[:3000])
    return r, res[0]


def check_escape(r, res):
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        check_eq(int(res["caps"].get(k, "1"), 16), 0, "%s inside" % k)
    check(r.proc.pid not in res["pids"] and len(res["pids"]) <= 6,
          "the command sees processes other than its own: %r" % res["pids"][:40])
    check_eq(res["environ_with_secret"], [], "/proc/PID/environ holding a real value, read inside")
    for path, what in res["files"].items():
        check(not what.startswith("read") or what == "read 0 bytes",
              "%s inside: %s" % (path, what))
    check(res["kill"].startswith("error"), "kill(egressd, 0) inside: %s" % res["kill"])
    check(res["ptrace"].startswith("error"), "ptrace(ATTACH, egressd) inside: %s" % res["ptrace"])
    check(res["mount"].startswith("error"), "mount inside: %s" % res["mount"])
    check(res["raw_socket"].startswith("error"), "raw socket inside: %s" % res["raw_socket"])
    check(res["sysctl_write"].startswith("error"), "sysctl write inside: %s" % res["sysctl_write"])
    check_eq(res["block_devices"], [], "block devices in the command's /dev")
    check_eq({k: v for k, v in res["fds"].items() if int(k) > 2}, {},
             "descriptors the command inherited beyond 0, 1, 2")
    for what, out in res["setns"].items():
        check(out != "entered", "setns into %s from inside" % what)
    for what, out in res["connect"].items():
        if what.startswith("127.0.0.1:"):
            check(out != "connected", "the host's loopback listener %s reached" % what)


@rcase("jail: the sudo user's command cannot read egressd's environ, the CA key, the "
       "placeholder key or a valueFromFile file, see/ptrace/kill egressd, setns, mount, open a "
       "raw socket, write a sysctl, see a disk or reach the host's loopback")
def _(ctx):
    r, res = run_escape(ctx)
    check_escape(r, res)


@rcase("jail: --user root runs uid 0 without any capability; egressd's files hidden all the same; "
       "root-owned host files (binaries, /etc/passwd) read-only to it, /tmp writable")
def _(ctx):
    # a root-owned file outside the scratch places (wherever the checkout
    # is): uid 0 owns it, so only a read-only mount keeps it from being
    # rewritten
    vdir = tempfile.mkdtemp(prefix="egressd-jail-victim-", dir="/var/lib")
    os.chmod(vdir, 0o755)
    victim = os.path.join(vdir, "victim")
    scratch = os.path.join("/tmp", "jail-scratch-" + token())
    with open(victim, "w") as f:
        f.write("host file\n")
    os.chmod(victim, 0o755)  # as a root-owned binary is
    try:
        r, res = run_escape(ctx, extra=["--user", "root"], sudo=False,
                            write=[victim, "/etc/passwd", scratch])
    finally:
        shutil.rmtree(vdir, ignore_errors=True)
        if os.path.exists(scratch):
            os.unlink(scratch)
    check_escape(r, res)
    for path in (victim, "/etc/passwd"):
        check("Read-only file system" in res["write"].get(path, ""),
              "uid 0 inside opened %s for writing: %s" % (path, res["write"].get(path)))
    check_eq(res["write"].get(scratch), "opened", "/tmp writable inside")
    check(all(v in ("read 0 bytes",) or "Permission denied" in v for v in res["files"].values()),
          "egressd's files inside (uid 0 owns them; they must be hidden): %r" % res["files"])


def scratch_dirs(var_tmp=True):
    """A new 0755 root-owned directory under the host's /tmp and, with
    var_tmp, /var/tmp (if there and not /tmp itself); the caller removes them."""
    dirs = [tempfile.mkdtemp(prefix="egressd-jail-scratch-", dir="/tmp")]
    if var_tmp and os.path.isdir("/var/tmp") and not os.path.samefile("/var/tmp", "/tmp"):
        dirs.append(tempfile.mkdtemp(prefix="egressd-jail-scratch-", dir="/var/tmp"))
    for d in dirs:
        os.chmod(d, 0o755)
    return dirs


def file_state(path):
    """(bytes, mode, uid) of a host file, or None."""
    try:
        st = os.lstat(path)
        with open(path, "rb") as f:
            return (f.read(), st.st_mode & 0o7777, st.st_uid)
    except OSError:
        return None


@rcase("jail: --user root's /tmp and /var/tmp are overlays: a root-owned 0755 host file there "
       "is read, rewritten and deleted inside, and on the host unchanged and present after; "
       "files made inside never reach the host; host files made or changed there later are seen")
def _(ctx):
    go = os.path.join("/run", "egressd-test-go-" + token())
    top = os.path.join("/tmp", "egressd-jail-made-inside-" + token())
    dirs = scratch_dirs()
    try:
        want, ops, expect, later = {}, [], [], []
        for d in dirs:
            v = os.path.join(d, "built-binary")
            want[v] = ("#!/bin/sh\n# %s\n" % token()).encode()
            with open(v, "wb") as f:
                f.write(want[v])
            os.chmod(v, 0o755)
            made = os.path.join(d, "made-inside")
            ops += [["read", v], ["write", v, "planted"], ["read", v], ["delete", v],
                    ["exists", v], ["write", made, "inside"], ["read", made]]
            expect += ["read: " + want[v].decode(), "written", "read: planted", "deleted",
                       "absent", "written", "read: inside"]
            later.append(os.path.join(d, "made-later"))
            changing = os.path.join(d, "changing")
            with open(changing, "w") as f:
                f.write("before\n")
            ops.append(["read", changing])
            expect.append("read: before\n")
            later.append(changing)
        ops += [["write", top, "inside"], ["exists", top]]
        expect += ["written", "exists"]
        r = Run(ctx, tool([["files", ops],
                           ["files", [["wait", go, 30]] + [["read", p] for p in later]]]),
                extra=["--user", "root"], sudo=False)
        # once the command looked at its /tmp: host files made (under names it
        # did not look up) and rewritten in place, then the signal, outside /tmp
        deadline = time.time() + 30
        while time.time() < deadline and r.proc.poll() is None and not r.results():
            time.sleep(0.05)
        for p in later:
            with open(p, "w") as f:
                f.write("later\n")
        with open(go, "w"):
            pass
        check_eq(r.wait(), 0, "egressd run exit status")
        res = r.results()
        check_eq(len(res), 2, "results from the jail tool")
        got = res[0].get("ops", [])
        check_eq(len(got), len(ops), "outcomes inside: %r" % res[0])
        for o, w in zip(got, expect):
            check_eq(o[2], w, "inside, %s %s" % (o[0], o[1]))
        for v, data in want.items():
            check_eq(file_state(v), (data, 0o755, 0), "the host's %s after the run" % v)
        for d in dirs:
            check_eq(sorted(os.listdir(d)), ["built-binary", "changing", "made-later"],
                     "the host's %s after the run" % d)
        check(not os.path.exists(top), "%s, made inside, is on the host" % top)
        check_eq([o[2] for o in res[1].get("ops", [])], ["exists"] + ["read: later\n"] * len(later),
                 "inside, host files made or rewritten after the command started (%r)" % res[1])
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        for p in (go, top):
            if os.path.exists(p):
                os.unlink(p)


@rcase("jail: --user root's /tmp overlay as the README says: a host directory is not renamed "
       "(EXDEV); a host Unix socket there refuses connections")
def _(ctx):
    # (what CMD sees of a host file made under a name it already looked up is
    # the kernel's undefined case, so it is documented as such, not tested)
    d = scratch_dirs(var_tmp=False)[0]
    lst = socket.socket(socket.AF_UNIX)
    try:
        sub, sock = (os.path.join(d, x) for x in ("sub", "sock"))
        os.mkdir(sub)
        lst.bind(sock)
        lst.listen(4)
        r = Run(ctx, tool([["files", [["rename", sub, sub + "-moved"], ["connect", sock]]]]),
                extra=["--user", "root"], sudo=False)
        check_eq(r.wait(), 0, "egressd run exit status")
        res = r.results()
        check_eq(len(res), 1, "results from the jail tool")
        check_eq([o[2] for o in res[0].get("ops", [])],
                 ["error: Invalid cross-device link", "error: Connection refused"],
                 "inside (%r)" % res)
        check(os.path.isdir(sub) and not os.path.exists(sub + "-moved"),
              "the host's directory after the run: %r" % os.listdir(d))
    finally:
        lst.close()
        shutil.rmtree(d, ignore_errors=True)


@rcase("jail: a non-root command reads and writes the host's /tmp itself (no overlay)")
def _(ctx):
    d = scratch_dirs(var_tmp=False)[0]
    try:
        os.chmod(d, 0o777)
        host, made = os.path.join(d, "from-host"), os.path.join(d, "by-command")
        with open(host, "w") as f:
            f.write("host\n")
        res = run_tool(ctx, [["files", [["read", host], ["write", made, "command\n"]]]])
        check_eq([o[2] for o in res[0].get("ops", [])], ["read: host\n", "written"],
                 "inside (%r)" % res[0])
        st = file_state(made)
        check_eq(st and (st[0], st[2]), (b"command\n", 65534),
                 "the command's file on the host (content, owner)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@rcase("jail: a command cannot reach a second jail running at the same time (by its address, "
       "or through its namespace)", timeout=90)
def _(ctx):
    port = 20000 + uuid.uuid4().int % 20000
    stop = os.path.join(suite.tmp, "stop-" + token())
    a = Run(ctx, tool([["env"], ["listen", port, 40, stop]]))
    deadline, a_ip = time.time() + 30, None
    while time.time() < deadline and a.proc.poll() is None and not a_ip:
        res = a.results()
        if res:
            a_ip = [x for x in re.findall(r"inet (\S+)/", res[0]["ip_addr"]) if x != "127.0.0.1"][0]
        time.sleep(0.1)
    check(a_ip, "the first jail did not report its address")
    pidfile = os.path.join(suite.tmp, "pid-" + token())
    b = Run(ctx, tool(escape_steps(pidfile, [[a_ip, port]])))
    with open(pidfile, "w") as f:
        f.write(str(b.proc.pid))
    os.chmod(pidfile, 0o644)
    check_eq(b.wait(), 0, "second run exit status")
    with open(stop, "w"):
        pass
    check_eq(a.wait(60), 0, "first run exit status")
    res = a.results()
    check(len(res) == 2, "the first jail's results: %r" % res)
    ctx.note("second jail: %s" % json.dumps(b.results(), indent=1)[:3000])
    check_eq(res[1].get("accepted"), [], "connections the first jail's listener accepted")


@rcase("serve: egressd is non-dumpable and /proc/PID/environ holds no secret (also after SIGHUP)")
def _(ctx):
    binary = egressd_bin_for_anyone()  # the checkout may be where uid 65534 cannot go
    state = os.path.join(ctx.tmp, "serve-state")
    os.makedirs(state, mode=0o700)
    os.chown(state, 65534, 65534)
    os.chmod(ctx.tmp, 0o755)
    errp = os.path.join(ctx.tmp, "serve.stderr")

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    with open(errp, "wb") as er:
        p = spawn([binary, "serve", "--listen", "127.0.0.1:0", "--secret", "SKEY=secret.test",
                   "--state-dir", state], env=clean_env({"SKEY": REAL["SKEY"], "HOME": state}),
                  stdout=subprocess.DEVNULL, stderr=er, stdin=subprocess.DEVNULL, preexec_fn=drop)
    ctx.procs.append(p)

    def err():
        with open(errp, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(text):
        deadline = time.time() + 20
        while time.time() < deadline and p.poll() is None and text not in err():
            time.sleep(0.05)
        return text in err()
    check(wait_for("listening on"), "egressd serve did not start: %r" % err()[-500:])
    with open("/proc/%d/environ" % p.pid, "rb") as f:
        env = f.read()
    check(REAL["SKEY"].encode() not in env and b"SKEY=" not in env,
          "egressd's /proc/PID/environ still holds SKEY")
    with open("/proc/%d/status" % p.pid) as f:
        uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
    check_eq(uid, "65534", "egressd's uid")
    check_eq(os.stat("/proc/%d/environ" % p.pid).st_uid, 0,
             "owner of /proc/PID/environ of egressd running as 65534 (root when non-dumpable)")
    same_uid = subprocess.run([PY, "-c", "open('/proc/%d/environ').read()" % p.pid],
                              preexec_fn=drop, capture_output=True, text=True, timeout=20)
    check(same_uid.returncode != 0 and "Permission denied" in same_uid.stderr,
          "a process of egressd's own uid read its environ: rc %d %r" %
          (same_uid.returncode, same_uid.stderr[-300:]))
    p.send_signal(signal.SIGHUP)
    check(wait_for("policy reloaded"), "SIGHUP reload with --secret from the environment: %r" %
          err()[-500:])
    with open("/proc/%d/environ" % p.pid, "rb") as f:
        check(REAL["SKEY"].encode() not in f.read(), "environ holds SKEY after the reload")
    p.terminate()
    p.wait(15)
    check(REAL["SKEY"] not in err(), "the real value on egressd's stderr")


# --------------------------------------------------------------------------
# the jail and the command's environment


@rcase("env: placeholders, CA bundle variables, no proxy variables, no real values; "
       "jail shape (one /30 in 10.200/16, resolv.conf, IPv6 off)")
def _(ctx):
    res = run_tool(ctx, [["env"]])[0]
    env = res["env"]
    for k in ("SKEY", "BKEY"):
        check(re.fullmatch(PH_RE, env.get(k, "")), "%s=%r is not a placeholder" % (k, env.get(k)))
    for k, v in env.items():
        for name, real in REAL.items():
            check(real not in v, "the real value of %s is in the command's %s" % (name, k))
        check(k.lower() not in ("http_proxy", "https_proxy", "all_proxy"),
              "proxy variable %s=%s in the command's environment" % (k, v))
    with open(os.path.join(W["state"], "ca.crt")) as f:
        own = ssl.PEM_cert_to_DER_cert(f.read())
    with open(W["pki"]["ca"]) as f:
        test_ca = ssl.PEM_cert_to_DER_cert(f.read())
    for k in CA_VARS:
        check(k in env, "%s not set" % k)
        pem = res["ca_files"][k]
        check(not pem.startswith("UNREADABLE"), "%s=%s: %s" % (k, env.get(k), pem))
        ders = [ssl.PEM_cert_to_DER_cert(m) for m in re.findall(
            r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)]
        check(own in ders, "%s: egressd's CA is not in %s" % (k, env[k]))
        check(test_ca in ders, "%s: the --upstream-ca anchor is not in %s" % (k, env[k]))
        if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
            check(len(ders) > 2, "%s: no system CAs in %s (%d certs)" % (k, env[k], len(ders)))
    ns = re.findall(r"^nameserver\s+(\S+)", res["resolv"], re.M)
    check(len(ns) == 1 and in_net(ns[0], "10.200.0.0", 16),
          "resolv.conf inside: %r" % res["resolv"])
    gw = re.search(r"^default via (\S+)", res["ip_route"], re.M)
    check(gw and gw.group(1) == ns[0], "default route %r vs nameserver %s" % (res["ip_route"], ns))
    mine = re.findall(r"inet (\S+)/(\d+)", res["ip_addr"])
    jail = [a for a, p in mine if a != "127.0.0.1"]
    check(len(jail) == 1 and in_net(jail[0], ns[0], 30) and ("%s" % jail[0]) != ns[0],
          "addresses inside: %r" % res["ip_addr"])
    check("inet6" not in res["ip_addr"], "IPv6 addresses inside: %r" % res["ip_addr"])
    check_eq((res["disable_ipv6_all"], res["disable_ipv6_default"]), ("1", "1"),
             "net.ipv6.conf.{all,default}.disable_ipv6 inside")


@rcase("dns: allowed names get a synthetic A (198.18.0.0/15), AAAA empty, denied NXDOMAIN, "
       "nothing asked upstream for a denied name")
def _(ctx):
    n0 = len(W["dns"].queries)
    q = [["allowed.test", 1], ["secret.test", 1], ["denied.test", 1], ["allowed.test", 28],
         ["denied.test", 28], ["ALLOWED.Test", 1], ["allowed.test", 1]]
    res = run_tool(ctx, [["dns", q]])[0]
    check("error" not in res, "dns step: %r" % res)
    a = {}
    for x in res["queries"]:
        check("error" not in x, "query %s/%d: %s" % (x["name"], x["qtype"], x.get("error")))
        check(x["id_ok"], "reply id does not match for %s" % x["name"])
        key = (x["name"], x["qtype"])
        if x["name"] == "denied.test":
            check_eq(x["rcode"], 3, "rcode for denied.test type %d" % x["qtype"])
            check_eq(x["answers"], [], "answers for denied.test")
        elif x["qtype"] == 28:
            check_eq((x["rcode"], x["answers"]), (0, []), "AAAA for %s" % x["name"])
        else:
            check_eq(x["rcode"], 0, "rcode for %s" % x["name"])
            addrs = [y["addr"] for y in x["answers"] if y["type"] == 1]
            check(addrs and all(synthetic(y) for y in addrs),
                  "A for %s: %r (want 198.18.0.0/15)" % (x["name"], x["answers"]))
            a.setdefault(x["name"].lower(), set()).update(addrs)
    check(a["allowed.test"] != a["secret.test"], "allowed.test and secret.test share %r" % a)
    check_eq(len(a["allowed.test"]), 1, "allowed.test always gets the same address (%r)" % a)
    gai = res["gai"]
    check(isinstance(gai["allowed.test"], list) and all(synthetic(y) for y in gai["allowed.test"]),
          "getaddrinfo(allowed.test) inside: %r" % gai["allowed.test"])
    check(isinstance(gai["denied.test"], str), "getaddrinfo(denied.test) inside: %r" % gai["denied.test"])
    asked = [n for n, _t in W["dns"].queries[n0:]]
    check("denied.test" not in asked, "egressd asked its DNS server about denied.test: %r" % asked)


# --------------------------------------------------------------------------
# TLS clients: allowed, denied (by DNS and by SNI), secret injected


def check_client_results(ctx, who, res, tok):
    ok, denied_dns, denied_sni, secret = res
    check_eq(ok.get("status"), 200, "%s: allowed.test (%r)" % (who, ok))
    s = seen(W["tls"], "%s-allowed-%s" % (who, tok))
    check(s and s[0]["sni"] == "allowed.test", "%s: upstream did not get the allowed request "
          "with SNI allowed.test: %r" % (who, s))
    check("status" not in denied_dns or denied_dns.get("status") != 200,
          "%s: denied.test via DNS was not refused: %r" % (who, denied_dns))
    check("status" not in denied_sni or denied_sni.get("status") != 200,
          "%s: denied.test (SNI, address %s) was not refused: %r" % (who, ELSEWHERE, denied_sni))
    check(not seen(W["tls"], "%s-denied" % who), "%s: a denied request reached the upstream" % who)
    check("denied.test" not in W["tls"].snis, "upstream saw SNI denied.test")
    check_eq(secret.get("status"), 200, "%s: secret.test (%r)" % (who, secret))
    s = seen(W["tls"], "%s-secret-%s" % (who, tok))
    check(s, "%s: the secret request did not reach the upstream" % who)
    check_eq(hdr(s[0], "Authorization"), "Bearer " + REAL["SKEY"], "%s: Authorization upstream" % who)
    check_eq(hdr(s[0], "X-B"), REAL["BKEY"], "%s: X-B upstream" % who)
    body = secret.get("body", "")
    check(re.search("Bearer " + PH_RE, body), "%s: the echo the program got does not show the "
          "placeholder: %r" % (who, body[:400]))


def h2echo_port(mode=""):
    """tests/integration/h2echo.js (HTTP/2 and HTTP/1.1; mode "h1": HTTP/1.1
    only, ALPN http/1.1) on 127.0.0.1, once per suite, with the suite's
    certificate (secret.test among its names)."""
    key = "h2echo" + mode
    if key not in W:
        p = spawn([NODE, os.path.join(ROOT, "tests", "integration", "h2echo.js"),
                   W["pki"]["key"], W["pki"]["cert"]] + ([mode] if mode else []),
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        W[key] = p
        W[key + "_port"] = int(p.stdout.readline())
    return W[key + "_port"]


@rcase("run --http2, a secret's host whose upstream speaks h2 and http/1.1: egressd offers the "
       "upstream what the sandbox's ClientHello offered, so curl --http2 inside gets HTTP/2 on "
       "both sides and curl --http1.1 HTTP/1.1 on both sides, the secret injected in both",
       skip=lambda: skip_reason() or (None if NODE else "node is not installed"))
def _(ctx):
    import hashlib
    H = h2echo_port()
    want_auth = hashlib.sha256(("Bearer " + REAL["SKEY"]).encode()).hexdigest()
    steps = [["exec", "sh", "-c", "curl -q -sS --max-time 15 %s -w '\\n%%{http_version}' "
              "-H \"Authorization: Bearer $SKEY\" https://secret.test:%d/%s" % (flag, H, path)]
             for flag, path in (("--http2", "h2run"), ("--http1.1", "h1run"))]
    res = run_tool(ctx, steps, extra=["--http2", "--resolve", "secret.test:%d:127.0.0.1" % H])
    for r, curl_ver, up_proto, path in ((res[0], "2", "2.0", "/h2run"),
                                        (res[1], "1.1", "1.1", "/h1run")):
        check_eq(r.get("rc"), 0, "curl exit: %r" % r)
        body, _, ver = r.get("stdout", "").rpartition("\n")
        check_eq(ver, curl_ver, "%s: curl's HTTP version (the sandbox's side)" % path)
        got = json.loads(body)
        check_eq((got["path"], got["proto"]), (path, up_proto), "%s: the upstream's view" % path)
        check_eq(got["auth_sha256"], want_auth, "%s: what the upstream received: the real "
                 "value" % path)


@rcase("run --http2, a sandbox that offers ALPN h2 only (as gRPC clients do): egressd offers "
       "the upstream h2 only; an upstream that speaks h2 is served over h2, one that speaks "
       "HTTP/1.1 only answers no_application_protocol and the sandbox gets that alert too "
       "(not an HTTP reply it cannot read)",
       skip=lambda: skip_reason() or (None if NODE else "node is not installed"))
def _(ctx):
    H2, H1 = h2echo_port(), h2echo_port("h1")
    req = "GET /%s HTTP/1.1\r\nHost: secret.test\r\nConnection: close\r\n\r\n"
    # an HTTP/1 line on the h2 connection: the relay ends it at once (no 10 s read)
    steps = [["tls", "secret.test", H2, "secret.test", req % "h2only", ["h2"]],
             ["tls", "secret.test", H1, "secret.test", req % "h1only", ["h2"]],
             ["tls", "secret.test", H1, "secret.test", req % "h1both", ["h2", "http/1.1"]]]
    r = Run(ctx, tool(steps), extra=["--http2", "--resolve", "secret.test:%d:127.0.0.1" % H2,
                                     "--resolve", "secret.test:%d:127.0.0.1" % H1])
    check_eq(r.wait(60), 0, "egressd run exit status")
    res = r.results()
    check_eq(len(res), 3, "results from the jail tool")
    check_eq((res[0].get("handshake"), res[0].get("alpn")), (True, "h2"),
             "h2 only to an h2 upstream: %r" % res[0])
    check("NO_APPLICATION_PROTOCOL" in res[1].get("error", "").upper().replace(" ", "_"),
          "h2 only to an HTTP/1.1-only upstream: the sandbox's error %r" % res[1])
    check_eq((res[2].get("alpn"), res[2].get("data", "")[:15]), ("http/1.1", "HTTP/1.1 200 OK"),
             "h2 and http/1.1 to the HTTP/1.1-only upstream: served (%r)" % res[2])
    log = [json.loads(l) for l in r._read(r.log).splitlines() if l.startswith("{")]
    ref = [v for v in log if v.get("event") == "refuse"]
    check(len(ref) == 1 and ref[0].get("reason") == "connect-failed" and
          ref[0].get("port") == H1 and 'ALPN "h2"' in ref[0].get("detail", ""),
          "one refuse event naming the sandbox's offer: %r" % ref)
    deny = [v for v in log if v.get("event") == "connect" and v.get("decision") == "deny"]
    check(len(deny) == 1 and deny[0].get("port") == H1, "one connect deny, to the "
          "HTTP/1.1-only upstream: %r" % deny)


GRPC_SERVER = """
import sys, grpc
from concurrent import futures

def auth(ctx):
    return dict(ctx.invocation_metadata()).get("authorization", "")

def say(req, ctx):
    print("seen", auth(ctx), flush=True)
    return b"pong " + auth(ctx).encode()  # echoes the value: egressd redacts it

def fail(req, ctx):
    ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "bad token " + auth(ctx))

srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", {
    "Say": grpc.unary_unary_rpc_method_handler(say),
    "Fail": grpc.unary_unary_rpc_method_handler(fail)}),))
creds = grpc.ssl_server_credentials([(open(sys.argv[2], "rb").read(), open(sys.argv[1], "rb").read())])
print("port", srv.add_secure_port("127.0.0.1:0", creds), flush=True)
srv.start()
srv.wait_for_termination()
"""

# inside the jail: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (egressd run's) is the only trust
GRPC_CLIENT = """
import os, sys, grpc
ch = grpc.secure_channel(sys.argv[1], grpc.ssl_channel_credentials())
md = [("authorization", "Bearer " + os.environ["SKEY"])]
try:
    print("say", ch.unary_unary("/echo.Echo/Say")(b"ping", timeout=20, metadata=md).decode())
except grpc.RpcError as e:
    print("error", e.code().name, e.details())
    sys.exit(3)
try:
    ch.unary_unary("/echo.Echo/Fail")(b"x", timeout=20, metadata=md)
    print("fail did-not-fail")
except grpc.RpcError as e:
    print("fail", e.code().name, e.details())
"""


def no_grpc():
    if subprocess.run([PY, "-c", "import grpc"], capture_output=True).returncode:
        return "python3-grpcio (Debian) not installed"
    return None


@rcase("python grpcio inside, run --http2: a gRPC server (grpcio, TLS) at a secret's host is "
       "served over HTTP/2 on both sides (transparent): the metadata's placeholder injected, "
       "the unary reply echoing the value and an error status whose grpc-message echoes it "
       "reach the client redacted", skip=lambda: skip_reason() or no_grpc(), timeout=90)
def _(ctx):
    srv_py = os.path.join(ctx.tmp, "grpc_srv.py")
    with open(srv_py, "w") as f:
        f.write(GRPC_SERVER)
    srv = spawn([PY, srv_py, W["pki"]["cert"], W["pki"]["key"]], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
    ctx.procs.append(srv)
    line = srv.stdout.readline().decode().split()
    check(line[:1] == ["port"], "the gRPC server started: %r" % line)
    G = int(line[1])
    steps = [["exec", PY, "-c", GRPC_CLIENT, "secret.test:%d" % G]]
    res = run_tool(ctx, steps, extra=["--http2", "--resolve", "secret.test:%d:127.0.0.1" % G])
    out = res[0].get("stdout", "")
    ctx.note("grpc client -> %r\n%s\n%s" % (res[0].get("rc"), out, res[0].get("stderr", "")[-600:]))
    check_eq(res[0].get("rc"), 0, "the gRPC client's exit")
    lines = dict(l.split(" ", 1) for l in out.splitlines() if " " in l)
    ph = re.fullmatch(r"pong Bearer (%s)" % PH_RE, lines.get("say", ""))
    check(ph, "the unary reply echoing the value: a placeholder (redacted): %r" % out)
    check_eq(srv.stdout.readline().decode().strip(), "seen Bearer " + REAL["SKEY"],
             "the server got the real value (injected)")
    check_eq(lines.get("fail"), "PERMISSION_DENIED bad token Bearer " + ph.group(1),
             "the error status; its grpc-message echoing the value: the placeholder")


@rcase("curl inside: allowed OK, denied refused (DNS and SNI), secret injected, program sees "
       "only the placeholder")
def _(ctx):
    P, tok = W["P"], token()
    cu = ["curl", "-q", "-sS", "--max-time", "15", "-w", "\\n%{http_code}"]

    def sh(s):
        return ["exec", "sh", "-c", s]
    steps = [["exec"] + cu + ["https://allowed.test:%d/curl-allowed-%s" % (P, tok)],
             ["exec"] + cu + ["https://denied.test:%d/curl-denied-dns" % P],
             ["exec"] + cu + ["--resolve", "denied.test:%d:%s" % (P, ELSEWHERE),
                              "https://denied.test:%d/curl-denied-%s" % (P, tok)],
             sh(" ".join(shlex.quote(x) for x in cu) + " -H \"Authorization: Bearer $SKEY\" -H \"X-B: $BKEY\" "
                "https://secret.test:%d/curl-secret-%s" % (P, tok))]
    res = run_tool(ctx, steps)

    def conv(x):
        if x.get("rc") != 0:
            return {"error": "curl exit %s: %s" % (x.get("rc"), x.get("stderr", "").strip())}
        body, _, code = x["stdout"].rpartition("\n")
        return {"status": int(code), "body": body}
    conv_res = [conv(x) for x in res]
    check_eq(res[1].get("rc"), 6, "curl exit for denied.test by DNS (6 = could not resolve)")
    check(res[2].get("rc") in (35, 56), "curl exit for denied.test by SNI: %r (want a TLS "
          "failure, 35 or 56)" % res[2])
    check_client_results(ctx, "curl", conv_res, tok)


@rcase("python urllib/ssl inside: allowed OK, denied refused (DNS and SNI), secret injected")
def _(ctx):
    P, tok = W["P"], token()
    steps = [["urllib", "https://allowed.test:%d/py-allowed-%s" % (P, tok)],
             ["urllib", "https://denied.test:%d/py-denied-dns" % P],
             ["tls", ELSEWHERE, P, "denied.test",
              "GET /py-denied-%s HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n" % tok],
             ["urllib", "https://secret.test:%d/py-secret-%s" % (P, tok),
              {"Authorization": "Bearer {{SKEY}}", "X-B": "{{BKEY}}"}]]
    res = run_tool(ctx, steps)
    check("gaierror" in res[1].get("error", "") or "Name or service" in res[1].get("error", ""),
          "urllib to denied.test: %r (want a name resolution error)" % res[1])
    check(res[2].get("error", "").startswith("handshake"),
          "ssl to denied.test (SNI, address %s): %r (want a handshake failure)" % (ELSEWHERE, res[2]))
    check_client_results(ctx, "py", res, tok)


@rcase("node https inside: allowed OK, denied refused (DNS and SNI), secret injected",
       skip=lambda: skip_reason() or (None if NODE else "node is not installed"))
def _(ctx):
    P, tok = W["P"], token()

    def node(spec):
        return ["exec", NODE, W["node_js"], json.dumps(spec)]
    steps = [node({"url": "https://allowed.test:%d/node-allowed-%s" % (P, tok)}),
             node({"url": "https://denied.test:%d/node-denied-dns" % P}),
             node({"url": "https://denied.test:%d/node-denied-%s" % (P, tok), "connect": ELSEWHERE,
                   "servername": "denied.test"}),
             node({"url": "https://secret.test:%d/node-secret-%s" % (P, tok),
                   "headers": {"Authorization": "Bearer {{SKEY}}", "X-B": "{{BKEY}}"}})]
    res = run_tool(ctx, steps)
    conv = []
    for x in res:
        try:
            conv.append(json.loads(x.get("stdout", "").strip().splitlines()[-1]))
        except (ValueError, IndexError):
            conv.append({"error": "node: %r" % x})
    check("ENOTFOUND" in conv[1].get("error", "") or "EAI_AGAIN" in conv[1].get("error", ""),
          "node denied.test by DNS: %r" % conv[1])
    check("error" in conv[2], "node denied.test by SNI: %r" % conv[2])
    check_client_results(ctx, "node", conv, tok)


# --------------------------------------------------------------------------
# transparent decisions on names: synthetic address binding, plain HTTP


@rcase("synthetic address is bound to its name: SNI or Host naming another host is refused")
def _(ctx):
    P, Q, tok = W["P"], W["Q"], token()
    get_a = "A=$(getent ahostsv4 allowed.test | awk 'NR==1{print $1}'); echo addr=$A; "
    cu = "curl -q -sS --max-time 15 -o /dev/null -w 'code=%{http_code}\\n' "
    script = (get_a +
              cu + "--resolve allowed.test:%d:$A https://allowed.test:%d/bind-ok-%s; echo rc=$?; " % (P, P, tok) +
              cu + "--resolve denied.test:%d:$A https://denied.test:%d/bind-denied-%s; echo rc=$?; " % (P, P, tok) +
              cu + "--resolve secret.test:%d:$A https://secret.test:%d/bind-secret-%s; echo rc=$?; " % (P, P, tok) +
              cu + "-H 'Host: denied.test:%d' http://$A:%d/bind-http-%s; echo rc=$?" % (Q, Q, tok))
    res = run_tool(ctx, [["exec", "sh", "-c", script]])[0]
    out = res.get("stdout", "")
    ctx.note("inside:\n" + out + res.get("stderr", ""))
    m = re.search(r"addr=(\S+)", out)
    check(m and synthetic(m.group(1)), "allowed.test inside resolved to %r" % out)
    rcs = re.findall(r"code=(\d+)\s+rc=(\d+)", out)
    check_eq(len(rcs), 4, "four curl results")
    check_eq(rcs[0], ("200", "0"), "allowed.test on its own synthetic address")
    check(rcs[1][1] != "0", "SNI denied.test on allowed.test's address was not refused")
    check(rcs[2][1] != "0", "SNI secret.test on allowed.test's address was not refused")
    check(rcs[3][0] in ("403", "421"), "Host denied.test on allowed.test's address: HTTP %s "
          "(want a 403 or 421 refusal)" % rcs[3][0])
    for t in ("bind-denied", "bind-secret"):
        check(not seen(W["tls"], t), "%s reached the upstream" % t)
    check(not seen(W["plain"], "bind-http"), "bind-http reached the upstream")


@rcase("plain HTTP inside: Host allowed -> forwarded; Host denied -> 403 with X-Egressd-Reason")
def _(ctx):
    Q, tok = W["Q"], token()
    steps = [["urllib", "http://allowed.test:%d/plain-ok-%s" % (Q, tok)],
             ["tcp", ELSEWHERE, Q, "GET /plain-denied-%s HTTP/1.1\r\nHost: denied.test:%d\r\n"
              "Connection: close\r\n\r\n" % (tok, Q), 10]]
    res = run_tool(ctx, steps)
    check_eq(res[0].get("status"), 200, "allowed.test over HTTP (%r)" % res[0])
    s = seen(W["plain"], "plain-ok-" + tok)
    check(s and hdr(s[0], "Host") in ("allowed.test:%d" % Q, "allowed.test"), "upstream: %r" % s)
    data = res[1].get("data", "")
    check(re.match(r"HTTP/1\.[01] 403", data), "denied.test over HTTP: %r" % data[:300])
    check(re.search(r"(?im)^X-Egressd-Reason: \S+", data), "no X-Egressd-Reason: %r" % data[:300])
    check(not seen(W["plain"], "plain-denied"), "the denied request reached the upstream")


# --------------------------------------------------------------------------
# no name: IP patterns decide


@rcase("TLS without SNI: to an IP:port on the list -> tunnelled; not on the list -> refused")
def _(ctx):
    tok = token()
    req = "GET /nosni-%s HTTP/1.1\r\nHost: " + PUB + "\r\nConnection: close\r\n\r\n"
    steps = [["tls", PUB, W["ip_tls"].port, None, req % tok],
             ["tls", PUB, W["ip_tls_no"].port, None, req % ("no-" + tok)]]
    res = run_tool(ctx, steps)
    check(res[0].get("handshake") and " 200 " in res[0].get("data", "")[:20],
          "no-SNI TLS to the listed %s:%d: %r" % (PUB, W["ip_tls"].port, res[0]))
    check(seen(W["ip_tls"], "nosni-" + tok), "the upstream did not get the request")
    check(None in W["ip_tls"].snis, "the upstream saw an SNI: %r" % W["ip_tls"].snis)
    check(not res[1].get("data"), "no-SNI TLS to the unlisted port got data: %r" % res[1])
    check(not W["ip_tls_no"].handshakes and not W["ip_tls_no"].requests,
          "the unlisted upstream was reached")


@rcase("raw TCP (client speaks first, server speaks first) to a listed IP:port works", timeout=90)
def _(ctx):
    tok = token()
    steps = [["tcp", PUB, W["echo"].port, "ping-%s\n" % tok, 15],
             ["tcp", PUB, W["banner"].port, None, 40]]
    res = run_tool(ctx, steps, timeout=80)
    check_eq(res[0].get("data"), "ping-%s\n" % tok, "echo through the jail (%r)" % res[0])
    check_eq(res[1].get("data", "").encode(), W["banner"].banner,
             "server-speaks-first banner through the jail (%r)" % res[1])


@rcase("raw TCP to an IP:port not on the list is refused (nothing reaches the server)")
def _(ctx):
    steps = [["tcp", PUB, W["echo_no"].port, "ping-no\n", 8],
             ["tcp", PUB, W["banner_no"].port, None, 8]]
    res = run_tool(ctx, steps)
    check(not res[0].get("data"), "echo to an unlisted port answered: %r" % res[0])
    check(not res[1].get("data"), "banner from an unlisted port: %r" % res[1])
    check_eq((W["echo_no"].connections, W["banner_no"].connections), (0, 0),
             "connections the unlisted servers accepted")


@rcase("UDP other than DNS does not leave the jail (to the host end, to %s)" % PUB)
def _(ctx):
    tok = token()
    U = W["udp"].port
    steps = [["udp", [[PUB, U], ["$NAMESERVER", U], ["10.200.0.1", U]], "udp-" + tok],
             ["dns", [["allowed.test", 1]]], ["sleep", 1]]
    res = run_tool(ctx, steps)
    check(all(x[2] == "sent" for x in res[0]["sent"]), "sendto failed inside: %r" % res[0])
    check(res[1]["queries"][0].get("rcode") == 0, "DNS (the control) failed: %r" % res[1])
    time.sleep(0.5)
    got = [g for g in W["udp"].got if tok.encode() in g[0]]
    check(not got, "UDP from the jail arrived: %r" % got)

# --------------------------------------------------------------------------
# --report and --learn (issue 18): what the command tried to reach

REG_PINS = ("a.reg.test", "b.reg.test", "bad.reg.test", "x.reg.test", "y.reg.test", "solo.test")


def report_args(log, extra=()):
    """policy_args plus pins for the report cases' names (to the TLS upstream)
    and priv.test, which resolves to a private address."""
    a = policy_args(log)
    for n in REG_PINS:
        a += ["--resolve", "%s:%d:127.0.0.1" % (n, W["P"])]
    return a + ["--resolve", "priv.test:%d:10.0.0.1" % W["P"]] + list(extra)


def next_log(ctx):
    """The log path the next Run of ctx reads (Run.log), for args built by hand."""
    return os.path.join(ctx.tmp, "run%d.log" % len(getattr(ctx, "runs", [])))


def tls_get(host, port, sni, tok):
    return ["tls", host, port, sni, "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % (tok, sni or host)]


def rows_by(rep):
    return {(d["host"], d["port"], d["protocol"]): d for d in rep["destinations"]}


def log_denies(r):
    out = []
    for l in r._read(r.log).splitlines():
        try:
            e = json.loads(l)
        except ValueError:
            continue
        if e.get("decision") == "deny" or (e.get("event") == "dns" and e.get("rcode") == "NXDOMAIN"):
            out.append(e)
    return out


@rcase("run --report=FILE --report-format json: allowed, intercepted with a secret, plain "
       "HTTP, *. rule, denyNet, private address, IP allowed and refused, DNS-only lookups")
def _(ctx):
    P, Q, tok = W["P"], W["Q"], token()
    out = os.path.join(ctx.tmp, "report.json")
    log = next_log(ctx)
    extra = ["--allow-net", "*.reg.test,priv.test", "--deny-net", "bad.reg.test:%d" % P,
             "--report=" + out, "--report-format", "json"]
    steps = [["urllib", "https://allowed.test:%d/r-%s" % (P, tok)],
             ["urllib", "https://secret.test:%d/r-%s" % (P, tok), {"X-Key": "{{SKEY}}"}],
             ["urllib", "http://allowed.test:%d/r-%s" % (Q, tok)],
             tls_get("a.reg.test", P, "a.reg.test", tok),
             tls_get("b.reg.test", P, "b.reg.test", tok),
             tls_get("bad.reg.test", P, "bad.reg.test", tok),
             tls_get("priv.test", P, "priv.test", tok),
             tls_get(PUB, W["ip_tls"].port, None, tok),
             ["tcp", PUB, W["echo_no"].port, "hello\n", 2],
             ["dns", [["exfil-%s.test" % tok, 1], ["c.reg.test", 1]]]]
    res = run_tool(ctx, steps, args=report_args(log, extra))
    check(res[0].get("status") == 200 and res[1].get("status") == 200 and
          res[2].get("status") == 200, "the allowed requests: %r" % res[:3])
    with open(out) as f:
        raw = f.read()
    rep = json.loads(raw)
    ctx.note("report: %s" % raw)
    check(not [k for k, v in REAL.items() if v in raw], "a secret's value in the report")
    rows = rows_by(rep)

    def row(host, port, proto, **want):
        r = rows.get((host, port, proto))
        check(r is not None, "no row %s:%s %s in %r" % (host, port, proto, sorted(rows)))
        for k, v in want.items():
            check_eq(r[k], v, "%s:%s %s" % (host, port, k))
        return r
    r = row("allowed.test", P, "tunnel", decision="allow", rule="allowed.test", connections=1)
    check(r["bytes_up"] > 100 and r["bytes_down"] > 100, "tunnel bytes counted: %r" % r)
    r = row("secret.test", P, "intercepted", decision="allow", connections=1, requests=1)
    check("SKEY" in r["secrets"], "the injected secret's name: %r" % r)
    row("allowed.test", Q, "http", decision="allow", connections=1, requests=1)
    row("a.reg.test", P, "tunnel", decision="allow", rule="*.reg.test")
    row("b.reg.test", P, "tunnel", decision="allow", rule="*.reg.test")
    row("bad.reg.test", P, "tunnel", decision="deny", reason="denied")
    row("priv.test", P, "tunnel", decision="deny", reason="private-address")
    row(PUB, W["ip_tls"].port, "tunnel", decision="allow", connections=1)
    row(PUB, W["echo_no"].port, "tunnel", decision="deny", reason="not-allowed")
    dec = [d["decision"] for d in rep["destinations"]]
    check_eq(dec, sorted(dec, key=["deny", "learned", "allow", "other"].index),
             "refusals first, then allowed")
    dns = {d["name"]: d for d in rep["dns_only"]}
    check_eq(sorted(dns), sorted(["exfil-%s.test" % tok, "c.reg.test"]),
             "DNS-only names (looked up, never connected to)")
    check_eq(dns["exfil-%s.test" % tok]["answer"], "NXDOMAIN", "a refused lookup")
    check_eq(dns["c.reg.test"]["answer"], "answered", "an answered lookup")
    check_eq(rep["overflow"], 0, "nothing past the limit")
    denies = log_denies(ctx.runs[-1])
    check(len(denies) >= 4, "the refusals are in the run's log too: %r" % denies)


@rcase("run --report (table on stderr): written when the command is killed by a signal")
def _(ctx):
    P, tok = W["P"], token()
    log = next_log(ctx)
    cmd = ["sh", "-c", "%s %s --jail-tool '%s'; kill -KILL $$" % (
        PY, TOOL, json.dumps([["urllib", "https://allowed.test:%d/k-%s" % (P, tok)]]))]
    r = Run(ctx, cmd, args=report_args(log, ["--report"]))
    check_eq(r.wait(), 137, "egressd run exit status (the command died of SIGKILL)")
    err = r.stderr()
    check(re.search(r"^egressd report: 1 destinations \(0 refused, 0 learned\)", err, re.M),
          "the report's summary line on stderr: %r" % err[-1500:])
    check(re.search(r"^allow\s+allowed\.test:%d\s+tunnel\s+1\s+0\s+\d+\s+\d+\s+allowed\.test\s" % P,
                    err, re.M), "the allowed row: %r" % err[-1500:])


@rcase("run --report: SIGUSR1 writes the report so far while the command sleeps; after SIGTERM "
       "to egressd run it is written again")
def _(ctx):
    P, tok, mk = W["P"], token(), sleep_marker()
    log = next_log(ctx)
    cmd = ["sh", "-c", "%s %s --jail-tool '%s'; echo child=$$; exec sleep %s" % (
        PY, TOOL, json.dumps([["urllib", "https://allowed.test:%d/t-%s" % (P, tok)]]), mk)]
    out = os.path.join(ctx.tmp, "report-term.txt")
    r = Run(ctx, cmd, args=report_args(log, ["--report=" + out]))
    check(wait_started(r, mk), "the command did not start (egressd run status %s)" % r.proc.poll())
    # SIGUSR1: the report so far, while the command still runs
    r.proc.send_signal(signal.SIGUSR1)
    deadline = time.time() + 10
    while time.time() < deadline and not (os.path.exists(out) and "allowed.test" in open(out).read()):
        time.sleep(0.05)
    check(os.path.exists(out) and "allowed.test" in open(out).read(),
          "no report after SIGUSR1 while the command runs")
    check(r.proc.poll() is None and sleeping(mk), "SIGUSR1 ended the run or the command")
    os.unlink(out)
    r.proc.send_signal(signal.SIGTERM)
    check_eq(r.wait(15), 143, "egressd run exit status")
    with open(out) as f:
        text = f.read()
    check(re.search(r"^allow\s+allowed\.test:%d\s+tunnel\s+1\s" % P, text, re.M),
          "the allowed row in the report file: %r" % text)


@rcase("run --report-max 2: past the limit, an _other row and one warning")
def _(ctx):
    P, tok = W["P"], token()
    out = os.path.join(ctx.tmp, "report-max.json")
    log = next_log(ctx)
    steps = [tls_get(n, P, n, tok) for n in ("a.reg.test", "b.reg.test", "x.reg.test",
                                                "y.reg.test")]
    run_tool(ctx, steps, args=report_args(log, ["--allow-net", "*.reg.test", "--report-max", "2",
                                                "--report=" + out, "--report-format", "json"]))
    with open(out) as f:
        rep = json.load(f)
    hosts = [d["host"] for d in rep["destinations"]]
    check_eq(len(hosts), 3, "two destinations and _other: %r" % hosts)
    check_eq(hosts[-1], "_other", "the last row")
    check_eq(rep["destinations"][-1]["connections"], 2, "connections counted in _other")
    check(rep["overflow"] >= 2, "connections and lookups counted in _other: %r" % rep)
    check(rep["destinations"][-1]["queries"] >= 2, "lookups of names past the limit counted")
    err = ctx.runs[-1].stderr()
    check_eq(err.count("more than 2 destinations"), 1, "one warning on stderr (%r)" % err[-800:])


LEARN_LIT = "sk-LITERAL-" + _RND[:16]  # an inline "value": never in a learned file


@rcase("run --learn: the learned policy loads, keeps the -c keys (no secret value), "
       "re-running under it refuses nothing, a new destination is refused")
def _(ctx):
    P, Q, tok = W["P"], W["Q"], token()
    pol = os.path.join(ctx.tmp, "learn-base.json")
    learned = os.path.join(ctx.tmp, "learned.json")
    with open(pol, "w") as f:
        json.dump({"allowNet": ["allowed.test"], "denyNet": ["bad.reg.test"],
                   "secrets": {"BKEY": {"hosts": ["secret.test"], "valueFromEnv": "SRC_B"},
                               "LIT": {"hosts": ["secret.test"], "value": LEARN_LIT}}}, f)
    common = ["--secret", "SKEY=secret.test", "--state-dir", W["state"],
              "--upstream-ca", W["pki"]["ca"], "--allow-private", "127.0.0.0/8",
              "--allow-private", "%s/32" % PUB, "--dns", "127.0.0.1:%d" % W["dns"].port]
    for n in ("allowed.test", "secret.test") + REG_PINS:
        common += ["--resolve", "%s:%d:127.0.0.1" % (n, P)]
    common += ["--resolve", "allowed.test:%d:127.0.0.1" % Q,
               "--resolve", "priv.test:%d:10.0.0.1" % P]
    steps = [["urllib", "https://allowed.test:%d/l-%s" % (P, tok)],
             ["urllib", "http://allowed.test:%d/l-%s" % (Q, tok)],
             ["urllib", "https://secret.test:%d/l-%s" % (P, tok), {"X-Key": "{{SKEY}}"}],
             tls_get("x.reg.test", P, "x.reg.test", tok),
             tls_get("y.reg.test", P, "y.reg.test", tok),
             tls_get("solo.test", P, "solo.test", tok),
             tls_get(PUB, W["ip_tls_no"].port, None, tok)]

    def ok_results(res, what):
        for i in (0, 1, 2):
            check(res[i].get("status") == 200, "%s: step %d: %r" % (what, i, res[i]))
        for i in (3, 4, 5, 6):
            check(res[i].get("handshake") and "200" in res[i].get("data", "")[:20],
                  "%s: step %d: %r" % (what, i, res[i]))
    # 1. learn: nothing refused for allowNet; priv.test is still refused
    log1 = next_log(ctx)
    res = run_tool(ctx, steps + [tls_get("priv.test", P, "priv.test", tok)],
                   args=["-c", pol, "--learn", learned, "--log", log1] + common)
    ok_results(res, "learning")
    check("handshake" not in res[7] or not res[7].get("data"),
          "learning opened a private address: %r" % res[7])
    check([e for e in log_denies(ctx.runs[-1]) if e.get("reason") == "private-address"],
          "the private address is refused while learning")
    with open(learned) as f:
        text = f.read()
    ctx.note("learned policy:\n" + text)
    check(LEARN_LIT not in text and not [v for v in REAL.values() if v in text],
          "a secret value in the learned policy")
    doc = json.loads(text)
    check_eq(sorted(doc), ["allowNet", "denyNet", "secrets"], "the keys")
    check_eq(doc["denyNet"], ["bad.reg.test"], "denyNet kept")
    check_eq(sorted(doc["secrets"]), ["BKEY"], "secrets kept by reference, inline value left out")
    # the -c file's pattern first, then one per destination used (ports kept:
    # the upstreams are not on 443/80), two names under reg.test: a wildcard
    want = ["allowed.test"] + sorted(["allowed.test:%d" % P, "allowed.test:%d" % Q,
                                      "secret.test:%d" % P, "*.reg.test:%d" % P,
                                      "solo.test:%d" % P, "%s:%d" % (PUB, W["ip_tls_no"].port)])
    doc["allowNet"][1:] = sorted(doc["allowNet"][1:])
    check_eq(doc["allowNet"], want, "allowNet")
    check("priv.test" not in text, "a refused destination in the learned policy")
    r = run_egressd(["check", "-c", learned], timeout=30)
    check_eq((r.returncode, r.stdout.strip()), (0, "policy ok"), "egressd check -c LEARNED")
    # 2. under the learned policy: the same command, nothing refused
    log2 = next_log(ctx)
    res = run_tool(ctx, steps, args=["-c", learned, "--log", log2] + common)
    ok_results(res, "under the learned policy")
    check_eq(log_denies(ctx.runs[-1]), [], "refusals under the learned policy")
    # 3. a destination not used before is refused
    log3 = next_log(ctx)
    res = run_tool(ctx, [tls_get(PUB, W["echo"].port, None, tok),
                         ["dns", [["new-%s.test" % tok, 1]]]],
                   args=["-c", learned, "--log", log3] + common)
    denies = log_denies(ctx.runs[-1])
    check([e for e in denies if e.get("port") == W["echo"].port and
           e.get("reason") == "not-allowed"], "a new IP:port refused: %r" % denies)
    check([e for e in denies if e.get("name") == "new-%s.test" % tok],
          "a new name refused by the jail's DNS: %r" % denies)



def main():
    if skip_reason() is None:
        try:
            setup()
        except Exception as e:
            W["setup_error"] = "%s: %s" % (type(e).__name__, e)
    rc = suite.run()
    for key in ("h2echo", "h2echoh1"):
        if W.get(key):
            W[key].kill()
    if NETNS:
        purge(jail_traces(ALL_RUN_PIDS))
    return rc


if __name__ == "__main__":
    sys.exit(main())
