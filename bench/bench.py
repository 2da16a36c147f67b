#!/usr/bin/env python3
"""bench.py -- runs the egressd benchmark on loopback (called by bench/run.sh).

Starts a TLS upstream (nginx), then each proxy in turn (egressd tunnel, egressd
intercepted, squid tunnel, squid ssl-bump, mitmdump, tinyproxy), drives
build/bench/loadgen through it, reads the proxy's CPU and RSS from /proc, and writes
bench/results/latest.md, bench/results/latest.json and bench/results/chart.png.
The HTTP/2 rows (h2-direct, h2-egressd, h2-egressd-h1, h2-mitmdump, h2-h2load) drive
build/bench/h2gen (one connection, 64 streams) against nginx's HTTP/2 port; they have
their own table.

Environment: BENCH_QUICK=1 (1 round of 2 s), BENCH_DURATION, BENCH_ROUNDS, BENCH_IDLE
(idle tunnels, default 10000, capped by the fd limit; 0 skips the idle cell),
BENCH_ONLY=row,row (subset; `direct` runs with any HTTP/1.1 row, `h2-direct` with any
HTTP/2 row), BENCH_WORKLOADS=ka1,ka64,new8,bulk,upload (subset),
BENCH_SECRETS=N (secrets approved for the intercepted host, default 1; the first is injected).
bench/ab.py reuses this module to compare two egressd binaries interleaved.
"""
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PEERS = os.path.join(BENCH, "peers")
RESULTS = os.path.join(BENCH, "results")
EGRESSD = os.path.join(ROOT, "build", "egressd")
LOADGEN = os.path.join(ROOT, "build", "bench", "loadgen")
H2GEN = os.path.join(ROOT, "build", "bench", "h2gen")

QUICK = os.environ.get("BENCH_QUICK") == "1"
DURATION = float(os.environ.get("BENCH_DURATION", "2" if QUICK else "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
WARMUP = 0.5
THREADS = 2
HOST = "api.bench.test"
SECRET_NAME = "BENCH_KEY"
SECRET = "sk-bench-REAL-" + os.urandom(12).hex()
SECRETS = int(os.environ.get("BENCH_SECRETS", "1"))
CLK = os.sysconf("SC_CLK_TCK")

WORKLOADS = [  # key, title, loadgen args
    ("ka1", "keep-alive GET /, c=1", ["--mode", "ka", "-c", "1"]),
    ("ka64", "keep-alive GET /, c=64", ["--mode", "ka", "-c", "64"]),
    ("new8", "new connection + full handshake per request, c=8", ["--mode", "new", "-c", "8"]),
    ("bulk", "bulk download of 64 MiB /big, one connection", ["--mode", "bulk", "-c", "1", "--path", "/big"]),
    ("upload", "bulk upload: PUT 64 MiB to /up (nginx answers at once and discards the body), one connection",
     ["--mode", "upload", "-c", "1", "--path", "/up"]),
]
BULK = ("bulk", "upload")  # workloads measured in MB/s
H2_STREAMS = 64
# the HTTP/2 table's one workload: (key, title, generator, its arguments)
H2_WORKLOAD = ("h2m64", "GET /, %d concurrent streams on one connection" % H2_STREAMS, "h2gen",
               ["-m", str(H2_STREAMS)])
# the HTTP/1.1 comparison in the same table: loadgen's keep-alive c=64 (64 connections)
H1_WORKLOAD = ("ka64", "keep-alive GET /, c=64 (HTTP/1.1)", "loadgen", ["--mode", "ka", "-c", "64"])

KNOBS = ("BENCH_QUICK", "BENCH_DURATION", "BENCH_ROUNDS", "BENCH_IDLE", "BENCH_ONLY", "BENCH_WORKLOADS",
         "BENCH_SECRETS")
procs = []
tmp = None


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what, timeout=20):
    t = time.time() + timeout
    while time.time() < t:
        if proc.poll() is not None:
            raise RuntimeError("%s exited (status %s); see %s" % (what, proc.returncode, tmp))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d" % (what, port))


def start(cmd, name, env=None, **kw):
    out = open(os.path.join(tmp, name + ".out"), "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True, **kw)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in procs:
        procs.remove(p)


def tree(pid):
    """pid and its descendants (squid's kids, certgen helpers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_s(pid):
    """utime+stime of pid's tree, seconds."""
    t = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return t / CLK


def rss_kib(pid):
    t = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        t += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return t


def sh(cmd):
    return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, cwd=tmp,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "2", "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", name + ".key",
            "-out", name + ".pem")


def fill(template, out, **kv):
    with open(os.path.join(PEERS, template)) as f:
        s = f.read()
    for k, v in kv.items():
        s = s.replace("@%s@" % k, str(v))
    path = os.path.join(tmp, out)
    with open(path, "w") as f:
        f.write(s)
    return path


# ---------------------------------------------------------------- the proxies

class Row:
    """One line of the table: how to start the proxy and how loadgen reaches the upstream."""

    def __init__(self, key, title):
        self.key, self.title = key, title
        self.proc = None
        self.pid = None          # root of the process tree measured (None: direct)
        self.cafile = None
        self.lg = []             # loadgen arguments for the path to the upstream
        self.inject = False      # a secret must reach the upstream (checked on /check)
        self.cmd = ""            # the command line, for the report
        self.missing = None      # "not installed" etc.
        self.uport = None        # the upstream port (None: nginx's HTTP/1.1 one)
        self.h2 = False          # an HTTP/2 table row (its workload is in self.workloads)
        self.workloads = None    # (key, title, generator, args) list, or None: WORKLOADS

    def start(self):
        pass

    def stop(self):
        if self.proc:
            stop(self.proc)
            self.proc = None


def egressd_row(key, title, intercept, binary=None, http2=False, uport=None):
    """http2: egressd gets --http2; uport: the nginx port to reach (default: HTTP/1.1's)."""
    r = Row(key, title)
    exe = binary or EGRESSD
    r.uport = uport

    def start_():
        port = free_port()
        state = os.path.join(tmp, "state-" + key)
        args = ["serve", "--listen", "127.0.0.1:%d" % port, "--allow-net", HOST,
                "--resolve", "%s:%d:127.0.0.1" % (HOST, upstream_port(r)), "--allow-private", "127.0.0.0/8",
                "--dns", "127.0.0.1:9", "--max-connections", "30000", "--state-dir", state]
        if http2:
            args.append("--http2")
        env = dict(os.environ)
        if intercept:
            args += ["--secret", "%s=%s" % (SECRET_NAME, HOST), "--upstream-ca", os.path.join(tmp, "ca.pem")]
            env[SECRET_NAME] = SECRET
            for i in range(1, SECRETS):  # more secrets for the host: more for the redactor to look for
                args += ["--secret", "%s_%d=%s" % (SECRET_NAME, i, HOST)]
                env["%s_%d" % (SECRET_NAME, i)] = "sk-extra-%d-%s" % (i, os.urandom(12).hex())
        r.cmd = "%s=<secret>%s %s %s" % (SECRET_NAME, "".join(" %s_%d=<secret>" % (SECRET_NAME, i)
                                                            for i in range(1, SECRETS)),
                                         exe, " ".join(shlex.quote(a) for a in args)) \
            if intercept else "%s %s" % (exe, " ".join(shlex.quote(a) for a in args))
        r.proc = start([exe] + args, "egressd-" + key, env=env)
        wait_port(port, r.proc, "egressd")
        r.pid = r.proc.pid
        r.lg = ["--proxy", "127.0.0.1:%d" % port]
        if intercept:
            r.cafile = os.path.join(state, "ca.crt")
            envout = subprocess.run([exe, "env"] + args[3:], env=env, capture_output=True,
                                    text=True, check=True).stdout
            ph = [l.split("=", 1)[1] for l in envout.splitlines() if l.startswith(SECRET_NAME + "=")][0]
            r.placeholder = ph
            r.inject = True
        else:
            r.cafile = os.path.join(tmp, "ca.pem")
    r.start = start_
    return r


def squid_row(key, title, bump):
    r = Row(key, title)
    if not shutil.which("squid") or not os.path.exists("/usr/lib/squid/security_file_certgen"):
        r.missing = "not installed (squid-openssl)"
        return r

    def start_():
        port = free_port()
        d = os.path.join(tmp, "squid-" + key)
        os.makedirs(d)
        shutil.copy(os.path.join(tmp, "ca.pem"), d)
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("127.0.0.1 %s\n" % HOST)
        conf_name = "squid-bump.conf" if bump else "squid-tunnel.conf"
        if bump:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                            "-subj", "/CN=squid bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
                            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                            "-keyout", "k.pem", "-out", "squid-ca.crt"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(d, "squid-ca.pem"), "w") as f:
                f.write(open(os.path.join(d, "squid-ca.crt")).read() + open(os.path.join(d, "k.pem")).read())
            subprocess.run(["/usr/lib/squid/security_file_certgen", "-c", "-s",
                            os.path.join(d, "squid-ssl_db"), "-M", "16MB"], check=True,
                           stdout=subprocess.DEVNULL)
        conf = fill(conf_name, os.path.join(d, "squid.conf"), DIR=d, PORT=port, SECRET=SECRET)
        subprocess.run(["chown", "-R", "proxy:proxy", d], check=False)
        r.cmd = "squid --foreground -f bench/peers/%s  (@DIR@, @PORT@, @SECRET@ filled in)" % conf_name
        r.proc = start(["squid", "--foreground", "-f", conf], key)
        wait_port(port, r.proc, "squid")
        r.pid = r.proc.pid
        r.lg = ["--proxy", "127.0.0.1:%d" % port]
        r.cafile = os.path.join(d, "squid-ca.crt") if bump else os.path.join(tmp, "ca.pem")
        r.inject = bump
        r.placeholder = "egressd-ph-placeholder-for-squid"
    r.start = start_
    return r


def mitm_row(key="mitmdump", title="mitmdump + addon (intercepted, secret injected)", uport=None):
    r = Row(key, title)
    r.uport = uport
    if not shutil.which("mitmdump"):
        r.missing = "not installed"
        return r

    def start_():
        port = free_port()
        d = os.path.join(tmp, key)
        os.makedirs(d)
        ph = "egressd-ph-placeholder-for-mitm"
        env = dict(os.environ, BENCH_PLACEHOLDER=ph, BENCH_SECRET=SECRET)
        args = ["mitmdump", "-q", "--listen-host", "127.0.0.1", "-p", str(port), "--set", "confdir=" + d,
                "--set", "ssl_verify_upstream_trusted_ca=" + os.path.join(tmp, "ca.pem"),
                "--set", "stream_large_bodies=1m", "-s", os.path.join(PEERS, "mitm_inject.py")]
        r.cmd = "BENCH_PLACEHOLDER=... BENCH_SECRET=<secret> " + " ".join(shlex.quote(a) for a in args)
        r.proc = start(args, key, env=env)
        wait_port(port, r.proc, "mitmdump", timeout=60)
        r.pid = r.proc.pid
        # mitmdump and tinyproxy resolve with the system resolver, which knows nothing of
        # api.bench.test: CONNECT to the address, SNI and Host still name the host
        r.lg = ["--proxy", "127.0.0.1:%d" % port, "--connect-to", "127.0.0.1:%d" % upstream_port(r)]
        r.cafile = os.path.join(d, "mitmproxy-ca-cert.pem")
        r.inject = True
        r.placeholder = ph
    r.start = start_
    return r


def tinyproxy_row():
    r = Row("tinyproxy", "tinyproxy (tunnel)")
    if not shutil.which("tinyproxy"):
        r.missing = "not installed"
        return r

    def start_():
        port = free_port()
        d = os.path.join(tmp, "tinyproxy")
        os.makedirs(d)
        conf = fill("tinyproxy.conf", os.path.join(d, "tinyproxy.conf"), DIR=d, PORT=port)
        subprocess.run(["chown", "-R", "nobody:nogroup", d], check=False)
        r.cmd = "tinyproxy -d -c bench/peers/tinyproxy.conf  (@DIR@, @PORT@ filled in)"
        r.proc = start(["tinyproxy", "-d", "-c", conf], "tinyproxy")
        wait_port(port, r.proc, "tinyproxy")
        r.pid = r.proc.pid
        r.lg = ["--proxy", "127.0.0.1:%d" % port, "--connect-to", "127.0.0.1:%d" % UPORT]
        r.cafile = os.path.join(tmp, "ca.pem")
    r.start = start_
    return r


def direct_row(key="direct", title="direct (no proxy)", uport=None):
    r = Row(key, title)
    r.uport = uport

    def start_():
        r.lg = ["--addr", "127.0.0.1"]
        r.cafile = os.path.join(tmp, "ca.pem")
        r.cmd = "(%s straight to nginx)" % (r.workloads[0][2] if r.workloads else "loadgen")
    r.start = start_
    return r


def h2_rows():
    """The HTTP/2 table: nginx's HTTP/2 port, h2gen's 64 streams on one connection, and
    egressd's HTTP/1.1 interception at c=64 beside them (the per-request cost to compare)."""
    rows = [direct_row("h2-direct", "direct h2 (no proxy)", H2PORT),
            egressd_row("h2-egressd", "egressd --http2 intercepted h2 (secret injected)", True,
                        http2=True, uport=H2PORT),
            egressd_row("h2-egressd-h1", "egressd intercepted HTTP/1.1, c=64 connections (secret injected)",
                        True, uport=H2PORT),
            mitm_row("h2-mitmdump", "mitmdump + addon, h2 (secret injected)", H2PORT)]
    for r in rows:
        r.h2 = True
        r.workloads = [H1_WORKLOAD if r.key == "h2-egressd-h1" else H2_WORKLOAD]
    return rows


def h2load_row():
    """nghttp2's h2load straight to nginx, the same 64 streams on one connection: a check
    that h2gen is not what limits the direct row (h2load cannot go through a proxy)."""
    r = direct_row("h2-h2load", "direct h2, h2load instead of h2gen (calibration)", H2PORT)
    r.h2 = True
    r.workloads = [(H2_WORKLOAD[0], H2_WORKLOAD[1], "h2load", ["-m", str(H2_STREAMS)])]
    if not shutil.which("h2load"):
        r.missing = "not installed (nghttp2-client)"
    return r


# ---------------------------------------------------------------- measuring

def upstream_port(r):
    return r.uport or UPORT


def loadgen_base(r, gen="loadgen"):
    ph = getattr(r, "placeholder", "egressd-ph-00000000000000000000000000000000")
    auth = ["-H", "Authorization: Bearer " + ph]
    if gen == "h2gen":
        return [H2GEN, "--host", HOST, "--port", str(upstream_port(r)), "--cafile", r.cafile] + auth + r.lg
    return [LOADGEN, "--host", HOST, "--port", str(upstream_port(r)), "--cafile", r.cafile, "-t", str(THREADS)] + \
        auth + r.lg


def h2load_cmd(r, args):
    ph = "egressd-ph-00000000000000000000000000000000"
    return ["h2load", "-c", "1", "-t", "1", "-D", "%dms" % (DURATION * 1000), "--warm-up-time", "%dms" % (WARMUP * 1000),
            "--connect-to", "127.0.0.1:%d" % upstream_port(r), "-H", "authorization: Bearer " + ph] + args + \
        ["https://%s:%d/" % (HOST, upstream_port(r))]


def h2load_result(out):
    """h2load's text summary as loadgen's fields (it gives no percentiles: None)."""
    res = {"p50_ms": None, "p99_ms": None, "p999_ms": None, "mb_s": 0.0, "bytes_total": 0}
    for line in out.splitlines():
        w = line.replace(",", " ").split()
        if line.startswith("finished in"):
            res["rps"] = float(w[3])
        elif line.startswith("requests:"):
            res["requests_total"] = int(w[1])
            res["errors"] = res.get("errors", 0) + int(w[9]) + int(w[11]) + int(w[13])  # failed, errored, timeout
        elif line.startswith("status codes:"):
            res["errors"] = res.get("errors", 0) + int(w[4]) + int(w[6]) + int(w[8])  # 3xx, 4xx, 5xx
    if "rps" not in res or "requests_total" not in res:
        raise RuntimeError("h2load: no summary in its output:\n" + out[-500:])
    return res


def run_cell(r, args, gen="loadgen"):
    cmd = h2load_cmd(r, args) if gen == "h2load" else \
        loadgen_base(r, gen) + args + ["-d", str(DURATION), "--warmup", str(WARMUP)]
    c0 = cpu_s(r.pid) if r.pid else 0
    n0 = cpu_s(NGINX.pid)
    g0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 120)
    g1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c1 = cpu_s(r.pid) if r.pid else 0
    n1 = cpu_s(NGINX.pid)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError("%s failed: %s\n%s" % (gen, " ".join(cmd), p.stderr))
    res = h2load_result(p.stdout) if gen == "h2load" else json.loads(p.stdout.strip().splitlines()[-1])
    res["proxy_cpu_s"] = c1 - c0 if r.pid else None
    res["nginx_cpu_s"] = n1 - n0
    res["gen_cpu_s"] = g1.ru_utime + g1.ru_stime - g0.ru_utime - g0.ru_stime  # the load generator's
    res["cmd"] = cmd
    res["stderr"] = p.stderr.strip()[:500]
    return res


def median_cell(cells):
    out = dict(cells[0])
    for k in ("rps", "p50_ms", "p99_ms", "p999_ms", "mb_s"):
        vals = [c[k] for c in cells if c.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    out["errors"] = sum(c["errors"] for c in cells)
    if cells[0]["proxy_cpu_s"] is not None:
        per = [c["proxy_cpu_s"] / max(1, c["requests_total"]) for c in cells]
        out["cpu_us_per_req"] = statistics.median(per) * 1e6
        out["cpu_ms_per_mb"] = statistics.median(
            c["proxy_cpu_s"] / max(1e-9, c["bytes_total"] / 1e6) for c in cells) * 1e3
    else:
        out["cpu_us_per_req"] = out["cpu_ms_per_mb"] = None
    out["rounds"] = len(cells)
    out["per_round"] = [{"rps": c["rps"], "proxy_cpu_s": c["proxy_cpu_s"], "requests_total": c["requests_total"]}
                        for c in cells]
    return out


def idle_cell(r, n):
    cmd = loadgen_base(r) + ["--mode", "idle", "-c", str(n), "-d", "1", "--max-inflight", "256", "--hold", "300"]
    rss0 = rss_kib(r.pid)
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    first = json.loads(line) if line.strip() else {"established": 0, "errors": n, "setup_s": None}
    time.sleep(1.0)
    rss1 = rss_kib(r.pid)
    rest, err = p.communicate("", timeout=120)   # EOF on stdin: loadgen lets go
    est = first.get("established", 0)
    return {"conns": n, "established": est, "errors": first.get("errors"), "setup_s": first.get("setup_s"),
            "rss_before_kib": rss0, "rss_kib": rss1,
            "kib_per_conn": (rss1 - rss0) / est if est else None, "cmd": cmd, "stderr": err.strip()[:500]}


def check_injection(r):
    """One request to /check, which nginx answers 200 only when the real secret arrived
    (over HTTP/2 for an HTTP/2 row)."""
    if r.h2 and r.workloads[0][2] == "h2gen":
        cmd = loadgen_base(r, "h2gen") + ["-m", "1", "-d", "0.2", "--warmup", "0", "--path", "/check"]
    else:
        cmd = loadgen_base(r) + ["--mode", "ka", "-c", "1", "-t", "1", "-d", "0.2", "--warmup", "0",
                                 "--path", "/check"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    res = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {"errors": -1, "requests_total": 0}
    ok = p.returncode == 0 and res["errors"] == 0 and res["requests_total"] > 0
    if not ok:
        log("%s: secret NOT injected (/check failed): %s %s" % (r.key, p.stdout.strip(), p.stderr.strip()))
    return ok


# ---------------------------------------------------------------- report

def fmt(v, nd=0):
    if v is None:
        return "—"
    if nd == 0:
        return "{:,.0f}".format(v)
    return "{:,.{}f}".format(v, nd)


def ratio(v, base, higher_better=True):
    if v is None or not base:
        return ""
    return " (×%.2f)" % (v / base)


def versions():
    v = {}
    v["egressd"] = ", ".join(sh(EGRESSD + " --version").split("\n")).strip(", ")  # several lines
    v["nginx"] = sh("nginx -v").strip()
    v["squid"] = sh("squid -v | head -1").strip() if shutil.which("squid") else "not installed"
    v["tinyproxy"] = sh("tinyproxy -v").strip() if shutil.which("tinyproxy") else "not installed"
    v["mitmdump"] = " ".join(sh("mitmdump --version").split()[:2]) if shutil.which("mitmdump") else "not installed"
    v["openssl"] = sh("openssl version").strip()
    v["libevent"] = sh("dpkg-query -W -f '${Version}' libevent-2.1-7 2>/dev/null").strip()
    v["kernel"] = platform.release()
    return v


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1048576)
    return "nproc %d, %s, %s RAM, Linux %s" % (os.cpu_count(), model, mem, platform.release())


def write_report(rows, h2, data, meta):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({"meta": meta, "data": data}, f, indent=1, default=str)
    L = []
    L.append("# egressd benchmark — latest run\n")
    L.append("- date: %s" % meta["date"])
    L.append("- machine: %s" % meta["machine"])
    L.append("- versions: " + "; ".join("%s: %s" % kv for kv in meta["versions"].items()))
    L.append("- settings: %s s per cell after %.1f s warm-up, %d round(s), median of rounds; loadgen %d threads; "
             "all on 127.0.0.1 (loadgen, proxy and nginx share the %d cores)%s" %
             (fmt(DURATION, 1), WARMUP, ROUNDS, THREADS, os.cpu_count(), " — BENCH_QUICK" if QUICK else ""))
    L.append("- `make bench` (= `scripts/deps.sh bench` + `bench/run.sh`); this run: `%s`" % meta["invocation"])
    L.append("- ratios in parentheses are to `direct`; proxy CPU = utime+stime of the proxy's process tree "
             "from /proc, divided by every request it carried (warm-up included)")
    L.append("")
    if rows:
        h1_tables(rows, data, meta, L)
    if h2:
        h2_table(h2, data, L)
    L.append("## Commands\n")
    L.append("```")
    L.append("nginx -c bench/peers/nginx.conf -p TMP   (@DIR@, @PORT@, @H2PORT@, @SECRET@ filled in; TLS on 127.0.0.1:PORT,"
             " ECDSA P-256 leaf from a throwaway bench CA)")
    for r in rows + h2:
        if r.missing:
            L.append("# %s: %s" % (r.key, r.missing))
        elif r.cmd:
            L.append("# %s\n%s" % (r.key, r.cmd.replace(tmp, "TMP")))
    L.append("")
    L.append("# loadgen, e.g. (every cell's exact line is in bench/results/latest.json)")
    for key in ("ka64", "bulk", "upload", H2_WORKLOAD[0]):
        for rk in ("direct", "egressd-intercept", "h2-direct", "h2-h2load", "h2-egressd"):
            c = (data.get(rk) or {}).get(key)
            if c:
                L.append(" ".join(shlex.quote(a) for a in c["cmd"]).replace(tmp, "TMP").replace(ROOT + "/", ""))
    L.append("```")
    L.append("")
    L.append("Notes: squid's ssl-bump row replaces the whole `Authorization` header "
             "(`request_header_access` + `request_header_replace`), its nearest equivalent of placeholder "
             "replacement; mitmdump's addon (`bench/peers/mitm_inject.py`) replaces the placeholder in every "
             "header value. Every intercepted row is checked first: nginx's `/check` answers 200 only when "
             "the real secret arrived (%s). mitmdump and tinyproxy resolve names with the system resolver, so "
             "they get `CONNECT 127.0.0.1:PORT` (SNI and Host still name %s); egressd is given `--resolve`, "
             "squid a `hosts_file`. An intercepting egressd re-frames responses from a secret's host as chunked "
             "and scans them for the secret. nginx answers `/up` before it reads the body (then reads and "
             "discards it): a proxy that closes the sandbox's connection once the answer is through, with "
             "the body still coming, fails every upload (errors; its MB/s then counts bytes sent before the "
             "close)." % (", ".join("%s: %s" % (k, "ok" if v else "FAILED")
                                                           for k, v in meta["injection"].items()), HOST))
    L.append("")
    if rows:
        L.append("![chart](chart.png)")
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(L) + "\n")


def h1_tables(rows, data, meta, L):
    """The HTTP/1.1 tables: summary, one per workload, idle tunnels."""
    d0 = data.get("direct", {})
    L.append("## Summary\n")
    L.append("| path | ka c=1 req/s | ka c=64 req/s | new conn c=8 req/s | bulk MB/s | upload MB/s | idle tunnels: proxy RSS | proxy CPU µs/req (ka c=64) |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d = data.get(r.key)
        if r.missing or d is None:
            L.append("| %s | %s | | | | | | |" % (r.title, r.missing or "failed"))
            continue
        cells = []
        for k, col in (("ka1", "rps"), ("ka64", "rps"), ("new8", "rps"), ("bulk", "mb_s"), ("upload", "mb_s")):
            c = d.get(k)
            cells.append(fmt(c[col]) + ratio(c[col], d0.get(k, {}).get(col)) +
                         (", **%d errors**" % c["errors"] if c["errors"] else "") if c else "—")
        idl = d.get("idle")
        cells.append("%s MiB for %s (%s KiB each)" % (fmt(idl["rss_kib"] / 1024, 1), fmt(idl["established"]),
                                                      fmt(idl["kib_per_conn"], 1)) if idl and idl.get("kib_per_conn") else "—")
        c = d.get("ka64")
        cells.append(fmt(c["cpu_us_per_req"], 1) if c and c.get("cpu_us_per_req") is not None else "—")
        L.append("| %s | %s |" % (r.title, " | ".join(cells)))
    L.append("")
    for key, title, _ in WORKLOADS:
        L.append("## %s\n" % title)
        bulk = key in BULK
        L.append("| path | %s | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU %s | nginx CPU %s |" %
                 ("MB/s" if bulk else "req/s", "ms/MB" if bulk else "µs/req", "ms/MB" if bulk else "µs/req"))
        L.append("|---|---|---|---|---|---|---|---|")
        b = d0.get(key, {})
        for r in rows:
            d = data.get(r.key) or {}
            c = d.get(key)
            if r.missing or not c:
                L.append("| %s | %s | | | | | | |" % (r.title, r.missing or "failed"))
                continue
            main = c["mb_s"] if bulk else c["rps"]
            ngx = c["nginx_cpu_s"] / max(1, c["requests_total"]) * 1e6 if not bulk else \
                c["nginx_cpu_s"] / max(1e-9, c["bytes_total"] / 1e6) * 1e3
            pc = c["cpu_ms_per_mb"] if bulk else c["cpu_us_per_req"]
            L.append("| %s | %s%s | %s%s | %s%s | %s%s | %d | %s | %s |" % (
                r.title, fmt(main), ratio(main, b.get("mb_s" if bulk else "rps")),
                fmt(c["p50_ms"], 2), ratio(c["p50_ms"], b.get("p50_ms")),
                fmt(c["p99_ms"], 2), ratio(c["p99_ms"], b.get("p99_ms")),
                fmt(c["p999_ms"], 2), ratio(c["p999_ms"], b.get("p999_ms")),
                c["errors"], fmt(pc, 2 if bulk else 1), fmt(ngx, 2 if bulk else 1)))
        L.append("")
    L.append("## Idle tunnels (CONNECT + TLS handshake + one GET each, then held open)\n")
    L.append("| path | tunnels asked | established | errors | set-up s | proxy RSS before | proxy RSS with tunnels | KiB per tunnel |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d = (data.get(r.key) or {}).get("idle")
        if r.key == "direct":
            continue
        if r.missing or not d:
            L.append("| %s | %s | | | | | | |" % (r.title, r.missing or "failed"))
            continue
        L.append("| %s | %s | %s | %s | %s | %s MiB | %s MiB | %s |" % (
            r.title, fmt(d["conns"]), fmt(d["established"]), d["errors"], fmt(d["setup_s"], 1),
            fmt(d["rss_before_kib"] / 1024, 1), fmt(d["rss_kib"] / 1024, 1), fmt(d["kib_per_conn"], 1)))
    L.append("")
    L.append("Idle tunnels asked: %d (%s)." % (meta["idle_n"], meta["idle_note"]))
    L.append("")


def h2_table(h2, data, L):
    """The HTTP/2 table: h2gen's streams on one connection; egressd's HTTP/1.1 interception at
    c=64 beside it; ratios to h2-direct, CPU per request also to egressd's HTTP/1.1 row."""
    d0 = (data.get("h2-direct") or {}).get(H2_WORKLOAD[0], {})
    h1 = (data.get("h2-egressd-h1") or {}).get(H1_WORKLOAD[0], {})
    L.append("## HTTP/2: %s (intercepted rows inject a secret)\n" % H2_WORKLOAD[1])
    L.append("| path | workload | req/s | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU µs/req "
             "(× egressd HTTP/1.1) | nginx CPU µs/req | client CPU µs/req |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in h2:
        key, _, gen, args = r.workloads[0]
        c = (data.get(r.key) or {}).get(key)
        if r.missing or not c:
            L.append("| %s | | %s | | | | | | | |" % (r.title, r.missing or "failed"))
            continue
        wl = "HTTP/1.1, %s connections" % args[args.index("-c") + 1] if gen == "loadgen" else \
            "h2, %d streams, 1 connection (%s)" % (H2_STREAMS, gen)
        ngx = c["nginx_cpu_s"] / max(1, c["requests_total"]) * 1e6
        gen_ = c["gen_cpu_s"] / max(1, c["requests_total"]) * 1e6
        pc = c["cpu_us_per_req"]
        L.append("| %s | %s | %s%s | %s | %s | %s | %d | %s%s | %s | %s |" % (
            r.title, wl, fmt(c["rps"]), ratio(c["rps"], d0.get("rps")), fmt(c["p50_ms"], 2),
            fmt(c["p99_ms"], 2), fmt(c["p999_ms"], 2), c["errors"], fmt(pc, 1),
            ratio(pc, h1.get("cpu_us_per_req")) if pc is not None else "", fmt(ngx, 1), fmt(gen_, 1)))
    L.append("")
    L.append("Ratios after req/s are to `h2-direct`; after proxy CPU, to egressd's HTTP/1.1 row. "
             "Issue 15's goals: intercepted h2 ≥ ×0.5 of direct h2 req/s, and proxy CPU per request "
             "≤ egressd's HTTP/1.1 intercepted cost (≤ ×1.00). h2load gives no latency percentiles. "
             "Client CPU: the load generator's utime+stime (h2gen and h2load: one thread; loadgen: %d)." % THREADS)
    L.append("")


def chart(rows, data):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("python3-matplotlib missing: no chart")
        return
    panels = [("ka1", "rps", "keep-alive c=1 (req/s)"), ("ka64", "rps", "keep-alive c=64 (req/s)"),
              ("new8", "rps", "new conn/request c=8 (req/s)"), ("bulk", "mb_s", "bulk download 64 MiB (MB/s)"),
              ("upload", "mb_s", "bulk upload 64 MiB (MB/s)"),
              ("ka64", "cpu_us_per_req", "proxy CPU µs/request (ka c=64)"),
              ("idle", "kib_per_conn", "proxy KiB per idle tunnel")]
    shown = [r for r in rows if not r.missing and data.get(r.key)]
    fig, axes = plt.subplots(2, 4, figsize=(21, 8.5))
    colors = ["#555555", "#1f77b4", "#0b3d91", "#2ca02c", "#98df8a", "#d62728", "#ff7f0e"]
    for ax, (k, col, title) in zip(axes.flat, panels):
        names, vals, cols = [], [], []
        for i, r in enumerate(shown):
            c = data[r.key].get(k)
            v = c.get(col) if c else None
            if v is None:
                continue
            names.append(r.key)
            vals.append(v)
            cols.append(colors[i % len(colors)])
        ax.barh(names[::-1], vals[::-1], color=cols[::-1])
        base = (data.get("direct", {}).get(k) or {}).get(col)
        for y, v in enumerate(vals[::-1]):
            lab = "{:,.0f}".format(v) if v >= 100 else "{:,.1f}".format(v)
            if base and col in ("rps", "mb_s"):
                lab += "  ×%.2f" % (v / base)
            ax.text(v, y, " " + lab, va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.3)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("egressd bench (loopback, %d cores; %s)" % (os.cpu_count(), datetime.date.today()), fontsize=12)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "chart.png"), dpi=90)


# ---------------------------------------------------------------- main

def setup_upstream():
    """A temp dir, the bench CA, the upstream's certificate and nginx on a free port."""
    global tmp, UPORT, H2PORT, NGINX
    tmp = tempfile.mkdtemp(prefix="egressd-bench.")
    os.chmod(tmp, 0o755)
    os.makedirs(os.path.join(tmp, "nginx-tmp"))
    make_ca("ca", "egressd bench CA")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=" + HOST, "-keyout", "upstream.key", "-out", "upstream.csr")
    with open(os.path.join(tmp, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" % HOST)
    openssl("x509", "-req", "-in", "upstream.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "upstream.pem")
    with open(os.path.join(tmp, "big.bin"), "wb") as f:
        f.truncate(64 << 20)
    UPORT = free_port()
    H2PORT = free_port()
    conf = fill("nginx.conf", "nginx.conf", DIR=tmp, PORT=UPORT, H2PORT=H2PORT, SECRET=SECRET)
    NGINX = start(["nginx", "-c", conf, "-p", tmp], "nginx")
    wait_port(UPORT, NGINX, "nginx")
    wait_port(H2PORT, NGINX, "nginx")


def teardown():
    for p in list(procs):
        stop(p)
    if tmp and os.environ.get("BENCH_KEEP") != "1":
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp:
        log("kept " + tmp)


def log_cell(key, c):
    log("  %-5s %10s req/s  p50 %s ms  p99 %s ms  %s MB/s  err %d  cpu %s µs/req" % (
        key, fmt(c["rps"]), fmt(c["p50_ms"], 2), fmt(c["p99_ms"], 2), fmt(c["mb_s"]), c["errors"],
        fmt(c["cpu_us_per_req"], 1)))


def run_h2(h2, data, inj):
    """The HTTP/2 table, interleaved: every row's proxy runs at once (idle between its
    cells) and each round measures every row in turn, so a load that comes and goes on
    the machine falls on all rows alike; the order alternates between rounds (the cell run
    first in a round has been seen to do better: bench/README.md). Fills data[row][workload]
    and inj[row]."""
    live, cells = [], {}
    if not h2:
        return
    try:
        for r in h2:
            if r.missing:
                log("%s: %s" % (r.key, r.missing))
                continue
            log("%s: starting" % r.key)
            try:
                r.start()
                if r.inject:
                    inj[r.key] = check_injection(r)
                live.append(r)
            except Exception as e:
                log("%s: FAILED: %s" % (r.key, e))
                r.missing = "failed: %s" % str(e).splitlines()[0][:120]
                r.stop()
        for i in range(ROUNDS):
            for r in (list(live) if i % 2 == 0 else live[::-1]):
                key, _, gen, args = r.workloads[0]
                try:
                    cells.setdefault(r.key, []).append(run_cell(r, args, gen))
                except Exception as e:
                    log("%s: FAILED: %s" % (r.key, e))
                    r.missing = "failed: %s" % str(e).splitlines()[0][:120]
                    live.remove(r)
            log("HTTP/2 round %d/%d done" % (i + 1, ROUNDS))
        for r in live:
            key = r.workloads[0][0]
            data[r.key] = {key: median_cell(cells[r.key])}
            log("%s:" % r.key)
            log_cell(key, data[r.key][key])
    finally:
        for r in h2:
            r.stop()


def select_rows(rows, h2):
    """BENCH_ONLY and BENCH_WORKLOADS applied: `direct` runs with any HTTP/1.1 row,
    `h2-direct` with any HTTP/2 row (each table's ratios are to its own direct row)."""
    wl = os.environ.get("BENCH_WORKLOADS")
    if wl:
        WORKLOADS[:] = [w for w in WORKLOADS if w[0] in wl.split(",")]
        if not WORKLOADS:
            rows = []
        if H2_WORKLOAD[0] not in wl.split(","):
            h2 = []
    only = os.environ.get("BENCH_ONLY")
    if only:
        sel = set(only.split(","))
        rows = [r for r in rows if r.key in sel or (r.key == "direct" and any(x.key in sel for x in rows))]
        h2 = [r for r in h2 if r.key in sel or (r.key == "h2-direct" and any(x.key in sel for x in h2))]
    return rows, h2


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    want_idle = int(os.environ.get("BENCH_IDLE", "10000"))
    # a proxied idle tunnel costs the proxy two descriptors; the hard limit binds everyone
    cap = (hard - 400) // 2 // 100 * 100
    idle_n = min(want_idle, cap)
    idle_note = "asked %d; RLIMIT_NOFILE hard limit %d caps a proxy at about %d tunnels" % (want_idle, hard, cap) \
        if idle_n < want_idle else "as asked"
    try:
        setup_upstream()
        rows = [direct_row(), egressd_row("egressd-tunnel", "egressd tunnel (allowed, no secret)", False),
                egressd_row("egressd-intercept", "egressd intercepted (secret injected)", True),
                squid_row("squid-tunnel", "squid tunnel", False),
                squid_row("squid-bump", "squid ssl-bump (header replaced)", True),
                mitm_row(), tinyproxy_row()]
        h2 = h2_rows()
        h2.insert(1, h2load_row())
        rows, h2 = select_rows(rows, h2)
        data, inj = {}, {}
        t_start = time.time()
        for r in rows:
            if r.missing:
                log("%s: %s" % (r.key, r.missing))
                continue
            log("%s: starting" % r.key)
            try:
                r.start()
                if r.inject:
                    inj[r.key] = check_injection(r)
                d = {}
                for key, _, args in WORKLOADS:
                    cells = []
                    for _ in range(ROUNDS):
                        cells.append(run_cell(r, args))
                    d[key] = median_cell(cells)
                    log_cell(key, d[key])
                if r.pid and idle_n > 0:
                    d["idle"] = idle_cell(r, idle_n)
                    i = d["idle"]
                    log("  idle  %s/%d established in %ss, RSS %s -> %s MiB" % (
                        i["established"], idle_n, fmt(i["setup_s"], 1), fmt(i["rss_before_kib"] / 1024, 1),
                        fmt(i["rss_kib"] / 1024, 1)))
                data[r.key] = d
            except Exception as e:  # one broken peer must not lose the other rows
                log("%s: FAILED: %s" % (r.key, e))
                r.missing = "failed: %s" % str(e).splitlines()[0][:120]
            finally:
                r.stop()
                time.sleep(0.5)
        run_h2(h2, data, inj)
        meta = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                "machine": machine(), "versions": versions(), "injection": inj,
                "invocation": " ".join(k + "=" + os.environ[k] for k in
                                       KNOBS
                                       if k in os.environ) + (" " if any(k in os.environ for k in KNOBS) else "") + "bench/run.sh",
                "idle_n": idle_n, "idle_note": idle_note, "wall_s": round(time.time() - t_start)}
        write_report(rows, h2, data, meta)
        if rows:
            chart(rows, data)
        log("wrote bench/results/latest.md%s in %d s" % (" and chart.png" if rows else "", meta["wall_s"]))
    finally:
        teardown()


if __name__ == "__main__":
    main()
