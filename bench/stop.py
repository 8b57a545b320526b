#!/usr/bin/env python3
"""Stop under load: SIGTERM while every token request hangs.

    /usr/bin/python3 bench/stop.py [--tenants 1000] [--repeat 3]

The fake endpoint hangs every token request (--any-client --hang 600). tokend
runs --tenants tenants with startup_spread 0 in two set-ups:
  all in flight   max_concurrent = tenants (at most 1024), adaptive off: every
                  tenant's request is in flight and hanging
  defaults        max_concurrent 4, adaptive on: a few hang, the rest queue
Once the endpoint holds the expected number of hanging requests, SIGTERM is
sent and the time until the process has exited is measured (goal: < 1 s).
Bounded (a tokend that does not exit in 10 s is killed and reported); loopback.
"""

import argparse
import sys
import time

import benchlib
from benchlib import FakeEndpoint, Tokend, Workdir, wait_until


def run(args, max_concurrent, adaptive):
    ids = benchlib.tenant_ids(args.tenants)
    with Workdir("stop-") as work, FakeEndpoint(any_client=True, hang=600,
                                                python=benchlib.PYTHON) as ep:
        refresh = {"max_concurrent": max_concurrent, "adaptive": adaptive, "startup_spread": "0s"}
        http = {"connect_timeout": "5s", "timeout": "60s"}
        d = Tokend(work, ep, ids, overrides=benchlib.daemon_config(refresh, http=http))
        d.start()
        want = min(max_concurrent, args.tenants) if not adaptive else 2
        hanging = wait_until(lambda: ep.stats()["in_flight"] >= want and ep.stats()["in_flight"],
                             timeout=60, interval=0.2, what=f"{want} hanging requests")
        time.sleep(0.5)
        in_flight = d.status()["limit"]["in_flight"]
        code, elapsed = d.stop(timeout=10)
        stopped = [e for e in d.events("stopped")]
    return {"hanging": hanging, "in_flight": in_flight, "exit": code, "seconds": elapsed,
            "clean": bool(stopped)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(f"# stop: {args.tenants} tenants, every token request hanging; "
          f"machine: {benchlib.machine()}")
    print(f"{'set-up':<28} {'hanging':>7} {'in_flight':>9} {'exit':>4} {'stop_ms':>8}")
    for label, max_concurrent, adaptive in (
        ("all in flight", min(args.tenants, 1024), False),
        ("defaults (4, adaptive)", 4, True),
    ):
        for _ in range(args.repeat):
            r = run(args, max_concurrent, adaptive)
            print(f"{label:<28} {r['hanging']:7d} {r['in_flight']:9d} {r['exit']:4d} "
                  f"{r['seconds'] * 1000:8.0f}{'' if r['clean'] else '  (no stopped event)'}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
