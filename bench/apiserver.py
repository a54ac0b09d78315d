#!/usr/bin/env python3
"""The latency the API server sees: real writes through kube-apiserver with each webhook.

One control plane (tests/e2e/controlplane.sh, the engine's CRDs). backup-guard (`serve`, no
kubeconfig: admission only, every lookup finds nothing) and the controller-runtime peer run side
by side on loopback with the same certificate. For every row (fixed rate, saturation) the three
set-ups run one after the other: no webhook, backup-guard registered, the peer registered (a
mutating webhook for SystemBackup CREATE and a validating one for Backup DELETE, failurePolicy
Fail); each `--also NAME=PATH` adds another backup-guard build as a set-up after backup-guard's.
`bench-scale writes` sends the writes from several goroutines on one client-go client:
SystemBackup CREATE (mutated) and Backup DELETE (validated; the Backup is created just before,
untimed). Reported per write: p50/p99 of the write, the same minus the no-webhook row (the added
latency), and the API server's own apiserver_admission_webhook_admission_duration_seconds for
the webhook (quantiles interpolated inside its buckets, as Prometheus' histogram_quantile does).
Writes OUT/apiserver.json and prints the table. Never fails on time.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, HERE)
from admission import free_port, loadavg, post, proc_cpu_seconds, stop_process  # noqa: E402


def log(*a):
    print("apiserver:", *a, file=sys.stderr, flush=True)


class Proc:
    def __init__(self, name, argv, logdir):
        self.name = name
        self.log = open(os.path.join(logdir, f"{name}.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)

    def stop(self):
        stop_process(self.proc)
        self.log.close()


def wait_answers(port, certs, proc):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode} (log {proc.log.name})")
        try:
            post(port, certs, "validation", os.path.join(HERE, "bodies", "backup-delete.json"))
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer on 127.0.0.1:{port}")


def histogram_quantile(buckets, q):
    """Prometheus' histogram_quantile over {le: cumulative count} (linear inside a bucket)."""
    bounds = sorted((float(le), c) for le, c in buckets.items())
    total = bounds[-1][1] if bounds else 0
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in bounds:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_le, prev_c = le, c
    return prev_le


def bucket_delta(after, before, name):
    a, b = after.get(name, {}), before.get(name, {})
    return {le: a[le] - b.get(le, 0) for le in a}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backup-guard", required=True)
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                    help="another backup-guard build as a set-up of its own, run right after "
                         "backup-guard in every rate (for a change measured against the code before it)")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--scale", required=True, help="bench-scale (register, writes, webhook-metrics)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rates", default="50,0", help="writes per second in all; 0 = saturation")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--state-dir", default="/tmp/bg-bench-apiserver")
    args = ap.parse_args()
    also = []
    for spec in args.also:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or not os.access(path, os.X_OK):
            ap.error(f"--also {spec!r}: want NAME=PATH, PATH an executable backup-guard")
        if not all(ch.isalnum() or ch == "-" for ch in name) or name in ("none", "backup-guard", "peer"):
            ap.error(f"--also {spec!r}: NAME must be letters, digits and '-', and not a set-up's name")
        also.append((name, path))

    os.makedirs(args.out, exist_ok=True)
    logdir = os.path.join(args.out, "logs")
    os.makedirs(logdir, exist_ok=True)
    certs = os.path.join(args.out, "certs-apiserver")
    shutil.rmtree(certs, ignore_errors=True)
    subprocess.run([args.backup_guard, "certs", "generate", "--out", certs, "--dns", "localhost",
                    "--ip", "127.0.0.1"], check=True, stdout=subprocess.DEVNULL)

    env = dict(os.environ, BG_STATE_DIR=args.state_dir)
    crds = subprocess.run([os.path.join(ROOT, "tests", "engine", "engine-crds.sh"), "v1.10.0"],
                          check=True, capture_output=True, text=True).stdout.strip()
    cp = os.path.join(ROOT, "tests", "e2e", "controlplane.sh")
    up = subprocess.run([cp, "up", "--crds", crds], env=env, check=True, capture_output=True, text=True)
    kubeconfig = up.stdout.strip().splitlines()[-1].split("=", 1)[1]
    apiserver_pid = int(open(os.path.join(args.state_dir, "pids", "kube-apiserver")).read())
    servers = []
    try:
        setups = [("none", None, None)]
        for name, binary in [("backup-guard", args.backup_guard), *also]:
            port = free_port()
            proc = Proc(f"apiserver-{name}", [
                binary, "serve", "--listen", f"127.0.0.1:{port}",
                "--metrics-listen", f"127.0.0.1:{free_port()}",
                "--tls-cert-file", os.path.join(certs, "tls.crt"), "--tls-key-file", os.path.join(certs, "tls.key"),
                "--log-level", "warn"], logdir)
            servers.append(proc)
            setups.append((name, port, proc))
        peer_port = free_port()
        peer = Proc("apiserver-peer", [args.peer, "--listen", f"127.0.0.1:{peer_port}", "--cert-dir", certs], logdir)
        servers.append(peer)
        setups.append(("peer", peer_port, peer))
        for _, port, proc in setups[1:]:
            wait_answers(port, certs, proc)

        def scale(*a):
            r = subprocess.run([args.scale, a[0], "--kubeconfig", kubeconfig, *a[1:]],
                               check=True, capture_output=True, text=True)
            return json.loads(r.stdout) if r.stdout.strip() else None

        rows = []
        seq = 0
        for rate in [float(r) for r in args.rates.split(",")]:
            for setup, port, proc in setups:
                seq += 1
                if port is not None:
                    scale("register", "--name", setup, "--url", f"https://127.0.0.1:{port}",
                          "--ca-file", os.path.join(certs, "ca.crt"))
                try:
                    log(f"rate={'saturation' if rate == 0 else rate} {setup} ...")
                    scale("writes", "--clients", str(args.clients), "--rate", "20",
                          "--duration", f"{args.warmup}s", "--prefix", f"warm{seq}")
                    before = scale("webhook-metrics")
                    la = loadavg()
                    api0 = proc_cpu_seconds(apiserver_pid)
                    srv0 = proc_cpu_seconds(proc.proc.pid) if proc else 0.0
                    result = scale("writes", "--clients", str(args.clients), "--rate", str(rate),
                                   "--duration", f"{args.duration}s", "--prefix", f"run{seq}")
                    api1 = proc_cpu_seconds(apiserver_pid)
                    srv1 = proc_cpu_seconds(proc.proc.pid) if proc else 0.0
                    after = scale("webhook-metrics")
                finally:
                    if port is not None:
                        scale("unregister", "--name", setup)
                row = {"setup": setup, "rate": rate, "clients": args.clients, "loadavg_before": la,
                       "apiserver_cpu_s": api1 - api0, "webhook_cpu_s": srv1 - srv0, **result}
                if port is not None:
                    for kind, name in (("mutation", f"mutator.{setup}.bench"),
                                       ("validation", f"validator.{setup}.bench")):
                        buckets = bucket_delta(after, before, name)
                        row[f"apiserver_{kind}"] = {
                            "calls": buckets.get("+Inf", 0),
                            "p50_ms": histogram_quantile(buckets, 0.5) * 1000,
                            "p99_ms": histogram_quantile(buckets, 0.99) * 1000,
                            "buckets": buckets,
                        }
                rows.append(row)
                print_rows([row])
    finally:
        for s in servers:
            s.stop()
        subprocess.run([cp, "down"], env=env, capture_output=True)
    # Added latency: each webhook row minus the no-webhook row of the same rate.
    for r in rows:
        base = next(b for b in rows if b["rate"] == r["rate"] and b["setup"] == "none")
        for op in ("systembackup_create", "backup_delete"):
            r[op]["added_p50_ms"] = r[op]["p50_ms"] - base[op]["p50_ms"]
            r[op]["added_p99_ms"] = r[op]["p99_ms"] - base[op]["p99_ms"]
    result = {"rows": rows, "duration_s": args.duration, "clients": args.clients, "loadavg_end": loadavg()}
    with open(os.path.join(args.out, "apiserver.json"), "w") as f:
        json.dump(result, f, indent=1)
    print()
    print_rows(rows)


def print_rows(rows):
    for r in rows:
        rate = "sat" if r["rate"] == 0 else f"{r['rate']:g}/s"
        for op, kind in (("systembackup_create", "mutation"), ("backup_delete", "validation")):
            s = r[op]
            extra = ""
            if "added_p50_ms" in s:
                extra = f" added p50 {s['added_p50_ms']:+.2f} p99 {s['added_p99_ms']:+.2f}"
            a = r.get(f"apiserver_{kind}")
            if a:
                extra += f" | apiserver webhook p50 {a['p50_ms']:.2f} p99 {a['p99_ms']:.2f} ({a['calls']:.0f} calls)"
            print(f"{rate:>7} {r['setup']:<16} {op:<20} {s['per_s']:7.1f}/s p50 {s['p50_ms']:6.2f} "
                  f"p99 {s['p99_ms']:7.2f} err {s['errors']}{extra}", flush=True)


if __name__ == "__main__":
    main()
