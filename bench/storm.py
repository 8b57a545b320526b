#!/usr/bin/env python3
"""Refresh storm: N tenants start cold against a gateway of capacity C.

    /usr/bin/python3 bench/storm.py [--tenants 1000] [--capacity 8]
        [--service-time 0.05] [--hold 0.5] [--max-concurrent 32]
        [--modes adaptive,fixed,naive] [--stagger 0.5] [--timeout 300]

The fake token endpoint (tests/fake_token_endpoint.py) answers at most C
requests at a time, each after S; a request arriving while C others are in
flight is held --hold seconds and answered 504. For each mode it reports the
time from tokend's `ready` until every tenant has logged its first
`refresh_ok`, the ideal N*S/C, their ratio, the 504s (count and share of all
requests) and the endpoint's highest concurrency.

Modes:
  adaptive  tokend, refresh.adaptive on, max_concurrent M, startup_spread 0
  fixed     the same with refresh.adaptive off
  naive     no tokend: this script sends one request per tenant itself, a
            fixed --stagger apart, no limit (a 504 is retried after 1 s)

Daemon defaults otherwise (backoff 1s..2m full jitter). Bounded by --timeout
per mode; loopback only.
"""

import argparse
import base64
import http.client
import json
import sys
import threading
import time

import benchlib
from benchlib import FakeEndpoint, LogTail, Tokend, Workdir


def run_tokend(args, adaptive):
    n = args.tenants
    with Workdir("storm-") as work, FakeEndpoint(
        any_client=True, capacity=args.capacity, service_time=args.service_time,
        hold=args.hold, lifetime=3600, python=benchlib.PYTHON,
    ) as ep:
        ids = benchlib.tenant_ids(n)
        refresh = {
            "max_concurrent": args.max_concurrent,
            "adaptive": adaptive,
            "startup_spread": "0s",
        }
        config = benchlib.daemon_config(refresh)
        config["logging"]["level"] = args.log_level
        d = Tokend(work, ep, ids, overrides=config)
        log = LogTail(d.log_path)
        d.start()
        try:
            ready_ts = None
            first_ok = {}
            limit_changes = []
            failures = 0
            deadline = time.monotonic() + args.timeout
            while len(first_ok) < n and time.monotonic() < deadline:
                for e in log.new_events():
                    ev = e.get("event")
                    if ev == "ready":
                        ready_ts = benchlib.parse_ts(e["ts"])
                    elif ev == "refresh_ok":
                        first_ok.setdefault(e["tenant"], benchlib.parse_ts(e["ts"]))
                    elif ev == "refresh_failed":
                        failures += 1
                    elif ev == "limit_changed":
                        limit_changes.append((e["from"], e["to"], e["reason"]))
                time.sleep(0.05)
            stats = ep.stats()
            status = d.status()
        finally:
            code, _ = d.stop()
        done = len(first_ok) == n
        elapsed = (max(first_ok.values()) - ready_ts) if done and ready_ts else float("nan")
        fresh = sum(1 for t in status["tenants"] if t["state"] == "fresh")
        return {
            "mode": "adaptive" if adaptive else "fixed",
            "done": done,
            "elapsed": elapsed,
            "requests": stats["total_requests"],
            "status_counts": stats["status_counts"],
            "max_in_flight": stats["max_in_flight"],
            "refresh_failed": failures,
            "limit_changes": limit_changes,
            "final_limit": status["limit"]["effective"],
            "fresh": fresh,
            "exit": code,
            "timeline": timeline(stats, ready_ts),
        }


def timeline(stats, start, bucket=0.5):
    """Requests arriving at the endpoint per `bucket` seconds after `start`."""
    arrivals = sorted(t for c in stats["clients"].values() for t in c["times"])
    if not arrivals or start is None:
        return []
    counts = [0] * (int((arrivals[-1] - start) / bucket) + 1)
    for t in arrivals:
        counts[max(0, int((t - start) / bucket))] += 1
    return counts


def run_naive(args):
    """One request per tenant, a fixed stagger apart, no limit; 504 -> retry in 1 s."""
    n = args.tenants
    with FakeEndpoint(any_client=True, capacity=args.capacity, service_time=args.service_time,
                      hold=args.hold, lifetime=3600, python=benchlib.PYTHON) as ep:
        done_at = [None] * n
        lock = threading.Lock()
        stop = threading.Event()

        def tenant(i):
            auth = base64.b64encode(f"client-{i}:secret-{i}".encode()).decode()
            while not stop.is_set():
                conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=30)
                try:
                    conn.request("POST", "/oauth/token", body="grant_type=client_credentials",
                                 headers={"Authorization": "Basic " + auth,
                                          "Content-Type": "application/x-www-form-urlencoded"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        with lock:
                            done_at[i] = time.monotonic()
                        return
                except OSError:
                    pass
                finally:
                    conn.close()
                stop.wait(1.0)

        start = time.monotonic()
        deadline = start + args.timeout
        workers = []
        for i in range(n):
            at = start + i * args.stagger
            while time.monotonic() < at:
                time.sleep(min(0.01, at - time.monotonic()) if at > time.monotonic() else 0)
            if time.monotonic() > deadline:
                break
            w = threading.Thread(target=tenant, args=(i,), daemon=True)
            w.start()
            workers.append(w)
        for w in workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        stop.set()
        stats = ep.stats()
        finished = [t for t in done_at if t is not None]
        done = len(finished) == n
        return {
            "mode": f"naive (stagger {args.stagger * 1000:.0f} ms, no limit)",
            "done": done,
            "elapsed": (max(finished) - start) if done else float("nan"),
            "requests": stats["total_requests"],
            "status_counts": stats["status_counts"],
            "max_in_flight": stats["max_in_flight"],
            "refresh_failed": stats["total_requests"] - len(finished),
            "limit_changes": [],
            "final_limit": None,
            "fresh": len(finished),
            "exit": 0,
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--capacity", type=int, default=8)
    p.add_argument("--service-time", type=float, default=0.05)
    p.add_argument("--hold", type=float, default=0.5)
    p.add_argument("--max-concurrent", type=int, default=32)
    p.add_argument("--modes", default="adaptive,fixed")
    p.add_argument("--stagger", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=300, help="seconds per mode")
    p.add_argument("--timeline", action="store_true", help="print arrivals per 0.5 s")
    p.add_argument("--log-level", default="info",
                   help="tokend's log level (debug logs every request with its concurrency)")
    p.add_argument("--json", action="store_true", help="print one JSON object per mode too")
    args = p.parse_args()

    ideal = args.tenants * args.service_time / args.capacity
    print(f"# storm: N={args.tenants} C={args.capacity} S={args.service_time * 1000:.0f}ms "
          f"hold={args.hold}s max_concurrent={args.max_concurrent}; machine: {benchlib.machine()}")
    print(f"# ideal N*S/C = {ideal:.2f} s")
    header = (f"{'mode':<34} {'time_s':>8} {'ratio':>6} {'requests':>8} {'504s':>6} "
              f"{'504%':>6} {'max_conc':>8} {'limit':>5}")
    print(header)
    for mode in args.modes.split(","):
        if mode == "adaptive":
            r = run_tokend(args, True)
        elif mode == "fixed":
            r = run_tokend(args, False)
        elif mode == "naive":
            r = run_naive(args)
        else:
            sys.exit(f"unknown mode {mode}")
        n504 = r["status_counts"].get("504", 0)
        share = 100.0 * n504 / r["requests"] if r["requests"] else 0.0
        label = r["mode"]
        if r["done"]:
            time_s, ratio = f"{r['elapsed']:8.2f}", f"{r['elapsed'] / ideal:6.2f}"
        else:
            label += f" [{r['fresh']}/{args.tenants} done]"
            time_s, ratio = f"{'>' + format(args.timeout, '.0f'):>8}", f"{'>' + format(args.timeout / ideal, '.0f'):>6}"
        print(f"{label:<34} {time_s} {ratio} {r['requests']:8d} "
              f"{n504:6d} {share:6.2f} {r['max_in_flight']:8d} "
              f"{'' if r['final_limit'] is None else r['final_limit']:>5}", flush=True)
        if r["limit_changes"]:
            steps = " ".join(f"{a}->{b}({why[0]})" for a, b, why in r["limit_changes"][:40])
            more = len(r["limit_changes"]) - 40
            print(f"#   limit: {steps}{f' ... +{more}' if more > 0 else ''}")
        if args.timeline and r.get("timeline"):
            print("#   arrivals per 0.5 s: " + " ".join(map(str, r["timeline"])))
        if args.json:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
