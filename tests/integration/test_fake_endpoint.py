"""Self-tests of the fake token endpoint (tests/fake_token_endpoint.py)."""

import socket
import ssl
import threading
import time
import urllib.error

import pytest

from fake_endpoint import FakeEndpoint, make_test_ca


@pytest.fixture
def ep():
    with FakeEndpoint(clients={"c1": "s1"}) as endpoint:
        yield endpoint


def test_basic_auth_issues_a_token(ep):
    status, headers, body = ep.token("c1", "s1", scope="a:read b:write")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["ININ-Correlation-Id"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("tok-")
    stats = ep.stats()["clients"]["c1"]
    assert stats["auth_methods"] == ["basic"]
    assert stats["scopes"] == ["a:read b:write"]
    assert stats["tokens"] == [body["access_token"]]
    assert stats["ok"] == 1


def test_basic_auth_credentials_are_form_url_decoded(ep):
    ep.add_client("we ird:id", "p@ss w+rd:%")  # a ':' in an id needs the control API
    status, _, _ = ep.token("we ird:id", "p@ss w+rd:%")
    assert status == 200


def test_post_auth_issues_unique_tokens(ep):
    tokens = {ep.token("c1", "s1", method="post")[2]["access_token"] for _ in range(3)}
    assert len(tokens) == 3
    assert ep.stats()["clients"]["c1"]["auth_methods"] == ["post"] * 3


def test_wrong_secret_and_unknown_client_are_invalid_client(ep):
    for client_id, secret in (("c1", "wrong"), ("nobody", "s1")):
        status, headers, body = ep.token(client_id, secret)
        assert status == 401
        assert body["error"] == "invalid_client"
        assert headers["ININ-Correlation-Id"]
    assert ep.stats()["status_counts"] == {"401": 2}


def test_any_client_accepts_any_id_with_a_secret():
    with FakeEndpoint(any_client=True, lifetime=90) as endpoint:
        status, _, body = endpoint.token("whoever", "x")
        assert status == 200 and body["expires_in"] == 90
        assert endpoint.token("whoever", "")[0] == 401


def test_scripts_are_consumed_in_order_then_always_applies(ep):
    ep.script("c1", [{"status": 504}, {"status": 429, "retry_after": "7"},
                     {"status": 200, "expires_in": 5}], always={"status": 503})
    statuses = []
    for _ in range(5):
        status, headers, body = ep.token("c1", "s1")
        statuses.append(status)
        if status == 429:
            assert headers["Retry-After"] == "7"
        if status == 200:
            assert body["expires_in"] == 5
    assert statuses == [504, 429, 200, 503, 503]
    ep.script("c1", [{"status": 400, "json": {"error": "invalid_scope"}}])
    status, _, body = ep.token("c1", "s1")
    assert (status, body) == (400, {"error": "invalid_scope"})
    assert ep.token("c1", "s1")[0] == 200  # script used up, no always: normal again


def test_scripted_bodies(ep):
    ep.script("c1", [{"status": 200, "body": "not json"},
                     {"status": 200, "json": {"expires_in": "abc"}},
                     {"status": 200, "big_body": 5000},
                     {"status": 302, "location": "http://127.0.0.1:1/x"}])
    assert ep.token("c1", "s1")[2] == b"not json"
    assert ep.token("c1", "s1")[2] == {"expires_in": "abc"}
    _, headers, body = ep.token("c1", "s1")
    assert headers["Content-Length"] == "5000" and body["access_token"]
    # urllib follows redirects: the target port 1 refuses, which proves a 302 came.
    with pytest.raises(urllib.error.URLError):
        ep.token("c1", "s1")


def test_reset_closes_the_connection_without_an_answer(ep):
    ep.script("c1", [{"reset": True}, {"reset_mid_body": True}])
    with pytest.raises((ConnectionError, OSError)):
        ep.token("c1", "s1")
    with pytest.raises(Exception):
        ep.token("c1", "s1")
    assert ep.stats()["status_counts"] == {"reset": 1, "reset_mid_body": 1}


def test_hang_is_released_when_the_client_leaves(ep):
    ep.script("c1", [{"hang": 30}])
    started = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        ep.token("c1", "s1", timeout=0.3)
    deadline = time.monotonic() + 1.5
    while ep.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ep.stats()["in_flight"] == 0
    assert time.monotonic() - started < 2


def test_global_hang_holds_every_client_until_it_leaves():
    with FakeEndpoint(any_client=True, hang=30) as endpoint:
        for client in ("a", "b"):
            with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
                endpoint.token(client, "s", timeout=0.2)
        deadline = time.monotonic() + 1.5
        while endpoint.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = endpoint.stats()
        assert stats["status_counts"] == {"hang": 2}
        assert stats["in_flight"] == 0
        endpoint.configure(hang=0)
        assert endpoint.token("a", "s")[0] == 200


def test_over_capacity_requests_get_504_and_max_in_flight_is_tracked():
    with FakeEndpoint(any_client=True, capacity=2, hold=0.1, service_time=0.4) as endpoint:
        results = []
        lock = threading.Lock()

        def one(i):
            status = endpoint.token(f"c{i}", "s")[0]
            with lock:
                results.append(status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=5)
        stats = endpoint.stats()
        assert sorted(results) == [200, 200, 504, 504, 504]
        assert stats["max_in_flight"] == 5
        assert stats["status_counts"] == {"200": 2, "504": 3}


def test_config_and_clients_can_change_at_run_time(ep):
    ep.add_client("c2", "s2", lifetime=300)
    assert ep.token("c2", "s2")[2]["expires_in"] == 300
    ep.configure(lifetime=120)
    assert ep.token("c1", "s1")[2]["expires_in"] == 120


def test_request_id_header_is_recorded(ep):
    import urllib.request

    req = urllib.request.Request(ep.url, data=b"grant_type=client_credentials&client_id=c1"
                                 b"&client_secret=s1&audience=api", method="POST",
                                 headers={"X-Request-Id": "rid-1"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    stats = ep.stats()["clients"]["c1"]
    assert stats["request_ids"] == ["rid-1"]
    assert stats["params"] == [{"audience": "api"}]


def test_unsupported_grant_type(ep):
    import urllib.request

    req = urllib.request.Request(ep.url, data=b"grant_type=password&client_id=c1"
                                 b"&client_secret=s1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400


def test_reset_clears_stats_and_scripts_but_keeps_clients(ep):
    ep.add_client("c3", "s3")
    ep.script("c3", [{"status": 500}])
    ep.token("c1", "s1")
    ep.reset()
    stats = ep.stats()
    assert stats["total_requests"] == 0 and stats["clients"] == {} and stats["tokens"] == []
    assert stats["max_in_flight"] == 0
    assert ep.token("c3", "s3")[0] == 200


def test_https_with_the_test_ca(tmp_path):
    ca = make_test_ca(tmp_path)
    other = make_test_ca(tmp_path, name="other")
    with FakeEndpoint(tls=ca, clients={"c1": "s1"}) as endpoint:
        assert endpoint.url.startswith("https://127.0.0.1:")
        assert endpoint.token("c1", "s1")[0] == 200
        untrusting = ssl.create_default_context(cafile=other["ca"])
        with pytest.raises(ssl.SSLCertVerificationError):
            with socket.create_connection(("127.0.0.1", endpoint.port), timeout=2) as raw:
                untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
        # The server survives a failed handshake.
        assert endpoint.token("c1", "s1")[0] == 200
        assert endpoint.stats()["total_requests"] == 2


def test_stops_promptly_on_sigterm_even_while_hanging(ep):
    ep.script("c1", [{"hang": 30}])

    def hung_request():
        try:
            ep.token("c1", "s1", timeout=5)
        except Exception:  # the server goes away: any error is fine
            pass

    t = threading.Thread(target=hung_request)
    t.start()
    deadline = time.monotonic() + 1
    while ep.stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    ep.stop()
    assert ep.proc.returncode == 0
    assert time.monotonic() - started < 1.5
    t.join(timeout=2)


def test_random_failures_are_seeded_and_repeatable():
    def run():
        with FakeEndpoint(any_client=True, fail_rate=0.5, fail_status=503, seed=7) as endpoint:
            return [endpoint.token("c", "s")[0] for _ in range(12)]

    first = run()
    assert set(first) == {200, 503}
    assert run() == first


def test_hold_delays_a_scripted_answer(ep):
    ep.script("c1", [{"status": 500, "hold": 0.3}])
    started = time.monotonic()
    assert ep.token("c1", "s1")[0] == 500
    assert 0.25 < time.monotonic() - started < 1.5
