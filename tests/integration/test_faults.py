"""The fault matrix: the real tokend against every failure a token endpoint (or
the way to it) can produce, checking the tenant's state, what `get` serves, the
retry timing and the refresh_failed log line.

Most faults run side by side in one daemon (`matrix`), one tenant per fault with
its own script on one fake endpoint, so the whole matrix costs a few seconds.
Faults that need a whole timeline of their own (flapping, an outage longer than
a token's lifetime, one tenant hanging) get their own daemon.
"""

import calendar
import email.utils
import math
import socket
import time
from datetime import datetime

import pytest

from fake_endpoint import FakeEndpoint, make_test_ca
from tokend_harness import Tokend, wait_until

# Slack for comparing our timers with the endpoint's arrival times and the log's
# millisecond timestamps (both clocks are this host's).
TOLERANCE_S = 0.05
HTTP_TIMEOUT_MS = 1000
PERMANENT_RETRY_MS = 2000
MAX_RESPONSE_BYTES = 4096
BACKOFF = {"initial": "200ms", "max": "1s", "permanent_error_retry": f"{PERMANENT_RETRY_MS}ms"}


def closed_port():
    """A loopback TCP port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts_seconds(event):
    """A log line's `ts` (RFC 3339 UTC, milliseconds) as Unix seconds."""
    return calendar.timegm(datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timetuple()) + \
        int(event["ts"][20:23]) / 1000


def of(daemon, event, tenant):
    return [e for e in daemon.events(event) if e.get("tenant") == tenant]


def failures(daemon, tenant, at_least, timeout=10.0):
    return wait_until(lambda: len(of(daemon, "refresh_failed", tenant)) >= at_least and
                      of(daemon, "refresh_failed", tenant), timeout=timeout,
                      what=f"{at_least} refresh_failed of {tenant}")


def arrivals(endpoint, client_id, at_least, timeout=10.0):
    def check():
        times = endpoint.stats()["clients"].get(client_id, {}).get("times", [])
        return times if len(times) >= at_least else None
    return wait_until(check, timeout=timeout, what=f"{at_least} requests of {client_id}")


def assert_spacing(times, failed):
    """Attempt i+1 was not sent before attempt i's retry_in_ms had passed."""
    assert len(times) >= 2
    for i in range(min(len(times) - 1, len(failed))):
        gap = times[i + 1] - times[i]
        assert gap >= failed[i]["retry_in_ms"] / 1000 - TOLERANCE_S, (i, gap, failed[i])


def assert_backoff_bounds(failed, initial_ms=200, max_ms=1000):
    """Exponential bounds; each wait within its bound (retryable answers)."""
    for n, e in enumerate(failed, 1):
        assert e["backoff_bound_ms"] == min(max_ms, initial_ms * 2 ** (n - 1)), e
        if "retry_after_ms" not in e:
            assert 0 <= e["retry_in_ms"] <= e["backoff_bound_ms"], e


def assert_unavailable(daemon, tenant, state):
    """`get` answers unavailable, with retry_after_ms once an attempt is not in
    flight (while one is, the next attempt's time is not known yet)."""
    deadline = time.monotonic() + 3
    while True:
        answer = daemon.request({"op": "get", "tenant": tenant})
        assert answer["ok"] is False and answer["error"] == "unavailable", answer
        assert answer["state"] == state
        assert "access_token" not in answer
        assert answer["last_error"]["kind"]
        if "retry_after_ms" in answer:
            assert answer["retry_after_ms"] >= 0
            return answer
        assert time.monotonic() < deadline, f"no retry_after_ms in {answer}"
        time.sleep(0.02)


def assert_serves_issued(daemon, endpoint, tenant):
    answer = daemon.request({"op": "get", "tenant": tenant})
    assert answer["ok"] is True, answer
    assert answer["access_token"] in endpoint.stats()["tokens"]
    assert answer["expires_at"] > time.time()
    return answer


# --- the matrix: one daemon, one tenant per fault ---------------------------------

FIVE_XX = {"e500": 500, "e502": 502, "e503": 503}
BAD_200 = {
    "nonjson": ({"status": 200, "body": "<html>not json</html>", "content_type": "text/html"},
                "not JSON"),
    "noaccess": ({"status": 200, "json": {"token_type": "Bearer", "expires_in": 3600}},
                 "no access_token"),
    "noexp": ({"status": 200, "json": {"access_token": "tok-noexpires-0123456789",
                                       "token_type": "Bearer"}}, "no expires_in"),
    "exp0": ({"status": 200, "expires_in": 0}, "expires_in"),
    "expneg": ({"status": 200, "expires_in": -5}, "expires_in"),
    "expstr": ({"status": 200, "expires_in": "soon"}, "expires_in"),
    "expshort": ({"status": 200, "expires_in": 1}, "expiry_margin"),
    "bigbody": ({"status": 200, "big_body": 100000}, f"larger than {MAX_RESPONSE_BYTES}"),
}
PERMANENT = {
    "e400": ({"status": 400, "json": {"error": "invalid_scope",
                                      "error_description": "scope frob is not allowed"}},
             400, "invalid_scope"),
    "e401": ({"status": 401, "json": {"error": "invalid_client",
                                      "error_description": "unknown client"}},
             401, "invalid_client"),
    "e403": ({"status": 403}, 403, "access_denied"),
}
RETRY_AFTER_S = 2


class Matrix:
    pass


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    base = tmp_path_factory.mktemp("matrix")
    ca = make_test_ca(base / "ca")
    other = make_test_ca(base / "other", name="other")
    m = Matrix()
    with FakeEndpoint(any_client=True, lifetime=3600) as ep, \
            FakeEndpoint(any_client=True) as elsewhere, \
            FakeEndpoint(any_client=True, tls=ca) as tls_ep:
        scripts = {
            "hold504": ([], {"status": 504, "hold": 3}),
            "reset_mid": ([{"reset_mid_body": True}] * 2, None),
            "reset": ([{"reset": True}] * 2, None),
            "r429s": ([{"status": 429, "retry_after": str(RETRY_AFTER_S)}], None),
            "redirect302": ([], {"status": 302, "location": elsewhere.url}),
            "redirect307": ([], {"status": 307, "location": elsewhere.url}),
        }
        # An HTTP-date a few whole seconds ahead (HTTP-dates have no fractions).
        m.retry_date = math.ceil(time.time()) + 3
        scripts["r429d"] = ([{"status": 429,
                              "retry_after": email.utils.formatdate(m.retry_date, usegmt=True)}],
                            None)
        for tenant, status in FIVE_XX.items():
            scripts[tenant] = ([{"status": status}] * 2, None)
        for tenant, (action, _) in BAD_200.items():
            scripts[tenant] = ([action], None)
        scripts["exphuge"] = ([{"status": 200, "expires_in": 10 ** 12}], None)
        for tenant, (action, _, _) in PERMANENT.items():
            scripts[tenant] = ([], action)
        for tenant, (actions, always) in scripts.items():
            ep.script(f"client-{tenant}", actions, always)

        tenants = ["healthy", *scripts,
                   {"id": "refused", "token_url": f"http://127.0.0.1:{closed_port()}/oauth/token"},
                   {"id": "dns", "token_url": "https://no-such-host.invalid/oauth/token"},
                   {"id": "tls", "token_url": tls_ep.url}]
        daemon = Tokend(base / "tokend", ep, tenants, {
            "refresh": {"max_concurrent": 32, "adaptive": False, "startup_spread": "100ms"},
            "backoff": BACKOFF,
            "http": {"timeout": f"{HTTP_TIMEOUT_MS}ms", "connect_timeout": "1s",
                     "max_response_bytes": MAX_RESPONSE_BYTES, "ca_file": other["ca"]},
        })
        daemon.start()
        m.daemon, m.ep, m.elsewhere, m.tls_ep = daemon, ep, elsewhere, tls_ep
        try:
            yield m
        finally:
            daemon.stop()
            leaks = daemon.log_leaks(ep.stats()["tokens"])
            assert not leaks, "\n".join(leaks)


def test_healthy_tenant_is_untouched_by_its_neighbours(matrix):
    matrix.daemon.wait_all("fresh", ["healthy"], timeout=5)
    assert not of(matrix.daemon, "refresh_failed", "healthy")
    assert_serves_issued(matrix.daemon, matrix.ep, "healthy")


def test_504_held_past_http_timeout_is_cut_at_the_timeout(matrix):
    failed = failures(matrix.daemon, "hold504", 2, timeout=8)
    for e in failed:
        assert e["kind"] == "timeout" and e["http_status"] is None, e
        # Cut at http.timeout, not after the endpoint's 3 s hold.
        assert HTTP_TIMEOUT_MS - 50 <= e["latency_ms"] <= HTTP_TIMEOUT_MS + 500, e
        assert e["state"] == "pending"
    assert_backoff_bounds(failed)
    assert_spacing(arrivals(matrix.ep, "client-hold504", 2), failed)
    answer = assert_unavailable(matrix.daemon, "hold504", "pending")
    assert answer["last_error"]["kind"] == "timeout"


@pytest.mark.parametrize("tenant", sorted(FIVE_XX))
def test_5xx_retried_with_backoff_then_fresh(matrix, tenant):
    matrix.daemon.wait_all("fresh", [tenant], timeout=8)
    failed = of(matrix.daemon, "refresh_failed", tenant)
    assert [e["http_status"] for e in failed] == [FIVE_XX[tenant]] * 2
    assert all(e["kind"] == "http_5xx" and e["state"] == "pending" for e in failed)
    assert_backoff_bounds(failed)
    assert_spacing(matrix.ep.stats()["clients"][f"client-{tenant}"]["times"], failed)
    ok = of(matrix.daemon, "refresh_ok", tenant)
    assert ok[0]["attempt"] == 3
    assert_serves_issued(matrix.daemon, matrix.ep, tenant)


def test_429_retry_after_seconds_is_the_least_wait(matrix):
    matrix.daemon.wait_all("fresh", ["r429s"], timeout=8)
    [failed] = of(matrix.daemon, "refresh_failed", "r429s")
    assert failed["kind"] == "http_429" and failed["http_status"] == 429
    assert failed["retry_after_ms"] == RETRY_AFTER_S * 1000
    assert failed["retry_in_ms"] >= RETRY_AFTER_S * 1000
    times = matrix.ep.stats()["clients"]["client-r429s"]["times"]
    assert times[1] - times[0] >= RETRY_AFTER_S - TOLERANCE_S
    assert_serves_issued(matrix.daemon, matrix.ep, "r429s")


def test_429_retry_after_http_date_is_the_least_wait(matrix):
    matrix.daemon.wait_all("fresh", ["r429d"], timeout=8)
    [failed] = of(matrix.daemon, "refresh_failed", "r429d")
    assert failed["kind"] == "http_429" and failed["retry_after_ms"] > 0
    times = matrix.ep.stats()["clients"]["client-r429d"]["times"]
    assert times[1] >= matrix.retry_date - TOLERANCE_S, (times, matrix.retry_date)
    assert_serves_issued(matrix.daemon, matrix.ep, "r429d")


def test_connection_refused(matrix):
    failed = failures(matrix.daemon, "refused", 3)
    for e in failed:
        assert e["kind"] == "network" and e["http_status"] is None, e
        assert "connect" in e["error"].lower(), e
    assert_backoff_bounds(failed)
    ts = [ts_seconds(e) for e in failed]
    assert_spacing(ts, failed)
    assert_unavailable(matrix.daemon, "refused", "pending")


@pytest.mark.parametrize("tenant", ["reset_mid", "reset"])
def test_connection_reset_is_retried(matrix, tenant):
    matrix.daemon.wait_all("fresh", [tenant], timeout=8)
    failed = of(matrix.daemon, "refresh_failed", tenant)
    assert len(failed) == 2
    assert all(e["kind"] == "network" for e in failed), failed
    assert_spacing(matrix.ep.stats()["clients"][f"client-{tenant}"]["times"], failed)
    assert_serves_issued(matrix.daemon, matrix.ep, tenant)


def test_tls_unknown_ca_fails_clearly_without_plaintext_fallback(matrix):
    failed = failures(matrix.daemon, "tls", 2)
    for e in failed:
        assert e["kind"] == "network" and e["http_status"] is None, e
        assert e["error"].startswith("TLS"), e
        assert "certificate" in e["error"].lower(), e
    assert matrix.tls_ep.stats()["total_requests"] == 0
    assert_spacing([ts_seconds(e) for e in failed], failed)
    answer = assert_unavailable(matrix.daemon, "tls", "pending")
    assert "TLS" in answer["last_error"]["message"]


def test_dns_failure(matrix):
    failed = failures(matrix.daemon, "dns", 2)
    for e in failed:
        assert e["kind"] == "network" and e["http_status"] is None, e
        assert e["error"].startswith("DNS"), e
    assert_spacing([ts_seconds(e) for e in failed], failed)
    assert_unavailable(matrix.daemon, "dns", "pending")


@pytest.mark.parametrize("tenant,status", [("redirect302", 302), ("redirect307", 307)])
def test_redirect_is_not_followed_and_the_secret_stays_home(matrix, tenant, status):
    matrix.daemon.wait_all("failed", [tenant], timeout=5)
    failed = failures(matrix.daemon, tenant, 1)
    assert failed[0]["kind"] == "network" and failed[0]["http_status"] == status
    assert "redirect" in failed[0]["error"]
    assert failed[0]["retry_in_ms"] == PERMANENT_RETRY_MS
    # Nothing, let alone the secret, went to the Location.
    assert matrix.elsewhere.stats()["total_requests"] == 0
    assert_unavailable(matrix.daemon, tenant, "failed")


@pytest.mark.parametrize("tenant", sorted(BAD_200))
def test_200_that_is_no_token_answer_is_retried(matrix, tenant):
    matrix.daemon.wait_all("fresh", [tenant], timeout=8)
    [failed] = of(matrix.daemon, "refresh_failed", tenant)
    assert failed["kind"] == "bad_response" and failed["http_status"] == 200, failed
    assert BAD_200[tenant][1] in failed["error"], failed
    assert failed["state"] == "pending"
    assert_spacing(matrix.ep.stats()["clients"][f"client-{tenant}"]["times"], [failed])
    answer = assert_serves_issued(matrix.daemon, matrix.ep, tenant)
    assert 3500 < answer["expires_in"] <= 3600  # the good token, not the bad answer's


def test_huge_expires_in_is_capped_and_served(matrix):
    matrix.daemon.wait_all("fresh", ["exphuge"], timeout=5)
    assert not of(matrix.daemon, "refresh_failed", "exphuge")
    answer = assert_serves_issued(matrix.daemon, matrix.ep, "exphuge")
    one_year = 365 * 24 * 3600
    assert one_year - 10 <= answer["expires_in"] <= one_year
    assert abs(answer["expires_at"] - (time.time() + answer["expires_in"])) <= 2


@pytest.mark.parametrize("tenant", sorted(PERMANENT))
def test_permanent_4xx_fails_the_tenant_and_waits_permanent_error_retry(matrix, tenant):
    _, status, oauth_error = PERMANENT[tenant]
    failed = failures(matrix.daemon, tenant, 2, timeout=8)
    for e in failed[:2]:
        assert e["kind"] == "http_4xx" and e["http_status"] == status, e
        assert e["oauth_error"] == oauth_error
        assert e["state"] == "failed"
        assert e["retry_in_ms"] == PERMANENT_RETRY_MS
    assert_spacing(matrix.ep.stats()["clients"][f"client-{tenant}"]["times"], failed)
    assert len(of(matrix.daemon, "tenant_failed", tenant)) == 1
    answer = assert_unavailable(matrix.daemon, tenant, "failed")
    assert answer["last_error"]["http_status"] == status
    assert oauth_error in answer["last_error"]["message"]


# --- timelines of their own -----------------------------------------------------

def poll_gets(daemon, tenant, seconds, issued_lookup):
    """Calls `get` every ~30 ms for `seconds`; checks every token served was
    issued and not past its expiry. Returns the answers."""
    answers = []
    deadline = time.monotonic() + seconds
    with daemon.client() as c:
        while time.monotonic() < deadline:
            answer = c.request({"op": "get", "tenant": tenant})
            now = time.time()
            if answer["ok"]:
                assert answer["expires_in"] >= 1, answer  # outside expiry_margin
                assert answer["expires_at"] > now, answer
            answers.append((now, answer))
            time.sleep(0.03)
    issued = set(issued_lookup())
    for _, answer in answers:
        if answer["ok"]:
            assert answer["access_token"] in issued
    return answers


def test_flapping_endpoint_never_leaves_the_tenant_without_a_token(tmp_path):
    # Tokens live 4 s and are refreshed at about 2 s; the endpoint answers 504
    # to one or two attempts of every other refresh cycle.
    ok, bad = {"status": 200}, {"status": 504}
    pattern = [ok, bad, ok, bad, bad, ok, ok, bad, ok, bad, bad, ok, bad, ok, ok]
    with FakeEndpoint(any_client=True) as ep:
        ep.add_client("client-flap", "secret-flap", lifetime=4)
        ep.script("client-flap", pattern, always=None)
        daemon = Tokend(tmp_path / "tokend", ep, ["flap"], {
            "refresh": {"startup_spread": "0s", "expiry_margin": "1s", "at": 0.5, "jitter": 0.1},
            "backoff": {"initial": "100ms", "max": "400ms"},
        })
        with daemon:
            daemon.wait_all("fresh", ["flap"], timeout=5)
            answers = poll_gets(daemon, "flap", 12, lambda: ep.stats()["tokens"])
            assert all(a["ok"] for _, a in answers), [a for _, a in answers if not a["ok"]][:3]
            assert len({a["access_token"] for _, a in answers}) >= 5  # many cycles
            failed = of(daemon, "refresh_failed", "flap")
            assert len(failed) >= 4
            assert all(e["kind"] == "http_5xx" and e["state"] == "stale" for e in failed)
            assert not daemon.events("token_expired")
        assert not daemon.log_leaks(ep.stats()["tokens"])


def test_outage_longer_than_a_lifetime_expires_then_recovers(tmp_path):
    with FakeEndpoint(any_client=True) as ep:
        ep.add_client("client-out", "secret-out", lifetime=3)
        daemon = Tokend(tmp_path / "tokend", ep, ["out"], {
            "refresh": {"startup_spread": "0s", "expiry_margin": "1s"},
            "backoff": {"initial": "100ms", "max": "500ms"},
        })
        with daemon:
            daemon.wait_all("fresh", ["out"], timeout=5)
            ep.script("client-out", [], always={"status": 503})
            # fresh -> stale (refresh at ~1.5 s fails) -> expired (2 s after issue).
            answers = poll_gets(daemon, "out", 3.5, lambda: ep.stats()["tokens"])
            states = [daemon.tenant_states()["out"]]
            assert states == ["expired"]
            seen = [e["state"] for e in of(daemon, "refresh_failed", "out")]
            assert "stale" in seen and seen[-1] == "expired"
            assert of(daemon, "token_expired", "out")
            unavailable = [a for _, a in answers if not a["ok"]]
            assert unavailable and answers[0][1]["ok"]
            for a in unavailable:
                assert a["error"] == "unavailable" and a["state"] in ("expired", "stale")
                assert "access_token" not in a
                assert a["last_error"]["http_status"] == 503
                # Absent only while an attempt is in flight (no next attempt known).
                assert 0 <= a.get("retry_after_ms", 0) <= 500
            assert sum("retry_after_ms" in a for a in unavailable) >= len(unavailable) // 2
            # Once an answer is unavailable, no token comes back during the outage.
            first_bad = next(i for i, (_, a) in enumerate(answers) if not a["ok"])
            assert not any(a["ok"] for _, a in answers[first_bad:])

            ep.script("client-out", [], always=None)  # the endpoint is back
            back = time.monotonic()
            daemon.wait_all("fresh", ["out"], timeout=3)
            assert time.monotonic() - back <= 0.5 + 0.5  # backoff.max + slack
            assert_serves_issued(daemon, ep, "out")
        assert not daemon.log_leaks(ep.stats()["tokens"])


def test_one_hanging_tenant_does_not_hold_up_the_others(tmp_path):
    # "hang" never gets an answer (each attempt cut at http.timeout, 2 s); five
    # others with 3 s tokens refresh about every 1.5 s meanwhile.
    normal = [f"n{i}" for i in range(5)]
    with FakeEndpoint(any_client=True) as ep:
        for t in normal:
            ep.add_client(f"client-{t}", f"secret-{t}", lifetime=3)
        ep.script("client-hang", [], always={"hang": 30})
        daemon = Tokend(tmp_path / "tokend", ep, ["hang", *normal], {
            "refresh": {"max_concurrent": 2, "startup_spread": "0s", "expiry_margin": "1s",
                        "at": 0.5, "jitter": 0.1},
            "backoff": {"initial": "100ms", "max": "200ms"},
            "http": {"timeout": "2s", "connect_timeout": "1s"},
        })
        with daemon:
            daemon.wait_all("fresh", normal, timeout=5)
            answers = {t: [] for t in normal}
            deadline = time.monotonic() + 7
            while time.monotonic() < deadline:
                for t in normal:
                    answers[t].append(daemon.request({"op": "get", "tenant": t}))
                time.sleep(0.1)
            stats = ep.stats()["clients"]
            for t in normal:
                assert all(a["ok"] for a in answers[t]), t
                times = stats[f"client-{t}"]["times"]
                assert len(times) >= 4, (t, times)
                # Refreshes at 0.4..0.6 of 3 s, never waiting out the hang's 2 s.
                gaps = [b - a for a, b in zip(times, times[1:])]
                assert max(gaps) <= 1.8 + 0.4, (t, gaps)
                for e in of(daemon, "refresh_ok", t):
                    assert e["latency_ms"] < 500, e
            hung = of(daemon, "refresh_failed", "hang")
            assert len(hung) >= 2
            assert all(e["kind"] == "timeout" and e["latency_ms"] >= 1950 for e in hung)
        assert not daemon.log_leaks(ep.stats()["tokens"])
