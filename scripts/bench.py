#!/usr/bin/env python3
"""rollgate's load benchmark (run through scripts/bench, which builds and installs what it needs).

Starts, on loopback:
  - baseline `noop` and `full-parse` webhooks (benches/baseline_webhook.rs: rollgate's TLS stack, trivial handlers),
  - rollgate on its embedded store, and rollgate on Redis (a redis-server started here, AOF on, fsync always),
files a ticket and approves it on each rollgate so that alice@example.com holds a grant for production/checkout-api,
then loads every target, interleaved over several rounds, with oha (HTTP/1.1 keep-alive, as the API server uses) at
each concurrency, using the team's fixture (tests/data/restart-review.json, a 7 KB `kubectl rollout restart` review)
as the gated body and its namespace-`staging` variant as the ungated one.

Prints per target and concurrency the medians over rounds of req/s, p50/p99/p99.9 of the requests on open
connections (each connection's first request, which waits for its TCP and TLS handshake, is shown apart as
"connect"), errors, server CPU per request (and Redis's, for the Redis targets), peak RSS, and the ratios to the baselines; then each goal of issue #7 with the figure and PASS or MISS; then the
fault scenario (Redis refusing connections) and, with --soak, memory over a long run.
"""

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# scripts/bench builds with `--profile dist` (Cargo.toml): the shipped, fat-LTO build.
DIST = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "dist"
GATED_BODY = ROOT / "tests" / "data" / "restart-review.json"
UNGATED_BODY = ROOT / "tests" / "data" / "staging-restart-review.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of stat(5); index 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_mib(pid):
    return status_kib(pid, "VmRSS") / 1024


class Peak:
    """Samples a process's RSS every 20 ms while a load runs (VmHWM cannot be reset for another process everywhere)."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, rss_mib(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


class Server:
    def __init__(self, name, argv, cwd, env=None, ready=None):
        self.name = name
        self.log = open(cwd / f"{name}.log", "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.ready = ready

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def wait_until(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {what} did not come up within {timeout}s")


def http_ok(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    conn.request("GET", path)
    return conn.getresponse().status == 200


def review(port, body, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))]


def oha(oha_bin, url, body, concurrency, seconds):
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-oha-") as tmp:
        db = Path(tmp) / "requests.db"
        out = subprocess.run(
            [oha_bin, "-z", f"{seconds}s", "-c", str(concurrency), "-w", "--no-tui", "--output-format", "json",
             "--http-version", "1.1", "--insecure", "-m", "POST", "-H", "Content-Type: application/json",
             "--db-url", str(db), "-D", str(body), url],
            check=True, capture_output=True, text=True,
        )
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT duration FROM oha ORDER BY start").fetchall()
    # oha times each connection's first request from before its TCP connect
    # and TLS handshake, all of them at once at the start of the run. The API
    # server keeps its connections to a webhook open, so the latency it sees
    # is that of the later requests: the first `concurrency` to start (one per
    # connection; none starts a second before the handshakes are done) are
    # left out of the percentiles and reported as the connect time.
    first, kept = rows[:concurrency], sorted(d for (d,) in rows[concurrency:])
    report = json.loads(out.stdout)
    codes = report.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    failed = sum(int(n) for code, n in codes.items() if code != "200")
    failed += sum(int(n) for n in report.get("errorDistribution", {}).values())
    pct = report["latencyPercentiles"]
    return {
        "ok": ok,
        "errors": failed,
        "rps": ok / report["summary"]["total"],
        "p50": percentile(kept, 0.50) * 1000,
        "p99": percentile(kept, 0.99) * 1000,
        "p999": percentile(kept, 0.999) * 1000,
        "max": (kept[-1] if kept else 0) * 1000,
        "p999_with_connect": (pct.get("p99.9") or 0) * 1000,
        "connect": max((d for (d,) in first), default=0) * 1000,
    }


def load(oha_bin, target, concurrency, seconds):
    store = target.get("store")
    cpu0 = cpu_seconds(target["server"].pid)
    store0 = cpu_seconds(store.pid) if store else 0
    with Peak(target["server"].pid) as peak:
        result = oha(oha_bin, target["url"], target["body"], concurrency, seconds)
    cpu = cpu_seconds(target["server"].pid) - cpu0
    result["cpu_us"] = cpu * 1e6 / max(result["ok"], 1)
    # Redis shares the cores: its work per review is part of the cost.
    result["store_cpu_us"] = (cpu_seconds(store.pid) - store0) * 1e6 / max(result["ok"], 1) if store else 0
    result["peak_mib"] = peak.peak
    return result


def median(rounds, key):
    return statistics.median(r[key] for r in rounds)


def machine():
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = []
    for cmd in (["rustc", "--version"], ["redis-server", "--version"]):
        try:
            versions.append(subprocess.run(cmd, capture_output=True, text=True).stdout.strip().split(" sha=")[0])
        except OSError:
            pass
    return f"{os.cpu_count()} x {model}, {os.sysconf('SC_PHYS_PAGES') * PAGE // MIB // 1024} GiB, Linux {platform.release()}; " + "; ".join(versions)


def filesystem(path):
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout.split()
    return out[-1] if out else "unknown filesystem"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3, help="length of each load run")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--soak", type=int, default=0, help="also run a mixed load at concurrency 32 for SECONDS, sampling RSS")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--appendfsync", choices=("always", "everysec"), default="always",
                    help="the benchmark Redis's fsync policy (always: every acknowledged record survives a crash, "
                    "the setting the README documents for Redis < 7.2; everysec: Redis's default with AOF)")
    ap.add_argument("--targets", help="only these targets, comma-separated (e.g. 'full-parse,redis gated'); "
                    "the baselines are kept for the ratios, the goals are not judged")
    ap.add_argument("--compare", metavar="BINARY",
                    help="also serve the embedded targets from another rollgate build (e.g. the commit before a change "
                         "to the hot path) as 'before ungated' and 'before gated', interleaved with the others, and "
                         "print this build's req/s as a ratio of that one's")
    ap.add_argument("--redis-dir", help="directory of the benchmark Redis's AOF (default: a temporary directory on "
                    "the same disk as the others; /dev/shm shows rollgate's own cost without the disk's fsync)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    work = Path(tempfile.mkdtemp(prefix="rollgate-bench-"))
    servers = []
    try:
        run(args, levels, work, servers)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
        for leftover in Path(args.redis_dir or tempfile.gettempdir()).glob("rollgate-bench-redis-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def start_rollgate(name, work, users, config, store, servers, binary=DIST / "rollgate"):
    ports = {k: free_port() for k in ("webhook", "api", "admin")}
    argv = [str(binary), "serve", "--dev", "--dev-dir", str(work / name), "--users-file", str(users),
            "--config", str(config), "--webhook-addr", f"127.0.0.1:{ports['webhook']}",
            "--api-addr", f"127.0.0.1:{ports['api']}", "--admin-addr", f"127.0.0.1:{ports['admin']}"]
    if store:
        argv += ["--store", store]
    env = dict(os.environ)
    env.pop("RUST_LOG", None)  # the default log level, as deployed
    server = Server(name, argv, work, env)
    servers.append(server)
    wait_until(f"{name} /readyz", lambda: http_ok(ports["admin"], "/readyz"))
    return server, ports


def grant_alice(name, work, ports, tokens):
    env = dict(os.environ, ROLLGATE_SERVER=f"https://127.0.0.1:{ports['api']}", ROLLGATE_CA=str(work / name / "ca.crt"))
    cli = str(DIST / "rollgate")
    ticket = subprocess.run(
        [cli, "ticket", "request", "-n", "production", "checkout-api", "--action", "restart",
         "--reason", "load benchmark", "--token", tokens["alice"], "-o", "name"],
        env=env, check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([cli, "ticket", "approve", ticket, "--comment", "benchmark", "--token", tokens["bob"]],
                   env=env, check=True, capture_output=True, text=True)


def run(args, levels, work, servers):
    tokens = {"alice": "bench-alice-" + os.urandom(8).hex(), "bob": "bench-bob-" + os.urandom(8).hex()}
    users = work / "users.json"
    users.write_text(json.dumps({"users": [
        {"name": "alice@example.com", "token": tokens["alice"], "groups": ["developers", "system:authenticated"]},
        {"name": "bob@example.com", "token": tokens["bob"], "groups": ["rollgate:approvers", "system:authenticated"]},
    ]}))
    config = work / "config.yaml"
    # Unlimited redeploys: the load admits thousands of restarts of one application.
    config.write_text("policy:\n  protectedNamespaces: [production]\n  rateLimit: {limit: 0}\n")

    redis_port = free_port()
    redis_dir = Path(tempfile.mkdtemp(prefix="rollgate-bench-redis-", dir=args.redis_dir))
    redis = Server("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(redis_dir),
                             "--appendonly", "yes", "--appendfsync", args.appendfsync, "--save", ""], work)
    servers.append(redis)
    wait_until("redis-server", lambda: socket.create_connection(("127.0.0.1", redis_port), 1).close() is None)

    embedded, embedded_ports = start_rollgate("rollgate-embedded", work, users, config, None, servers)
    on_redis, redis_ports = start_rollgate("rollgate-redis", work, users, config, f"redis://127.0.0.1:{redis_port}/0", servers)
    rollgates = [("rollgate-embedded", embedded_ports), ("rollgate-redis", redis_ports)]
    if args.compare:
        before, before_ports = start_rollgate("rollgate-before", work, users, config, None, servers, Path(args.compare))
        rollgates.append(("rollgate-before", before_ports))
    ca = work / "rollgate-embedded" / "ca.crt"
    cert, key = work / "rollgate-embedded" / "tls.crt", work / "rollgate-embedded" / "tls.key"
    baselines = {}
    for mode in ("noop", "full-parse"):
        port = free_port()
        server = Server(mode, [str(DIST / "examples" / "baseline-webhook"), "--mode", mode,
                               "--listen", f"127.0.0.1:{port}", "--cert", str(cert), "--key", str(key)], work)
        servers.append(server)
        baselines[mode] = (server, port)
        wait_until(mode, lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None)

    for name, ports in rollgates:
        grant_alice(name, work, ports, tokens)
        ca_of = work / name / "ca.crt"
        status, answer = review(ports["webhook"], GATED_BODY.read_bytes(), ca_of)
        if status != 200 or answer["response"]["allowed"] is not True:
            sys.exit(f"bench: {name} does not admit the gated review with the grant: {answer}")
        status, answer = review(ports["webhook"], UNGATED_BODY.read_bytes(), ca_of)
        if answer["response"]["allowed"] is not True:
            sys.exit(f"bench: {name} does not admit the ungated review: {answer}")
    for mode, (server, port) in baselines.items():
        status, answer = review(port, UNGATED_BODY.read_bytes(), ca)
        if answer["response"]["allowed"] is not True or answer["response"]["uid"] == "":
            sys.exit(f"bench: baseline {mode} answers wrongly: {answer}")

    time.sleep(1)
    idle = {s.name: rss_mib(s.pid) for s in servers if s.name != "redis"}

    def url(port):
        return f"https://127.0.0.1:{port}/validate"

    targets = {
        "noop": {"server": baselines["noop"][0], "url": url(baselines["noop"][1]), "body": UNGATED_BODY},
        "full-parse": {"server": baselines["full-parse"][0], "url": url(baselines["full-parse"][1]), "body": UNGATED_BODY},
        "embedded ungated": {"server": embedded, "url": url(embedded_ports["webhook"]), "body": UNGATED_BODY},
        "embedded gated": {"server": embedded, "url": url(embedded_ports["webhook"]), "body": GATED_BODY},
        "redis ungated": {"server": on_redis, "url": url(redis_ports["webhook"]), "body": UNGATED_BODY, "store": redis},
        "redis gated": {"server": on_redis, "url": url(redis_ports["webhook"]), "body": GATED_BODY, "store": redis},
    }
    if args.compare:
        targets["before ungated"] = {"server": before, "url": url(before_ports["webhook"]), "body": UNGATED_BODY}
        targets["before gated"] = {"server": before, "url": url(before_ports["webhook"]), "body": GATED_BODY}
    if args.targets:
        wanted = {t.strip() for t in args.targets.split(",")} | {"noop", "full-parse"}
        if args.compare:
            wanted |= {"before " + t.split()[-1] for t in wanted if t.startswith("embedded ")}
        unknown = wanted - set(targets)
        if unknown:
            sys.exit(f"bench: unknown targets {sorted(unknown)}; known: {sorted(targets)}")
        targets = {t: v for t, v in targets.items() if t in wanted}
    print(f"machine: {machine()}")
    print(f"Redis: AOF on, appendfsync {args.appendfsync}, in {redis_dir} ({filesystem(redis_dir)})")
    print(f"body: {GATED_BODY.name} ({GATED_BODY.stat().st_size} bytes) gated, {UNGATED_BODY.name} ungated; "
          f"{args.rounds} rounds x {args.seconds}s per target and concurrency, interleaved; oha {subprocess.run([args.oha, '--version'], capture_output=True, text=True).stdout.strip()}")
    print("idle RSS (started, warmed by one review of each kind): " + ", ".join(f"{k} {v:.1f} MiB" for k, v in idle.items()))
    sys.stdout.flush()

    results = {(t, c): [] for t in targets for c in levels}
    for round_no in range(args.rounds):
        for c in levels:
            order = list(targets)
            random.shuffle(order)
            for t in order:
                results[(t, c)].append(load(args.oha, targets[t], c, args.seconds))
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    time.sleep(3)
    idle_after = {s.name: rss_mib(s.pid) for s in servers if s.name != "redis"}

    summary = {}
    for (t, c), rounds in results.items():
        summary[(t, c)] = {k: median(rounds, k) for k in ("rps", "p50", "p99", "p999", "max", "connect", "p999_with_connect", "cpu_us", "store_cpu_us", "peak_mib")}
        summary[(t, c)]["errors"] = sum(r["errors"] for r in rounds)
        summary[(t, c)]["requests"] = sum(r["ok"] for r in rounds)

    for c in levels:
        print(f"\n## concurrency {c}")
        print(f"| {'target':<17} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'p99.9 ms':>8} | {'connect ms':>10} | {'errors':>6} | {'CPU µs/req':>10} | {'Redis µs/req':>12} | {'peak RSS MiB':>12} | {'× noop':>6} | {'× full-parse':>12} |")
        print(f"|{'-' * 19}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 12}|{'-' * 8}|{'-' * 12}|{'-' * 14}|{'-' * 14}|{'-' * 8}|{'-' * 14}|")
        for t in targets:
            s = summary[(t, c)]
            noop, full = summary[("noop", c)]["rps"], summary[("full-parse", c)]["rps"]
            print(f"| {t:<17} | {s['rps']:>8.0f} | {s['p50']:>7.2f} | {s['p99']:>7.2f} | {s['p999']:>8.2f} | {s['connect']:>10.1f} | {s['errors']:>6} | "
                  f"{s['cpu_us']:>10.1f} | {s['store_cpu_us']:>12.1f} | {s['peak_mib']:>12.1f} | {s['rps'] / noop:>6.2f} | {s['rps'] / full:>12.2f} |")
    print("\nidle RSS after load: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in idle_after.items()))
    if args.compare:
        print(f"\n## this build against {args.compare} (embedded store, req/s, median of rounds)")
        for kind in ("ungated", "gated"):
            if (f"before {kind}", levels[0]) in summary and (f"embedded {kind}", levels[0]) in summary:
                ratios = ", ".join(
                    f"c={c} {summary[(f'embedded {kind}', c)]['rps'] / summary[(f'before {kind}', c)]['rps']:.3f}×"
                    for c in levels)
                print(f"{kind}: {ratios}")
    if args.targets or args.compare:
        print("\n(--targets or --compare: goals not judged)")
        return

    goals = []

    def goal(text, value, ok):
        goals.append((text, value, ok))

    for store in ("embedded", "redis"):
        for c in [c for c in levels if c in (8, 32, 64)]:
            ratio = summary[(f"{store} ungated", c)]["rps"] / summary[("full-parse", c)]["rps"]
            goal(f"{store} ungated ≥ 1.0× full-parse req/s at c={c}", f"{ratio:.2f}×", ratio >= 1.0)
            stretch = summary[(f"{store} ungated", c)]["rps"] / summary[("noop", c)]["rps"]
            goal(f"(stretch) {store} ungated ≥ 0.5× noop req/s at c={c}", f"{stretch:.2f}×", stretch >= 0.5)
    if 1 in levels:
        gated, full = summary[("redis gated", 1)]["p99"], summary[("full-parse", 1)]["p99"]
        goal("redis gated p99 at c=1 ≤ full-parse p99 + 1 ms", f"{gated:.2f} ms vs {full:.2f} + 1 ms", gated <= full + 1.0)
    if 32 in levels:
        ratio = summary[("redis gated", 32)]["rps"] / summary[("full-parse", 32)]["rps"]
        goal("redis gated ≥ 0.5× full-parse req/s at c=32", f"{ratio:.2f}×", ratio >= 0.5)
    if 64 in levels:
        for t in ("embedded ungated", "embedded gated", "redis ungated", "redis gated"):
            p = summary[(t, 64)]["p999"]
            goal(f"{t} p99.9 < 50 ms at c=64", f"{p:.2f} ms", p < 50)
    for name in ("rollgate-embedded", "rollgate-redis"):
        # Idle: started and warmed by one review of each kind, before the load. What the allocator keeps after
        # the load is printed beside it; growth over time is the soak's goal.
        goal(f"{name} idle RSS ≤ 16 MiB", f"{idle[name]:.1f} MiB (after the load {idle_after[name]:.1f})", idle[name] <= 16)
        top = max(summary[(t, max(levels))]["peak_mib"] for t in targets if t.split()[0] in name)
        goal(f"{name} peak RSS ≤ 32 MiB at c={max(levels)}", f"{top:.1f} MiB", top <= 32)
    errors = sum(s["errors"] for (t, _), s in summary.items() if t not in ("noop", "full-parse"))
    goal("zero errors under load", str(errors), errors == 0)

    if args.soak:
        soak(args, targets, goal)
    redis_refusing(args, redis, targets, goal)

    print("\n## goals")
    for text, value, ok in goals:
        print(f"{'PASS' if ok else 'MISS'}  {text}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine(), "idle": idle, "idle_after": idle_after,
            "summary": {f"{t}@{c}": s for (t, c), s in summary.items()},
            "goals": [{"goal": g, "value": v, "met": ok} for g, v, ok in goals],
        }, indent=2))


def soak(args, targets, goal):
    """Mixed gated and ungated load at c=32 on both rollgate servers; RSS sampled every few seconds."""
    print(f"\n## soak: {args.soak}s at concurrency 32, gated and ungated on each store at once")
    names = ["embedded gated", "embedded ungated", "redis gated", "redis ungated"]
    procs = [subprocess.Popen(
        [args.oha, "-z", f"{args.soak}s", "-c", "8", "-w", "--no-tui", "--output-format", "json", "--http-version", "1.1",
         "--insecure", "-m", "POST", "-H", "Content-Type: application/json", "-D", str(targets[n]["body"]), targets[n]["url"]],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for n in names]
    samples = {n: [] for n in ("rollgate-embedded", "rollgate-redis")}
    pids = {"rollgate-embedded": targets["embedded gated"]["server"].pid, "rollgate-redis": targets["redis gated"]["server"].pid}
    step = max(args.soak // 20, 1)
    while any(p.poll() is None for p in procs):
        for name, pid in pids.items():
            samples[name].append(rss_mib(pid))
        time.sleep(step)
    errors = 0
    for p in procs:
        report = json.loads(p.communicate()[0])
        codes = report.get("statusCodeDistribution", {})
        errors += sum(int(n) for c, n in codes.items() if c != "200") + sum(int(n) for n in report.get("errorDistribution", {}).values())
    for name, rss in samples.items():
        quarter = max(len(rss) // 4, 1)
        # Medians: single samples jump 2-3 MiB and back (a burst of buffers
        # between two samples); growth is what stays. Peaks have their own goal.
        early = statistics.median(rss[quarter:2 * quarter] or rss[:1])
        late = statistics.median(rss[-quarter:])
        print(f"{name}: RSS {' '.join(f'{r:.0f}' for r in rss)} MiB (highest {max(rss):.1f})")
        goal(f"{name} no RSS growth over a {args.soak}s soak (median of the last quarter ≤ median of the second + 2 MiB)",
             f"{early:.1f} → {late:.1f} MiB", late <= early + 2)
    goal("zero errors in the soak", str(errors), errors == 0)


def redis_refusing(args, redis, targets, goal):
    """Redis stopped: every gated review on rollgate-redis is answered (denied, fail-closed) within 150 ms."""
    redis.stop()
    target = targets["redis gated"]
    port = int(target["url"].split(":")[2].split("/")[0])
    ca = Path(target["server"].proc.args[4]) / "ca.crt"
    status, answer = review(port, GATED_BODY.read_bytes(), ca)
    message = answer["response"].get("status", {}).get("message", "")
    denied = status == 200 and answer["response"]["allowed"] is False and "cannot reach" in message
    result = oha(args.oha, target["url"], target["body"], 8, args.seconds)
    print(f"\n## Redis refusing connections (rollgate-redis, gated review, c=8, {args.seconds}s)")
    print(f"{result['ok']} answered, {result['errors']} errors, p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms, "
          f"slowest {result['max']:.2f} ms; the answer: {message[:160]}…")
    goal("Redis refusing connections: gated denied, saying so", "denied" if denied else f"not denied: {answer}", denied)
    goal("Redis refusing connections: every review answered within 150 ms", f"slowest {result['max']:.1f} ms",
         result["max"] <= 150 and result["errors"] == 0)


if __name__ == "__main__":
    main()
