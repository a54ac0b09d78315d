#!/usr/bin/env python3
"""Writes bench/RESULTS.md from bench/out/{admission,uninstall}.json, the machine, and notes.md."""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess


def sh(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(v, nd=2):
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:,.{nd}f}"


def ratio(a, b, nd=2):
    if a is None or b in (None, 0) or a != a or b != b:
        return "n/a"
    return f"{a / b:.{nd}f}×"


def machine(args):
    cpu = re.search(r"Model name:\s*(.*)", sh("lscpu"))
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    gxx = sh("g++", "--version").splitlines()
    go = sh("go", "version")
    return [
        f"- CPU: {cpu.group(1) if cpu else platform.processor()}, {os.cpu_count()} cores; "
        f"memory {mem_kb / 1024 / 1024:.0f} GiB; kernel {platform.release()}",
        f"- backup-guard: {sh(args.backup_guard, 'version') or '?'} (Release, -O3, {gxx[0] if gxx else 'g++'}), "
        f"built in its own directory",
        f"- peer: sigs.k8s.io/controller-runtime v0.22.5, k8s.io/* v0.34.3, {go}",
        f"- load generator: vegeta {os.path.basename(args.vegeta).replace('vegeta-', '')} "
        f"(HTTP/1.1, TLS session tickets off)",
        "- control plane: tests/e2e/controlplane.sh (etcd v3.6.4, kube-apiserver v1.34.3, unpinned)",
    ]


TARGET_P99_MS = 1.0


def admission_section(adm):
    lines = []
    rows = [r for r in adm["rows"] if "failed" not in r]
    failed = [r for r in adm["rows"] if "failed" in r]
    lines += [
        "## Admission: backup-guard vs a controller-runtime webhook",
        "",
        f"Each row: a fresh server pinned to **core 0** (`taskset -c {adm['server_cpu']}`), vegeta pinned to "
        f"**core {adm['loadgen_cpu']}**, {adm['duration_s']} s after a 2 s warm-up at 500 req/s. The requests "
        "alternate a SystemBackup CREATE (`/v1/webhook/mutation`, answered with a JSON patch) and a Backup "
        "DELETE with an empty `status.backupTargetName` (`/v1/webhook/validation`, allowed with a warning). "
        f"Fixed rates cap vegeta at `-max-workers={adm.get('rate_max_workers', 'unbounded')}` (so at most that "
        "many requests, and keep-alive connections, in flight); a rate marked † was not sustained (under 90 % "
        "of it answered: beyond what this server, or vegeta's core, can do). Saturation: `-rate=0 "
        "-max-workers=N`, N concurrent connections sending back to back. "
        "\"keep-alive, no gzip\": the same saturation row with `Accept-Encoding: identity` (Go's client, "
        "like kube-apiserver's webhook client, otherwise asks for gzip). "
        "\"new conn\": `-keepalive=false`, a full TLS handshake per request (no resumption). "
        "Latency is over every 2xx answer; CPU is the server's utime+stime per 1,000 requests; RSS is the "
        "server's VmHWM. \"srv/gen CPU\" is the share of one core the server / vegeta used. "
        "Ratio rows are backup-guard ÷ peer (throughput: higher is better; the rest: lower is better). "
        "\"floor\": nginx answering every request with one fixed AdmissionReview over the same TLS and "
        "HTTP (no decoding, no rules): what the machine, the kernel and vegeta leave of the tail.",
        "",
        "| connections | offered req/s | server | req/s | p50 ms | p99 ms | p99.9 ms | CPU s / 1k req | peak RSS MB "
        "| srv / gen CPU | errors | load avg |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = []
    for r in rows:
        k = (r.get("mode"), r["rate"], r.get("workers"))
        if k not in keys:
            keys.append(k)
    for k in keys:
        pair = {r["server"]: r for r in rows if (r.get("mode"), r["rate"], r.get("workers")) == k}
        mode = k[0]
        rate = f"saturation, {k[2]} conns" if k[1] == 0 else f"{k[1]:,}"
        for name in ("backup-guard", "peer", "floor"):
            r = pair.get(name)
            if not r:
                continue
            errs = sum(r["errors"].values())
            mark = "" if r.get("sustained", True) else " †"
            lines.append(
                f"| {mode} | {rate} | {name} | {r['throughput']:,.0f}{mark} | {num(r['p50_ms'])} | {num(r['p99_ms'])} "
                f"| {num(r['p999_ms'])} | {num(r['cpu_s_per_1k'], 3)} | {num(r['peak_rss_mb'], 1)} "
                f"| {r['server_cpu_util']:.0%} / {r['loadgen_cpu_util']:.0%} | {errs} "
                f"| {r['loadavg_before'][0]:.2f} |")
        a, b = pair.get("backup-guard"), pair.get("peer")
        if a and b:
            lines.append(
                f"| | | **ratio** | **{ratio(a['throughput'], b['throughput'])}** | {ratio(a['p50_ms'], b['p50_ms'])} "
                f"| {ratio(a['p99_ms'], b['p99_ms'])} | {ratio(a['p999_ms'], b['p999_ms'])} "
                f"| {ratio(a['cpu_s_per_1k'], b['cpu_s_per_1k'])} | {ratio(a['peak_rss_mb'], b['peak_rss_mb'])} | | | |")
    for r in failed:
        lines.append(f"\nRow failed: {r['server']} keepalive={r['keepalive']} rate={r['rate']}: {r['failed']}")
    lines.append("")

    # Targets
    sat_workers = sorted({r.get("workers") or 0 for r in rows if r["rate"] == 0})

    def row(server, keepalive, rate, workers=None):
        mode = "keep-alive" if keepalive else "new conn"
        for r in rows:
            if r["server"] == server and r.get("mode") == mode and r["rate"] == rate and (
                    workers is None or r.get("workers") == workers):
                return r
        return None

    lines += ["### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for keepalive, label in ((True, "keep-alive"), (False, "new TLS connection per request")):
        for w in sat_workers:
            a, b = row("backup-guard", keepalive, 0, w), row("peer", keepalive, 0, w)
            if a and b:
                x = a["throughput"] / b["throughput"]
                verdict = "met" if x >= 1.5 else f"**missed**: {x / 1.5:.0%} of the target ({x:.2f}× vs 1.5×)"
                lines.append(f"| saturation ≥ 1.5× the peer ({label}, {w} conns) | {a['throughput']:,.0f} vs "
                             f"{b['throughput']:,.0f} req/s = {x:.2f}× | {verdict} |")
    for w in sat_workers:
        a = next((r for r in rows if r["server"] == "backup-guard" and r.get("mode") == "keep-alive, no gzip"
                  and r.get("workers") == w), None)
        b = next((r for r in rows if r["server"] == "peer" and r.get("mode") == "keep-alive, no gzip"
                  and r.get("workers") == w), None)
        if a and b:
            x = a["throughput"] / b["throughput"]
            lines.append(f"| (diagnostic) the same, keep-alive, {w} conns, response compression off "
                         f"| {a['throughput']:,.0f} vs {b['throughput']:,.0f} req/s = {x:.2f}×; CPU/request "
                         f"{a['cpu_s_per_1k']:.3f} vs {b['cpu_s_per_1k']:.3f} ms | "
                         + ("would be met" if x >= 1.5 else "still short") + " |")
    a = row("backup-guard", True, 2000)
    if a:
        p = a["p99_ms"]
        verdict = "met" if p <= TARGET_P99_MS else f"**missed** by {p - TARGET_P99_MS:.2f} ms ({p / TARGET_P99_MS:.1f}×)"
        lines.append(f"| p99 ≤ 1 ms at 2,000 req/s keep-alive | {p:.3f} ms | {verdict} |")
    ratios = []
    for r in rows:
        if r["server"] == "backup-guard":
            b = next((x for x in rows if x["server"] == "peer" and x.get("mode") == r.get("mode")
                      and x["rate"] == r["rate"] and x.get("workers") == r.get("workers")), None)
            if b and b["peak_rss_mb"]:
                ratios.append((r["peak_rss_mb"] / b["peak_rss_mb"], r, b))
    if ratios:
        worst = max(ratios, key=lambda t: t[0])
        best = min(ratios, key=lambda t: t[0])
        verdict = "met on every row" if worst[0] <= 0.5 else (
            f"**missed** on {sum(1 for t in ratios if t[0] > 0.5)} of {len(ratios)} rows; worst "
            f"{worst[0]:.2f} ({worst[0] / 0.5:.1f}× the allowed half)")
        lines.append(f"| peak RSS ≤ ½ the peer's | {best[0]:.2f}–{worst[0]:.2f} of the peer's "
                     f"({best[1]['peak_rss_mb']:.1f}–{worst[1]['peak_rss_mb']:.1f} MB vs "
                     f"{min(t[2]['peak_rss_mb'] for t in ratios):.1f}–{max(t[2]['peak_rss_mb'] for t in ratios):.1f} MB) "
                     f"| {verdict} |")
    eq = adm.get("equivalence", {})
    lines += ["", "Equivalence check before the runs (both servers, both bodies: same status, same `allowed`, "
              "same object after applying the patch, a warning on the DELETE): "
              + ("**passed**." if not eq.get("problems") else "**problems**: " + "; ".join(eq["problems"])), ""]
    ans = eq.get("answers", {})
    for name in ("backup-guard", "peer"):
        m = ans.get(name, {}).get("mutation", {})
        if m.get("ops") is not None:
            lines.append(f"- {name} patch: `{json.dumps(m['ops'], separators=(',', ':'))}`")
    lines.append("")
    return lines


def uninstall_cpu(out, r):
    u = r["uninstall"]
    if "cpu_s" in u:
        return u["cpu_s"]
    cpu = 0.0  # older uninstall.json: read the /usr/bin/time -v report
    try:
        with open(os.path.join(out, "logs", f"uninstall-{r['backups']}.time")) as f:
            for line in f:
                key, _, value = line.strip().rpartition(":")
                if key in ("User time (seconds)", "System time (seconds)"):
                    cpu += float(value)
    except OSError:
        return float("nan")
    return cpu


def uninstall_section(un, out):
    lines = ["## Uninstall at scale, against the real control plane", ""]
    lines.append(
        "One control plane (tests/e2e/controlplane.sh: etcd, kube-apiserver v1.34.3, kube-controller-manager; "
        "the engine's v1.10.0 CRDs from tests/engine/engine-crds.sh; no webhook registered), reused for every run and "
        "seeded again before each. Size N = N Backups (half failed: state Error, empty target name), N/20 "
        "BackupVolumes, N/10 SystemBackups (state Ready, no owner reference, as before an upgrade), N/50 "
        "BackupBackingImages, one default BackupTarget, every one with the `longhorn.io` finalizer, and the "
        "Setting `deleting-confirmation-flag` = \"true\". Nothing is pinned: the uninstall client, kube-apiserver "
        "and etcd share both cores.")
    lines.append("")
    lines.append("- **uninstall**: `backup-guard uninstall --kubeconfig K --namespace longhorn-system --force "
                 "--timeout 3600s` under `/usr/bin/time -v`: wall time to exit 0, peak RSS.")
    lines.append(f"- **floor**: `bench/scale floor`: one list per kind, then per object one DELETE and one merge "
                 f"PATCH `{{\"metadata\":{{\"finalizers\":null}}}}`, from {un.get('floor_concurrency')} workers "
                 "(client-go, no client-side rate limit, HTTP/2).")
    if un.get("tuning"):
        t = ", ".join(f"{x['concurrency']} workers {x['calls_per_second']:,.0f} calls/s" for x in un["tuning"])
        lines.append(f"- floor concurrency tuned at {un['tuning'][0]['size']:,} Backups: {t}.")
    lines.append("- API calls: `apiserver_request_total` for group longhorn.io, before/after.")
    lines += ["", "| Backups | objects | uninstall s | floor s | uninstall ÷ floor | uninstall peak RSS MB "
              "| uninstall CPU s | apiserver CPU s (uninstall / floor) | etcd CPU s (uninstall / floor) "
              "| API calls (uninstall / floor) | exit | left | load avg |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in un["runs"]:
        u, f = r["uninstall"], r["floor"]
        left = sum(u.get("left", {}).values())
        lines.append(
            f"| {r['backups']:,} | {r['objects']:,} | {u['seconds']:,.1f} | {f['seconds']:,.2f} "
            f"| **{u['seconds'] / f['seconds']:.1f}×** | {u['peak_rss_mb']:.1f} | {uninstall_cpu(out, r):.1f} "
            f"| {u['apiserver_cpu_s']:.1f} / {f['apiserver_cpu_s']:.1f} | {u['etcd_cpu_s']:.1f} / {f['etcd_cpu_s']:.1f} "
            f"| {sum(u['calls'].values()):,} / {sum(f['calls'].values()):,} | {u['exit']} | {left} "
            f"| {u['loadavg_before'][0]:.2f} |")
    lines.append("")
    lines.append("API calls by verb (uninstall | floor):")
    lines.append("")
    for r in un["runs"]:
        u, f = r["uninstall"], r["floor"]
        lines.append(f"- {r['backups']:,} Backups: {json.dumps(u['calls_by_verb'])} | {json.dumps(f['calls_by_verb'])}")
    lines.append("")
    lines.append("Time per 1,000 objects (growth; linear means a constant column):")
    lines.append("")
    lines.append("| Backups | objects | uninstall s / 1k objects | floor s / 1k objects | step ends (s after start) |")
    lines.append("|---:|---:|---:|---:|---|")
    for r in un["runs"]:
        u, f = r["uninstall"], r["floor"]
        steps = ", ".join(f"{s['kind']} {s['done_at_s']:.0f}" for s in u.get("steps", []))
        lines.append(f"| {r['backups']:,} | {r['objects']:,} | {u['seconds'] / r['objects'] * 1000:.2f} "
                     f"| {f['seconds'] / r['objects'] * 1000:.3f} | {steps} |")
    lines.append("")
    lines += ["### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    big = max(un["runs"], key=lambda r: r["objects"]) if un["runs"] else None
    if big:
        u, f = big["uninstall"], big["floor"]
        x = u["seconds"] / f["seconds"]
        lines.append(f"| uninstall ≤ 1.5× the floor ({big['backups']:,} Backups) | {u['seconds']:,.1f} s vs "
                     f"{f['seconds']:.2f} s = {x:.2f}× | " + ("met" if x <= 1.5 else f"**missed** by {x / 1.5 - 1:.0%}")
                     + " |")
        rss = max(r["uninstall"]["peak_rss_mb"] for r in un["runs"])
        lines.append(f"| uninstall RSS ≤ 100 MB | {rss:.1f} MB at most | "
                     + ("met" if rss <= 100 else f"**missed** by {rss - 100:.0f} MB") + " |")
    lines.append("")
    return lines


def apiserver_section(api):
    """The latency the API server sees (apiserver.py): one table per row of writes."""
    lines = ["## The latency the API server sees: writes through kube-apiserver with each webhook", "",
             "`bench/run-bench.sh --only apiserver` (bench/apiserver.py). One control plane; "
             f"{api['clients']} writers on one client-go client, {api['duration_s']} s per row; the three "
             "set-ups one after the other for each rate. *added* = this set-up's quantile minus the "
             "no-webhook row's at the same rate. *API server* = its "
             "`apiserver_admission_webhook_admission_duration_seconds` for the webhook, interpolated inside "
             "the histogram's buckets (0–5 ms is its first bucket, so below 5 ms it is a linear guess).", "",
             "| rate | set-up | write | writes/s | p50 ms | p99 ms | added p50 | added p99 | API server p50 / p99 ms | errors | load |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in api["rows"]:
        rate = "saturation" if r["rate"] == 0 else f"{r['rate']:g}/s"
        for op, kind, label in (("systembackup_create", "mutation", "SystemBackup CREATE"),
                                ("backup_delete", "validation", "Backup DELETE")):
            s = r[op]
            a = r.get(f"apiserver_{kind}")
            added = ("", "") if r["setup"] == "none" else (f"{s['added_p50_ms']:+.2f}", f"{s['added_p99_ms']:+.2f}")
            lines.append(f"| {rate} | {r['setup']} | {label} | {s['per_s']:.0f} | {s['p50_ms']:.2f} | "
                         f"{s['p99_ms']:.2f} | {added[0]} | {added[1]} | "
                         + (f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f}" if a else "") +
                         f" | {s['errors']} | {r['loadavg_before'][0]:.1f} |")
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--notes", required=True)
    ap.add_argument("--backup-guard", required=True)
    ap.add_argument("--vegeta", required=True)
    args = ap.parse_args()
    adm = load(os.path.join(args.out, "admission.json"))
    un = load(os.path.join(args.out, "uninstall.json"))
    api = load(os.path.join(args.out, "apiserver.json"))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmark results", "",
             f"Generated by `bench/run-bench.sh` (`make bench`) on {now}. Benchmarks never fail on time; "
             "how to run them: bench/README.md.", "", "## Machine", ""]
    lines += machine(args)
    la = []
    if adm:
        la.append(f"admission: 1-min load average {min(r['loadavg_before'][0] for r in adm['rows'] if 'loadavg_before' in r):.2f}–"
                  f"{max(r['loadavg_before'][0] for r in adm['rows'] if 'loadavg_before' in r):.2f} before the rows")
    if un:
        la.append(f"uninstall: {un['loadavg_start'][0]:.2f} at the start, {un.get('loadavg_end', [float('nan')])[0]:.2f} at the end")
    lines.append("- load average (other test suites share this 2-core machine): " + "; ".join(la))
    lines.append("")
    if os.path.exists(args.notes):
        with open(args.notes) as f:
            lines += [f.read().rstrip(), ""]
    if adm:
        lines += admission_section(adm)
    if api:
        lines += apiserver_section(api)
    if un:
        lines += uninstall_section(un, args.out)
    with open(args.results, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
