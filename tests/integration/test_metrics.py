"""Metrics (SPEC §7): the textfile for node_exporter, parsed by a real Prometheus parser."""

import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from tokend_harness import wait_until


def parse(text):
    """Returns {(name, frozenset(labels)): value}; raises on invalid exposition text."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_textfile_counts_attempts_as_the_endpoint_answered(tmp_path, endpoint, tokend_factory):
    prom = tmp_path / "tokend.prom"
    endpoint.script("client-a", [{"status": 504}, {"status": 504}, {"status": 429, "retry_after": "0"}])
    endpoint.script("client-b", [], always={"status": 401, "json": {"error": "invalid_client"}})
    daemon = tokend_factory(endpoint, ["a", "b", "c"],
                            {"metrics": {"textfile": str(prom), "interval": "100ms"},
                             "backoff": {"initial": "50ms", "max": "200ms"}})
    daemon.wait_all("fresh", ["a", "c"], timeout=10)
    daemon.wait_all("failed", ["b"], timeout=10)

    # A textfile written before the last of these was true is stale: a and c
    # become fresh in either order, and b's failure may be counted last.
    def settled():
        samples = parse(prom.read_text()) if prom.exists() else {}
        done = (value(samples, "tokend_token_valid", tenant="a") == 1
                and value(samples, "tokend_token_valid", tenant="c") == 1
                and value(samples, "tokend_refresh_attempts_total", tenant="b", outcome="http_4xx"))
        return samples if done else None
    samples = wait_until(settled, what="metrics textfile")

    assert value(samples, "tokend_refresh_attempts_total", tenant="a", outcome="http_5xx") == 2
    assert value(samples, "tokend_refresh_attempts_total", tenant="a", outcome="http_429") == 1
    assert value(samples, "tokend_refresh_attempts_total", tenant="a", outcome="ok") == 1
    assert value(samples, "tokend_refresh_attempts_total", tenant="b", outcome="http_4xx") == 1
    assert value(samples, "tokend_refresh_attempts_total", tenant="c", outcome="ok") == 1
    assert value(samples, "tokend_refresh_duration_seconds_count") == 6
    assert value(samples, "tokend_refresh_duration_seconds_bucket", le="+Inf") == 6
    assert value(samples, "tokend_token_valid", tenant="b") == 0
    expiry = value(samples, "tokend_token_expiry_timestamp_seconds", tenant="c")
    got = daemon.request({"op": "get", "tenant": "c"})
    assert expiry == got["expires_at"]
    assert value(samples, "tokend_build_info", version=daemon.request({"op": "ping"})["version"]) == 1
    for gauge in ["tokend_concurrency_limit", "tokend_refresh_in_flight", "tokend_refresh_waiting",
                  "tokend_socket_connections"]:
        assert value(samples, gauge) is not None, gauge
    assert any(k[0] == "tokend_socket_requests_total" for k in samples)
    for token in endpoint.stats()["tokens"]:
        assert token not in prom.read_text()


def test_token_valid_follows_expiry(tmp_path, endpoint, tokend_factory):
    prom = tmp_path / "tokend.prom"
    endpoint.add_client("client-a", "secret-a", lifetime=3)
    endpoint.script("client-a", [{"status": 200}], always={"status": 503})
    daemon = tokend_factory(endpoint, ["a"],
                            {"metrics": {"textfile": str(prom), "interval": "100ms"},
                             "refresh": {"expiry_margin": "1s", "startup_spread": "0s"}})
    wait_until(lambda: prom.exists() and
               value(parse(prom.read_text()), "tokend_token_valid", tenant="a") == 1,
               what="token valid")
    wait_until(lambda: value(parse(prom.read_text()), "tokend_token_valid", tenant="a") == 0,
               timeout=6, what="token invalid after expiry")
    assert daemon.tenant_states()["a"] == "expired"


def test_textfile_is_replaced_atomically(tmp_path, endpoint, tokend_factory):
    prom = tmp_path / "tokend.prom"
    tokend_factory(endpoint, [f"t{i}" for i in range(30)],
                   {"metrics": {"textfile": str(prom), "interval": "10ms"}})
    wait_until(prom.exists, what="textfile")
    reads, torn = 0, []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        text = prom.read_text()
        reads += 1
        if not text.endswith("\n") or "tokend_socket_connections" not in text:
            torn.append(text[-80:])
        else:
            parse(text)
    assert reads > 50
    assert not torn
