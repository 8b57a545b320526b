#!/usr/bin/env python3
"""Scale: memory, threads and idle CPU of tokend with many tenants.

    /usr/bin/python3 bench/scale.py [--tenants 100,10000] [--idle 60]
        [--max-concurrent 32] [--startup-spread 5s]

For each tenant count: the fake endpoint (unlimited capacity, lifetime 1 day)
and tokend (max_concurrent 32, startup_spread 5s, info logs); waits until every
tenant has logged refresh_ok, then reads tokend's RSS (VmRSS) and thread count
(/proc/PID/status) and its CPU time (utime + stime, /proc/PID/stat) over
--idle seconds of idleness (nothing asks it anything). Bounded; loopback only.
"""

import argparse
import sys
import time

import benchlib
from benchlib import FakeEndpoint, LogTail, Tokend, Workdir


def run(n, args):
    ids = benchlib.tenant_ids(n)
    with Workdir("scale-") as work, FakeEndpoint(
        any_client=True, lifetime=86400, capacity=0, python=benchlib.PYTHON,
    ) as ep:
        refresh = {"max_concurrent": args.max_concurrent, "startup_spread": args.startup_spread}
        d = Tokend(work, ep, ids, overrides=benchlib.daemon_config(refresh))
        log = LogTail(d.log_path)
        d.start()
        pid = d.proc.pid
        try:
            started = time.monotonic()
            fresh = set()
            ready_ts = last_ok_ts = None
            deadline = started + args.timeout
            while len(fresh) < n and time.monotonic() < deadline:
                for e in log.new_events():
                    if e.get("event") == "ready":
                        ready_ts = benchlib.parse_ts(e["ts"])
                    elif e.get("event") == "refresh_ok":
                        fresh.add(e["tenant"])
                        last_ok_ts = benchlib.parse_ts(e["ts"])
                time.sleep(0.1)
            if len(fresh) < n:
                raise SystemExit(f"only {len(fresh)} of {n} tenants fresh after {args.timeout}s")
            rss_fresh = benchlib.rss_mib(pid)
            hwm = int(benchlib.proc_status(pid)["VmHWM"].split()[0]) / 1024.0
            threads = benchlib.threads(pid)
            time.sleep(1)  # let the last answers settle
            cpu0, t0 = benchlib.cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle)
            cpu1, t1 = benchlib.cpu_seconds(pid), time.monotonic()
            rss_idle = benchlib.rss_mib(pid)
            requests = ep.stats()["total_requests"]
            valid = sum(1 for t in d.status()["tenants"] if t["state"] == "fresh")
        finally:
            d.stop()
    return {
        "tenants": n,
        "all_fresh_s": last_ok_ts - ready_ts,
        "requests": requests,
        "rss_fresh": rss_fresh,
        "rss_hwm": hwm,
        "rss_idle": rss_idle,
        "threads": threads,
        "idle_cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "idle_cpu_s": cpu1 - cpu0,
        "idle_s": t1 - t0,
        "fresh_at_end": valid,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", default="100,10000")
    p.add_argument("--idle", type=float, default=60)
    p.add_argument("--max-concurrent", type=int, default=32)
    p.add_argument("--startup-spread", default="5s")
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args()
    print(f"# scale: max_concurrent {args.max_concurrent}, startup_spread {args.startup_spread}, "
          f"idle window {args.idle:.0f}s; machine: {benchlib.machine()}")
    print(f"{'tenants':>7} {'all_fresh_s':>11} {'requests':>8} {'rss_MiB':>8} {'peak_MiB':>8} "
          f"{'rss_idle':>8} {'threads':>7} {'idle_cpu':>9} {'fresh_end':>9}")
    for n in (int(x) for x in args.tenants.split(",")):
        r = run(n, args)
        print(f"{r['tenants']:7d} {r['all_fresh_s']:11.2f} {r['requests']:8d} {r['rss_fresh']:8.1f} "
              f"{r['rss_hwm']:8.1f} {r['rss_idle']:8.1f} {r['threads']:7d} "
              f"{r['idle_cpu_pct']:8.3f}% {r['fresh_at_end']:9d}", flush=True)
        print(f"#   idle: {r['idle_cpu_s']:.2f} s CPU in {r['idle_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
