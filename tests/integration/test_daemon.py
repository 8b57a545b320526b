"""The real tokend and tokenctl against the fake token endpoint on loopback."""

import json
import os
import signal
import time

import pytest

from fake_endpoint import FakeEndpoint, make_test_ca
from tokend_harness import wait_until

THREE = ["org-parent", "org-child-1", "org-child-2"]


def test_three_tenants_fresh_over_http(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, THREE)
    daemon.wait_all("fresh", timeout=5)
    issued = set(endpoint.stats()["tokens"])
    for tenant in THREE:
        answer = daemon.request({"op": "get", "tenant": tenant, "id": 7})
        assert answer["ok"] is True and answer["id"] == 7
        assert answer["access_token"] in issued
        assert answer["token_type"] == "Bearer"
        assert 3500 < answer["expires_in"] <= 3600
        assert abs(answer["expires_at"] - (time.time() + answer["expires_in"])) <= 2
    ok = daemon.events("refresh_ok")
    assert {e["tenant"] for e in ok} == set(THREE)
    for e in ok:
        assert e["http_status"] == 200 and len(e["request_id"]) == 36 and e["correlation_id"]


def test_three_tenants_fresh_over_https_with_ca_file(tmp_path, tokend_factory):
    ca = make_test_ca(tmp_path / "ca")
    with FakeEndpoint(any_client=True, tls=ca) as ep:
        assert ep.url.startswith("https://")
        daemon = tokend_factory(ep, THREE, {"http": {"ca_file": ca["ca"]}})
        daemon.wait_all("fresh", timeout=5)
        assert daemon.request({"op": "get", "tenant": "org-child-1"})["ok"]


def test_https_with_unknown_ca_fails_without_plaintext_fallback(tmp_path, tokend_factory):
    ca = make_test_ca(tmp_path / "ca")
    other = make_test_ca(tmp_path / "other", name="other")
    with FakeEndpoint(any_client=True, tls=ca) as ep:
        daemon = tokend_factory(ep, ["a"], {"http": {"ca_file": other["ca"]}})
        failed = wait_until(lambda: daemon.events("refresh_failed"), what="refresh_failed")
        assert failed[0]["kind"] == "network"
        assert "TLS" in failed[0]["error"] or "certificate" in failed[0]["error"].lower()
        assert ep.stats()["total_requests"] == 0
        assert daemon.tenant_states()["a"] == "pending"


def test_global_limit_holds_across_24_tenants(tmp_path, tokend_factory):
    with FakeEndpoint(any_client=True, service_time=0.2) as ep:
        tenants = [f"org-{i:02d}" for i in range(24)]
        daemon = tokend_factory(ep, tenants, {"refresh": {"max_concurrent": 3,
                                                           "startup_spread": "0s"}})
        daemon.wait_all("fresh", timeout=20)
        stats = ep.stats()
        assert stats["max_in_flight"] == 3  # the limit is used, and never exceeded
        assert stats["total_requests"] == 24


def test_504_three_times_then_success(endpoint, tokend_factory):
    endpoint.script("client-a", [{"status": 504}] * 3)
    daemon = tokend_factory(endpoint, ["a", "b"], {"backoff": {"jitter": "none"}})
    daemon.wait_all("fresh", timeout=10)
    failed = [e for e in daemon.events("refresh_failed") if e["tenant"] == "a"]
    assert len(failed) == 3
    assert [e["http_status"] for e in failed] == [504, 504, 504]
    assert [e["kind"] for e in failed] == ["http_5xx"] * 3
    bounds = [e["backoff_bound_ms"] for e in failed]
    assert bounds == [100, 200, 400]
    assert [e["retry_in_ms"] for e in failed] == bounds
    request_ids = endpoint.stats()["clients"]["client-a"]["request_ids"]
    assert len(request_ids) == 4 and len(set(request_ids)) == 4
    assert [e["request_id"] for e in failed] == request_ids[:3]
    ok = [e for e in daemon.events("refresh_ok") if e["tenant"] == "a"]
    assert ok[0]["attempt"] == 4


def test_invalid_client_fails_one_tenant_only(endpoint, tokend_factory):
    endpoint.script("client-bad", [], always={"status": 401,
                                              "json": {"error": "invalid_client",
                                                       "error_description": "unknown client"}})
    daemon = tokend_factory(endpoint, ["bad", "good-1", "good-2"])
    daemon.wait_all("fresh", ["good-1", "good-2"], timeout=5)
    daemon.wait_all("failed", ["bad"], timeout=5)
    status = {t["tenant"]: t for t in daemon.status()["tenants"]}
    assert status["bad"]["last_error"]["http_status"] == 401
    assert "invalid_client" in status["bad"]["last_error"]["message"]
    answer = daemon.request({"op": "get", "tenant": "bad"})
    assert answer["ok"] is False and answer["error"] == "unavailable"
    assert answer["state"] == "failed"
    assert daemon.events("tenant_failed")[0]["tenant"] == "bad"
    assert daemon.events("refresh_failed")[0]["oauth_error"] == "invalid_client"


def test_socket_errors_and_pipelining(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["a"])
    daemon.wait_all("fresh", timeout=5)
    with daemon.client() as c:
        unknown = c.request({"op": "get", "tenant": "nope", "id": "x"})
        assert unknown == {"ok": False, "error": "unknown_tenant", "id": "x",
                           "message": unknown["message"]}
        c.send_raw(b"{not json\n")
        assert c.read_line()["error"] == "bad_request"
        assert c.request({"op": "ping"})["ok"] is True
        assert c.request({"op": "frobnicate"})["error"] == "unknown_op"
        assert c.request({"op": "get", "tenant": 5})["error"] == "bad_request"
        burst = b"".join(json.dumps({"op": "get", "tenant": "a", "id": i}).encode() + b"\n"
                         for i in range(100))
        c.send_raw(burst)
        answers = [c.read_line() for _ in range(100)]
        assert [a["id"] for a in answers] == list(range(100))
        assert all(a["ok"] for a in answers)


def test_get_waits_for_first_token(endpoint, tokend_factory):
    endpoint.script("client-slow", [{"status": 200, "hold": 0.5}])
    daemon = tokend_factory(endpoint, ["slow"], {"refresh": {"startup_spread": "0s"}})
    answer = daemon.request({"op": "get", "tenant": "slow", "wait_ms": 5000})
    assert answer["ok"] is True
    no_wait = daemon.request({"op": "get", "tenant": "slow"})
    assert no_wait["access_token"] == answer["access_token"]


def test_sigterm_while_every_request_hangs(endpoint, tokend_factory):
    for tenant in ["a", "b", "c"]:
        endpoint.script(f"client-{tenant}", [], always={"hang": 30})
    daemon = tokend_factory(endpoint, ["a", "b", "c"], {"http": {"timeout": "30s"},
                                                        "refresh": {"adaptive": False}})
    wait_until(lambda: endpoint.stats()["in_flight"] == 3, what="three hanging requests")
    code, elapsed = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert elapsed < 1.0
    assert not daemon.socket_path.exists()
    assert [e["event"] for e in daemon.events()][-2:] == ["stopping", "stopped"]


def test_sigint_stops_cleanly(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["a"])
    code, elapsed = daemon.stop(signal.SIGINT)
    assert code == 0 and elapsed < 1.0
    assert daemon.events("stopping")[0]["signal"] == "SIGINT"


def test_tokenctl_get_status_ping(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, THREE)
    daemon.wait_all("fresh", timeout=5)
    got = daemon.tokenctl("get", "org-child-1")
    assert got.returncode == 0
    token = got.stdout.strip()
    assert got.stdout == token + "\n" and token in endpoint.stats()["tokens"]
    as_json = json.loads(daemon.tokenctl("get", "org-child-1", "--json").stdout)
    assert as_json["access_token"] == token
    unknown = daemon.tokenctl("get", "nope")
    assert unknown.returncode == 1 and "unknown_tenant" in unknown.stderr
    status = daemon.tokenctl("status")
    assert status.returncode == 0
    for tenant in THREE:
        assert tenant in status.stdout
    assert "fresh" in status.stdout and token not in status.stdout
    assert daemon.tokenctl("ping").returncode == 0
    assert daemon.tokenctl("frobnicate").returncode == 2
    gone = daemon.tokenctl("--socket", str(daemon.workdir / "missing.sock"), "ping")
    assert gone.returncode == 3


def test_no_token_or_secret_in_logs(endpoint, tokend_factory):
    endpoint.script("client-b", [{"status": 504}, {"status": 401, "json": {"error": "invalid_client"}}])
    daemon = tokend_factory(endpoint, ["a", "b"], {"logging": {"level": "trace"}},
                            secret_for=lambda t: f"very-secret-{t}-{os.getpid()}")
    daemon.wait_all("fresh", ["a"], timeout=5)
    wait_until(lambda: daemon.events("tenant_failed"), what="tenant_failed")
    daemon.request({"op": "get", "tenant": "a"})
    daemon.stop()
    text = daemon.log_text()
    assert "very-secret-" not in text
    for token in endpoint.stats()["tokens"]:
        assert token not in text
