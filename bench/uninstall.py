#!/usr/bin/env python3
"""Uninstall at scale, against the real control plane (tests/e2e/controlplane.sh).

Sizes up to 50,000 Backups (58,500 objects) in one run: `--sizes 50000 --floor-concurrency 32`
(bench/README.md). At that size the receipt (25,000 Completed Backups, several MiB) does not fit a
ConfigMap and is stored gzip-compressed; the run records the receipt line and the file's size.

For each size N (number of Backups; the other kinds scale with it: N/20 BackupVolumes, N/10
SystemBackups, N/50 BackupBackingImages, one default BackupTarget, all with the longhorn.io
finalizer, half of the Backups failed), on one control plane with no webhook registered:
  1. seed, then run `backup-guard uninstall --force` under /usr/bin/time -v: wall time until exit 0,
     peak RSS, kube-apiserver (and etcd) CPU seconds from /proc, API calls from the API server's
     apiserver_request_total (before/after), the time each step ("found 0 <Kind> remaining") ended;
  2. seed again, then run the floor (bench/scale floor: one DELETE and one finalizer-removal PATCH
     per object, C workers, no client-side rate limit) and measure the same.
The floor's concurrency is tuned first (the best of --floor-concurrency on the middle size).
Writes OUT/uninstall.json and prints a table. Never fails on time.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("uninstall:", *a, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


class Plane:
    def __init__(self, state):
        self.state = state
        self.env = dict(os.environ, BG_STATE_DIR=state)
        self.kubeconfig = None

    def up(self):
        out = subprocess.run([os.path.join(ROOT, "tests/e2e/controlplane.sh"), "up", "--crds",
                              subprocess.run([os.path.join(ROOT, "tests/engine/engine-crds.sh"), "v1.10.0"],
                                             capture_output=True, text=True,
                                             check=True).stdout.strip()],
                             env=self.env, stdout=subprocess.PIPE, check=True, text=True).stdout
        self.kubeconfig = out.strip().splitlines()[-1].split("=", 1)[1]
        return self.kubeconfig

    def down(self):
        subprocess.run([os.path.join(ROOT, "tests/e2e/controlplane.sh"), "down"], env=self.env,
                       stdout=subprocess.DEVNULL)

    def pid(self, component):
        with open(os.path.join(self.state, "pids", component)) as f:
            return int(f.read().strip())


def scale(bin_, *args):
    out = subprocess.run([bin_] + list(args), stdout=subprocess.PIPE, check=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def diff_calls(before, after):
    d = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return {k: int(v) for k, v in sorted(d.items()) if v > 0}


def summarize_calls(calls):
    by_verb = {}
    for key, v in calls.items():
        verb = key.split(" ", 1)[0]
        by_verb[verb] = by_verb.get(verb, 0) + v
    return by_verb


def measure(plane, args, fn):
    """Runs fn() and returns its result with API server / etcd CPU and API calls around it."""
    api, etcd = plane.pid("kube-apiserver"), plane.pid("etcd")
    m0 = scale(args.scale, "metrics", "--kubeconfig", plane.kubeconfig)
    c0, e0, la = cpu_seconds(api), cpu_seconds(etcd), loadavg()
    result = fn()
    c1, e1 = cpu_seconds(api), cpu_seconds(etcd)
    m1 = scale(args.scale, "metrics", "--kubeconfig", plane.kubeconfig)
    calls = diff_calls(m0, m1)
    # The two metrics reads themselves are not longhorn.io calls; nothing to subtract.
    result.update({"apiserver_cpu_s": c1 - c0, "etcd_cpu_s": e1 - e0, "calls": calls,
                   "calls_by_verb": summarize_calls(calls), "loadavg_before": la,
                   "loadavg_after": loadavg()})
    return result


def parse_time_v(path):
    """Peak RSS (kB) and user+system CPU seconds from a `/usr/bin/time -v` report."""
    out = {"rss_kb": 0, "cpu_s": 0.0}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().rpartition(":")
            if key == "Maximum resident set size (kbytes)":
                out["rss_kb"] = int(value)
            elif key in ("User time (seconds)", "System time (seconds)"):
                out["cpu_s"] += float(value)
    return out


def run_uninstall(plane, args, size, logdir):
    timefile = os.path.join(logdir, f"uninstall-{size}.time")
    logfile = os.path.join(logdir, f"uninstall-{size}.log")
    receipt = os.path.join(logdir, f"receipt-{size}.json")
    argv = ["/usr/bin/time", "-v", "-o", timefile, args.backup_guard, "uninstall", "--kubeconfig",
            plane.kubeconfig, "--namespace", "longhorn-system", "--force", "--timeout", f"{args.timeout}s",
            "--receipt", receipt]
    argv += args.uninstall_args.split()

    def go():
        steps = []
        receipt_line = ""
        progress_lines = 0
        start = time.monotonic()
        env = dict(os.environ)
        if args.preload:  # diagnostic A/B only (bench/diag/nodelay.c)
            env["LD_PRELOAD"] = args.preload
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        killer = threading.Timer(args.timeout + 60, proc.kill)
        killer.start()
        with open(logfile, "w") as lf:
            for line in proc.stdout:
                t = time.monotonic() - start
                lf.write(f"{t:9.2f} {line}")
                m = re.match(r"found 0 (\w+) remaining", line)
                if m:
                    steps.append({"kind": m.group(1), "done_at_s": round(t, 2)})
                if line.startswith("receipt: "):
                    receipt_line = line.strip()
                progress_lines += line.startswith("progress: ")
        rc = proc.wait()
        killer.cancel()
        wall = time.monotonic() - start
        t = parse_time_v(timefile)
        return {"exit": rc, "seconds": wall, "peak_rss_mb": t["rss_kb"] / 1024, "cpu_s": t["cpu_s"],
                "steps": steps, "receipt": receipt_line,
                "receipt_bytes": os.path.getsize(receipt) if os.path.exists(receipt) else 0,
                "progress_lines": progress_lines}

    return measure(plane, args, go)


def run_floor(plane, args, concurrency):
    def go():
        r = scale(args.scale, "floor", "--kubeconfig", plane.kubeconfig, "--concurrency", str(concurrency))
        return r

    return measure(plane, args, go)


def seed(plane, args, size):
    t = time.monotonic()
    r = scale(args.scale, "seed", "--kubeconfig", plane.kubeconfig, "--backups", str(size))
    log(f"seeded {sum(r['created'].values())} objects in {time.monotonic() - t:.1f}s")
    return r["created"]


def remaining(plane, args):
    return scale(args.scale, "count", "--kubeconfig", plane.kubeconfig)


def svg_plot(runs, path):
    """Writes an SVG of two panels against the number of objects: seconds (uninstall and floor) and
    the uninstall's peak RSS (MB). Linear growth shows as points on a straight line through 0.
    Plain SVG text, no plotting library."""
    runs = sorted(runs, key=lambda r: r["objects"])
    if not runs:
        return
    w, h, pad_l, pad_r, pad_t, pad_b, gap = 760, 300, 70, 20, 40, 50, 60
    panel_w = (w - pad_l - pad_r - gap) // 2
    xmax = max(r["objects"] for r in runs) * 1.05
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>']

    def nice_max(v):
        if v <= 0:
            return 1
        mag = 10 ** len(str(int(v))) / 10
        for m in (1, 2, 2.5, 5, 10):
            if m * mag >= v:
                return m * mag
        return v

    def panel(x0, title, ylabel, series, limit=None):
        ymax = nice_max(max([v for _, pts in series for _, v in pts] + ([limit] if limit else [])) * 1.1)
        y0, ph = pad_t, h - pad_t - pad_b

        def px(x):
            return x0 + x / xmax * panel_w

        def py(y):
            return y0 + ph - y / ymax * ph

        out.append(f'<text x="{x0 + panel_w / 2}" y="{y0 - 18}" text-anchor="middle" '
                   f'font-size="13" font-weight="bold">{title}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{panel_w}" height="{ph}" fill="none" stroke="#888"/>')
        for i in range(5):
            yv = ymax * i / 4
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" '
                       f'stroke="#ddd"/><text x="{x0 - 5}" y="{py(yv) + 4:.1f}" '
                       f'text-anchor="end">{yv:g}</text>')
        for r in runs:
            out.append(f'<text x="{px(r["objects"]):.1f}" y="{y0 + ph + 15}" '
                       f'text-anchor="middle">{r["objects"]:,}</text>')
        out.append(f'<text x="{x0 + panel_w / 2}" y="{h - 12}" text-anchor="middle">objects '
                   f'(Backups and the rest of the mix)</text>')
        out.append(f'<text transform="translate({x0 - 45},{y0 + ph / 2}) rotate(-90)" '
                   f'text-anchor="middle">{ylabel}</text>')
        if limit:
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{py(limit):.1f}" y2="{py(limit):.1f}" '
                       f'stroke="#c00" stroke-dasharray="4 3"/><text x="{x0 + panel_w - 4}" '
                       f'y="{py(limit) - 4:.1f}" text-anchor="end" fill="#c00">target {limit:g}</text>')
        for k, (name, pts) in enumerate(series):
            color = ("#1f77b4", "#ff7f0e")[k % 2]
            path = " ".join(f'{"M" if i == 0 else "L"}{px(x):.1f},{py(y):.1f}' for i, (x, y) in enumerate(pts))
            out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, y in pts:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>')
            out.append(f'<text x="{x0 + 8}" y="{y0 + 16 + 14 * k}" fill="{color}">{name}</text>')

    panel(pad_l, "time to remove everything", "seconds",
          [("backup-guard uninstall", [(r["objects"], r["uninstall"]["seconds"]) for r in runs]),
           ("floor (client-go)", [(r["objects"], r["floor"]["seconds"]) for r in runs])])
    panel(pad_l + panel_w + gap, "uninstall peak RSS", "MB",
          [("backup-guard uninstall", [(r["objects"], r["uninstall"]["peak_rss_mb"]) for r in runs])],
          limit=100)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backup-guard", required=True)
    ap.add_argument("--scale", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="1000,3000,10000")
    ap.add_argument("--floor-concurrency", default="8,32,128",
                    help="candidates, tuned on the middle size; one value skips tuning")
    ap.add_argument("--timeout", type=int, default=3600, help="uninstall --timeout, seconds")
    ap.add_argument("--state-dir", default="/tmp/bg-bench")
    ap.add_argument("--preload", default="", help="diagnostic: LD_PRELOAD for the uninstall process")
    ap.add_argument("--plot", default="",
                    help="also write the SVG plot of time and RSS against size here "
                         "(default OUT/uninstall-scale.svg)")
    ap.add_argument("--no-floor", action="store_true",
                    help="the uninstall alone (e.g. an A/B of its peak RSS); no floor runs or tuning")
    ap.add_argument("--uninstall-args", default="",
                    help="extra arguments for `backup-guard uninstall`, e.g. '--workers 16 --qps 0'")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    logdir = os.path.join(args.out, "logs")
    os.makedirs(logdir, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    candidates = [int(c) for c in args.floor_concurrency.split(",")]

    plane = Plane(args.state_dir)
    result = {"sizes": sizes, "runs": [], "tuning": [], "loadavg_start": loadavg(),
              "uninstall_args": args.uninstall_args}
    started = time.time()
    try:
        log("starting the control plane ...")
        plane.up()
        log("control plane up:", plane.kubeconfig)
        best = candidates[0]
        if len(candidates) > 1 and not args.no_floor:
            tune_size = sizes[len(sizes) // 2]
            best_rate = -1
            for c in candidates:
                seed(plane, args, tune_size)
                r = run_floor(plane, args, c)
                log(f"floor tuning at {tune_size}: concurrency {c}: {r['seconds']:.2f}s "
                    f"({r['calls_per_second']:.0f} calls/s)")
                result["tuning"].append({"size": tune_size, "concurrency": c, "seconds": r["seconds"],
                                         "calls_per_second": r["calls_per_second"]})
                if r["calls_per_second"] > best_rate:
                    best, best_rate = c, r["calls_per_second"]
        result["floor_concurrency"] = best
        log(f"floor concurrency: {best}")
        for size in sizes:
            created = seed(plane, args, size)
            log(f"size {size}: uninstall ...")
            u = run_uninstall(plane, args, size, logdir)
            u["left"] = remaining(plane, args)
            log(f"size {size}: uninstall exit {u['exit']} in {u['seconds']:.1f}s, RSS {u['peak_rss_mb']:.1f} MB, "
                f"apiserver CPU {u['apiserver_cpu_s']:.1f}s, calls {u['calls_by_verb']}")
            f = None
            if not args.no_floor:
                seed(plane, args, size)
                log(f"size {size}: floor ...")
                f = run_floor(plane, args, best)
                log(f"size {size}: floor {f['seconds']:.2f}s, apiserver CPU {f['apiserver_cpu_s']:.1f}s, "
                    f"calls {f['calls_by_verb']}")
            result["runs"].append({"backups": size, "created": created, "objects": sum(created.values()),
                                   "uninstall": u, "floor": f})
            with open(os.path.join(args.out, "uninstall.json"), "w") as fh:
                json.dump(result, fh, indent=1)
            if not args.no_floor:
                svg_plot(result["runs"], args.plot or os.path.join(args.out, "uninstall-scale.svg"))
    finally:
        log("stopping the control plane")
        plane.down()
    result["loadavg_end"] = loadavg()
    result["wall_s"] = time.time() - started
    with open(os.path.join(args.out, "uninstall.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"{'objects':>8} {'uninstall s':>11} {'floor s':>8} {'ratio':>6} {'RSS MB':>7} "
          f"{'apiserver cpu s':>15} {'(floor)':>8} {'calls':>7} {'(floor)':>8} {'load 1m':>8}")
    for r in result["runs"]:
        u, f = r["uninstall"], r["floor"]
        if f is None:
            print(f"{r['objects']:>8,} {u['seconds']:>11.1f} {'-':>8} {'-':>6} {u['peak_rss_mb']:>7.1f} "
                  f"{u['apiserver_cpu_s']:>15.1f} {'-':>8} {sum(u['calls'].values()):>7,} {'-':>8} "
                  f"{u['loadavg_before'][0]:>4.1f}")
            continue
        print(f"{r['objects']:>8,} {u['seconds']:>11.1f} {f['seconds']:>8.2f} {u['seconds'] / f['seconds']:>6.1f} "
              f"{u['peak_rss_mb']:>7.1f} {u['apiserver_cpu_s']:>15.1f} {f['apiserver_cpu_s']:>8.1f} "
              f"{sum(u['calls'].values()):>7,} {sum(f['calls'].values()):>8,} "
              f"{u['loadavg_before'][0]:>4.1f}/{f['loadavg_before'][0]:.1f}")


if __name__ == "__main__":
    main()
