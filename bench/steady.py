#!/usr/bin/env python3
"""Steady state: many tenants with short-lived tokens, many refresh cycles.

    /usr/bin/python3 bench/steady.py [--tenants 200] [--lifetime 5] [--duration 60]
        [--service-time 0.02] [--max-concurrent 4]

tokend (refresh.at 0.5, jitter 0.1, expiry_margin 1s, startup_spread 2s,
adaptive on) keeps --tenants tokens of --lifetime seconds fresh against the
fake endpoint (unlimited capacity, so it shows the concurrency tokend itself
causes) for --duration seconds. Reports:
  - token requests per tenant against the expectation from elapsed time and
    the refresh period (at * lifetime, counted from each request's sending),
  - every gap between two requests of one tenant, against the window
    [(at - jitter) * lifetime, (at + jitter) * lifetime]: a gap below it is a
    duplicate request, one above it a late refresh,
  - the endpoint's highest concurrency against max_concurrent,
  - refresh failures, token_expired events, and tenants not fresh at the end.
Bounded by --duration; loopback only.
"""

import argparse
import sys
import time

import benchlib
from benchlib import FakeEndpoint, LogTail, Tokend, Workdir

AT, JITTER = 0.5, 0.1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=200)
    p.add_argument("--lifetime", type=int, default=5)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--service-time", type=float, default=0.02)
    p.add_argument("--max-concurrent", type=int, default=4)
    args = p.parse_args()

    ids = benchlib.tenant_ids(args.tenants)
    with Workdir("steady-") as work, FakeEndpoint(
        any_client=True, lifetime=args.lifetime, service_time=args.service_time,
        python=benchlib.PYTHON,
    ) as ep:
        refresh = {"max_concurrent": args.max_concurrent, "adaptive": True, "at": AT,
                   "jitter": JITTER, "expiry_margin": "1s", "startup_spread": "2s"}
        d = Tokend(work, ep, ids, overrides=benchlib.daemon_config(refresh))
        log = LogTail(d.log_path)
        d.start()
        started = time.time()
        not_fresh_samples = 0
        samples = 0
        try:
            time.sleep(3)  # startup_spread + the first answers
            while time.time() - started < args.duration:
                states = d.tenant_states()
                samples += 1
                not_fresh_samples += sum(1 for s in states.values() if s != "fresh")
                time.sleep(1.0)
            stats = ep.stats()
            stats_at = time.time()
            final = d.tenant_states()
        finally:
            d.stop()
        events = log.new_events()

    failed = sum(1 for e in events if e.get("event") == "refresh_failed")
    expired = sum(1 for e in events if e.get("event") == "token_expired")
    limit_changes = [(e["from"], e["to"], e["reason"]) for e in events
                     if e.get("event") == "limit_changed"]
    period = AT * args.lifetime
    lo, hi = (AT - JITTER) * args.lifetime, (AT + JITTER) * args.lifetime
    counts, expected, gaps = [], [], []
    for tid in ids:
        times = sorted(stats["clients"].get(f"client-{tid}", {}).get("times", []))
        counts.append(len(times))
        if times:
            # The first request, then one per period (each counted from the
            # previous sending) until the stats were read: on average half a
            # period of that time has no request yet.
            expected.append(0.5 + (stats_at - times[0]) / period)
        gaps += [b - a for a, b in zip(times, times[1:])]
    total = sum(counts)
    exp_total = sum(expected)
    short = sum(1 for g in gaps if g < lo - 0.005)
    late = sum(1 for g in gaps if g > hi + 0.25)

    print(f"# steady: {args.tenants} tenants, lifetime {args.lifetime}s, refresh at {AT}±{JITTER} "
          f"of it (every {period:.1f}s on average), S={args.service_time * 1000:.0f}ms, "
          f"max_concurrent {args.max_concurrent}, {args.duration:.0f}s; machine: {benchlib.machine()}")
    print(f"token requests          {total} (expected from elapsed time: {exp_total:.0f}; "
          f"ratio {total / exp_total:.3f})")
    print(f"per tenant              min {min(counts)} max {max(counts)} "
          f"(expected {min(expected):.1f}..{max(expected):.1f})")
    print(f"gaps between requests   {len(gaps)}: min {min(gaps):.3f}s max {max(gaps):.3f}s "
          f"mean {sum(gaps) / len(gaps):.3f}s (window {lo:.1f}..{hi:.1f}s); "
          f"below window {short}, above window+0.25s {late}")
    print(f"endpoint max in flight  {stats['max_in_flight']} (max_concurrent {args.max_concurrent})")
    print(f"statuses                {stats['status_counts']}")
    print(f"refresh_failed {failed}, token_expired {expired}, "
          f"non-fresh tenant samples {not_fresh_samples}/{samples * args.tenants}, "
          f"not fresh at the end {sum(1 for s in final.values() if s != 'fresh')}")
    print(f"limit changes           {limit_changes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
