#!/usr/bin/env python3
"""Admission benchmark: backup-guard against the controller-runtime peer, driven by one vegeta.

For every (connection mode, rate) row and each server:
  - start the server fresh, pinned to core 0 (taskset), and check that it answers;
  - warm it up briefly, then run vegeta (pinned to core 1) at the fixed rate, or at saturation
    (-rate=0 -max-workers=N), alternating the two bodies (SystemBackup CREATE to /mutation,
    Backup DELETE to /validation);
  - throughput (2xx answers per second over the attack), p50/p99/p99.9 latency (from every result),
    server CPU seconds per 1,000 requests (utime+stime from /proc/<pid>/stat before/after), the
    server's peak RSS (VmHWM) and the load generator's own CPU use.
With --floor-nginx, nginx (one process, no master, pinned like the others) answers every request
with a fixed AdmissionReview over the same TLS, HTTP/1.1 keep-alive and gzip: the least a server
can do per request on this machine, measured by the same vegeta in the same run. Its rows separate
what the machine, the kernel and the load generator add to the tail from what a server adds.
Writes OUT/admission.json and prints the table. Never fails on time: the numbers are the result.
"""
import argparse
import base64
import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODIES = {
    "mutation": os.path.join(HERE, "bodies", "systembackup-create.json"),
    "validation": os.path.join(HERE, "bodies", "backup-delete.json"),
}


def log(*a):
    print("admission:", *a, file=sys.stderr, flush=True)


_handed_out = set()


def free_port():
    """A free loopback port, never one handed out before in this run (two servers, each with a
    TLS and a metrics port, must not be given the same one)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p not in _handed_out:
            _handed_out.add(p)
            return p


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15 -> indexes 11, 12
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def stop_process(proc, grace=25):
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    def __init__(self, name, argv_fn, certs, cpu):
        self.name, self.argv_fn, self.certs, self.cpu = name, argv_fn, certs, cpu
        self.proc = None
        self.port = None

    def start(self, logdir):
        self.port = free_port()
        argv = ["taskset", "-c", str(self.cpu)] + self.argv_fn(self.port)
        self.log = open(os.path.join(logdir, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} (log {self.log.name})")
            try:
                post(self.port, self.certs, "validation", BODIES["validation"])
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on 127.0.0.1:{self.port}")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.log.close()
        self.proc = None


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  gzip on;
  gzip_types application/json;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {certs}/tls.crt;
    ssl_certificate_key {certs}/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /v1/webhook/ {{
      default_type application/json;
      return 200 '{answer}';
    }}
  }}
}}
"""


def nginx_floor_argv(nginx, certs, answer_file, workdir):
    """argv_fn for the floor: writes a configuration for `port` and runs nginx in the foreground."""
    with open(answer_file) as f:
        answer = json.dumps(json.load(f), separators=(",", ":"))
    if "'" in answer or "$" in answer:
        raise ValueError("the floor's fixed answer must hold no ' or $ (nginx would read them)")

    def argv(port):
        prefix = os.path.join(workdir, f"nginx-{port}")
        os.makedirs(prefix, exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(prefix=prefix, port=port, certs=os.path.abspath(certs), answer=answer))
        return [nginx, "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "error.log")]
    return argv


def post(port, certs, path, body_file):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    with open(body_file, "rb") as f:
        body = f.read()
    conn.request("POST", f"/v1/webhook/{path}", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data)


# --- a minimal RFC 6902 applier for the equivalence check (add/replace/remove only) -------------
def _tokens(path):
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def apply_patch(doc, ops):
    doc = json.loads(json.dumps(doc))
    for op in ops:
        toks = _tokens(op["path"])
        parent = doc
        for t in toks[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = toks[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise ValueError("unsupported op " + op["op"])
    return doc


def check_equivalent(servers, certs):
    """Both servers must give the same answer to both bodies (patch applied, warnings)."""
    results = {}
    for s in servers:
        out = {}
        for path, body in BODIES.items():
            status, review = post(s.port, certs, path, body)
            resp = review.get("response", {})
            entry = {"status": status, "allowed": resp.get("allowed"), "warnings": resp.get("warnings") or []}
            if resp.get("patch"):
                ops = json.loads(base64.b64decode(resp["patch"]))
                with open(body) as f:
                    obj = json.load(f)["request"]["object"]
                patched = apply_patch(obj, ops)
                # A typed Go struct re-encodes an unset creationTimestamp as null: same object.
                if patched.get("metadata", {}).get("creationTimestamp", "x") is None:
                    del patched["metadata"]["creationTimestamp"]
                entry["patched"] = patched
                entry["ops"] = ops
            out[path] = entry
        results[s.name] = out
    names = [s.name for s in servers]
    problems = []
    for other in names[1:]:
        problems += compare_answers(results[names[0]], results[other])
    return results, problems


def compare_answers(a, b):
    problems = []
    for path in BODIES:
        for key in ("status", "allowed", "patched"):
            if a[path].get(key) != b[path].get(key):
                problems.append(f"{path}: {key} differs: {a[path].get(key)} vs {b[path].get(key)}")
        if bool(a[path]["warnings"]) != bool(b[path]["warnings"]):
            problems.append(f"{path}: warnings differ: {a[path]['warnings']} vs {b[path]['warnings']}")
    return problems


# --- vegeta ----------------------------------------------------------------------------------
def write_targets(port, directory):
    path = os.path.join(directory, f"targets-{port}.txt")
    with open(path, "w") as f:
        for endpoint, body in BODIES.items():
            f.write(f"POST https://127.0.0.1:{port}/v1/webhook/{endpoint}\n")
            f.write("Content-Type: application/json\n")
            f.write(f"@{body}\n\n")
    return path


def quantile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def attack(vegeta, targets, certs, rate, duration, keepalive, workers, cpu, outfile, headers=(),
           session_tickets=False):
    argv = ["taskset", "-c", str(cpu), vegeta, "attack",
            "-targets", targets, "-root-certs", os.path.join(certs, "ca.crt"),
            "-http2=false", f"-keepalive={'true' if keepalive else 'false'}",
            f"-session-tickets={'true' if session_tickets else 'false'}",
            "-duration", f"{duration}s", "-timeout", "10s", "-max-body", "0",
            "-output", outfile]
    for h in headers:
        argv += ["-header", h]
    if rate == 0:
        argv += ["-rate", "0", "-max-workers", str(workers), "-workers", str(workers)]
    else:
        argv += ["-rate", f"{rate}/s", "-max-workers", str(workers)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, _, ru = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if err.strip():
        log("vegeta:", err.strip()[:500])
    return ru.ru_utime + ru.ru_stime


def summarize(vegeta, outfile):
    enc = subprocess.run([vegeta, "encode", "-to", "csv", outfile], capture_output=True, check=True)
    lat, ok, errors, first, last = [], 0, {}, None, None
    for row in csv.reader(io.StringIO(enc.stdout.decode(errors="replace"))):
        ts_ns, code, latency_ns = int(row[0]), int(row[1]), int(row[2])
        end = ts_ns + latency_ns
        first = ts_ns if first is None else min(first, ts_ns)
        last = end if last is None else max(last, end)
        if 200 <= code < 300:
            ok += 1
            lat.append(latency_ns / 1e6)
        else:
            key = f"{code} {row[5][:200]}"
            errors[key] = errors.get(key, 0) + 1
    lat.sort()
    span = (last - first) / 1e9 if first is not None else 0
    return {
        "requests": ok + sum(errors.values()),
        "ok": ok,
        "errors": errors,
        "throughput": ok / span if span > 0 else 0,
        "p50_ms": quantile(lat, 0.50),
        "p99_ms": quantile(lat, 0.99),
        "p999_ms": quantile(lat, 0.999),
        "max_ms": lat[-1] if lat else float("nan"),
    }


def run_row(server, vegeta, certs, rate, duration, keepalive, workers, gen_cpu, tmp, logdir, warmup,
            headers=(), mode_label=None, session_tickets=False):
    server.start(logdir)
    try:
        targets = write_targets(server.port, tmp)
        scratch = os.path.join(tmp, "results.bin")
        if warmup > 0:
            attack(vegeta, targets, certs, 500, warmup, keepalive, workers, gen_cpu, scratch, headers,
                   session_tickets)
        cpu0 = proc_cpu_seconds(server.pid)
        la = loadavg()
        gen_cpu_s = attack(vegeta, targets, certs, rate, duration, keepalive, workers, gen_cpu, scratch, headers,
                           session_tickets)
        cpu1 = proc_cpu_seconds(server.pid)
        stats = summarize(vegeta, scratch)
        stats.update({
            "server": server.name,
            "mode": mode_label or ("keep-alive" if keepalive else "new conn"),
            "keepalive": keepalive,
            "rate": rate,
            "workers": workers,
            "sustained": rate == 0 or stats["throughput"] >= 0.9 * rate,
            "duration_s": duration,
            "server_cpu_s": cpu1 - cpu0,
            "cpu_s_per_1k": (cpu1 - cpu0) / stats["requests"] * 1000 if stats["requests"] else float("nan"),
            "server_cpu_util": (cpu1 - cpu0) / duration,
            "loadgen_cpu_util": gen_cpu_s / duration,
            "peak_rss_mb": proc_status_kb(server.pid, "VmHWM") / 1024,
            "threads": proc_status_kb(server.pid, "Threads"),
            "loadavg_before": la,
        })
        os.unlink(scratch)
        return stats
    finally:
        server.stop()


def fmt(v, nd=2):
    if isinstance(v, float) and v != v:
        return "n/a"
    return f"{v:,.{nd}f}"


def print_table(rows):
    print(f"{'mode':<10} {'rate':>6} {'server':<12} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p99.9 ms':>8} {'cpu s/1k':>8} {'RSS MB':>7} {'srv cpu':>7} {'gen cpu':>7} {'errors':>6}")
    for r in rows:
        rate = f"sat{r['workers']}" if r["rate"] == 0 else r["rate"]
        print(f"{r['mode']:<10.10} {rate:>6} "
              f"{r['server']:<12} {r['throughput']:>9,.0f} {fmt(r['p50_ms']):>7} {fmt(r['p99_ms']):>7} "
              f"{fmt(r['p999_ms']):>8} {fmt(r['cpu_s_per_1k'], 3):>8} {fmt(r['peak_rss_mb'], 1):>7} "
              f"{r['server_cpu_util']:>6.0%} {r['loadgen_cpu_util']:>6.0%} {sum(r['errors'].values()):>6}")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backup-guard", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--vegeta", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rates", default="500,2000,5000,0", help="0 = saturation")
    ap.add_argument("--modes", default="keepalive,newconn,resume,identity",
                    help="identity: keep-alive saturation (first --sat-workers) with 'Accept-Encoding: identity', "
                         "to show what response compression costs; resume: a new connection per request that "
                         "resumes the TLS session with a ticket (vegeta -session-tickets), saturation rows only")
    ap.add_argument("--baseline", action="append", default=[], metavar="NAME=BINARY",
                    help="another backup-guard build measured in the same run (e.g. the commit before a "
                         "change), as server NAME; may be repeated")
    ap.add_argument("--floor-nginx", default="", metavar="NGINX",
                    help="also measure nginx answering a fixed AdmissionReview (backup-guard's own answer "
                         "to the mutation body) as server 'floor': the machine's and the client's share "
                         "of the tail")
    ap.add_argument("--sat-workers", default="16,128",
                    help="saturation rows: vegeta -max-workers (= concurrent connections), one row each")
    ap.add_argument("--rate-max-workers", type=int, default=64,
                    help="cap on vegeta's workers (and so connections) at fixed rates")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="bg-bench-adm-")
    certs = os.path.join(args.out, "certs")
    shutil.rmtree(certs, ignore_errors=True)
    subprocess.run([args.backup_guard, "certs", "generate", "--out", certs, "--dns", "localhost",
                    "--ip", "127.0.0.1"], check=True, stdout=subprocess.DEVNULL)
    logdir = os.path.join(args.out, "logs")
    os.makedirs(logdir, exist_ok=True)

    bg = Server("backup-guard", lambda port: [
        args.backup_guard, "serve", "--listen", f"127.0.0.1:{port}",
        "--metrics-listen", f"127.0.0.1:{free_port()}",
        "--tls-cert-file", os.path.join(certs, "tls.crt"), "--tls-key-file", os.path.join(certs, "tls.key"),
        "--log-level", "warn"], certs, args.server_cpu)
    peer = Server("peer", lambda port: [args.peer, "--listen", f"127.0.0.1:{port}", "--cert-dir", certs],
                  certs, args.server_cpu)
    servers = [bg, peer]
    for spec in args.baseline:
        name, binary = spec.split("=", 1)
        servers.append(Server(name, lambda port, binary=binary: [
            binary, "serve", "--listen", f"127.0.0.1:{port}",
            "--metrics-listen", f"127.0.0.1:{free_port()}",
            "--tls-cert-file", os.path.join(certs, "tls.crt"), "--tls-key-file", os.path.join(certs, "tls.key"),
            "--log-level", "warn"], certs, args.server_cpu))

    # Equivalence first: both must answer the two bodies alike.
    for s in servers:
        s.start(logdir)
    try:
        answers, problems = check_equivalent(servers, certs)
        if args.floor_nginx:
            _, review = post(bg.port, certs, "mutation", BODIES["mutation"])
            answer_file = os.path.join(tmp, "floor-answer.json")
            with open(answer_file, "w") as f:
                json.dump(review, f)
    finally:
        for s in servers:
            s.stop()
    if args.floor_nginx:  # after the check: the floor answers every request with one fixed review
        servers.append(Server("floor", nginx_floor_argv(args.floor_nginx, certs, answer_file, tmp),
                              certs, args.server_cpu))
    for p in problems:
        log("EQUIVALENCE PROBLEM:", p)
    if not problems:
        log("equivalence: both servers answer both bodies alike (patched object, allowed, warning)")

    rows = []
    started = time.time()
    for mode in args.modes.split(","):
        keepalive = mode in ("keepalive", "identity")
        headers, label = (), None
        plan = []
        if mode == "identity":
            headers, label = ("Accept-Encoding: identity",), "keep-alive, no gzip"
            plan = [(0, int(args.sat_workers.split(",")[0]))]
        elif mode == "resume":
            label = "new conn, resumed"
            plan = [(0, int(w)) for w in args.sat_workers.split(",")]
        else:
            for rate in [int(r) for r in args.rates.split(",")]:
                if rate == 0:
                    plan += [(0, int(w)) for w in args.sat_workers.split(",")]
                else:
                    plan.append((rate, args.rate_max_workers))
        for rate, workers in plan:
            for s in servers:
                log(f"{mode} rate={'saturation' if rate == 0 else rate} workers={workers} {s.name} ...")
                try:
                    row = run_row(s, args.vegeta, certs, rate, args.duration, keepalive, workers,
                                  args.loadgen_cpu, tmp, logdir, args.warmup, headers, label,
                                  session_tickets=mode == "resume")
                except Exception as e:  # a failed row is recorded, never fatal
                    log(f"row failed: {e}")
                    row = {"server": s.name, "keepalive": keepalive, "rate": rate, "workers": workers,
                           "mode": label or mode, "failed": str(e)}
                rows.append(row)
                if "failed" not in row:
                    print_table([row])
    shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "rows": rows,
        "equivalence": {"problems": problems, "answers": answers},
        "duration_s": args.duration,
        "sat_workers": args.sat_workers,
        "rate_max_workers": args.rate_max_workers,
        "server_cpu": args.server_cpu,
        "loadgen_cpu": args.loadgen_cpu,
        "loadavg_end": loadavg(),
        "wall_s": time.time() - started,
    }
    with open(os.path.join(args.out, "admission.json"), "w") as f:
        json.dump(result, f, indent=1)
    print()
    print_table([r for r in rows if "failed" not in r])


if __name__ == "__main__":
    main()
