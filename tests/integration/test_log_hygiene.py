"""Log hygiene: a varied run at trace level, in both log formats, and not one
log line holds a client secret or an access token issued during the run
(SPEC §6) — not even when the token endpoint echoes them back.

conftest.py applies the same check to every daemon any integration test starts
with `tokend_factory`; this test makes sure the scenario is rich enough.
"""

import base64
import os
import time
import urllib.parse

import pytest

from tokend_harness import wait_until


def secret_for(tenant):
    # Characters that form encoding and Basic encoding both change.
    return f"S3cr3t+/=&%{tenant}-{os.getpid()}-{time.monotonic_ns() % 100000}"


def encodings(secret, client_id):
    quoted = urllib.parse.quote_plus(secret)
    basic = base64.b64encode(f"{urllib.parse.quote_plus(client_id)}:{quoted}".encode()).decode()
    return [secret, quoted, basic]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_secret_or_token_in_any_log_line(endpoint, tokend_factory, log_format):
    tenants = ["ok", "desc", "echo5xx", "hdr", "bad200", "post"]
    secrets = {t: secret_for(t) for t in tenants}
    endpoint.add_client("client-ok", secrets["ok"], lifetime=3)
    # Endpoints that echo what they were sent: the secret in an error
    # description, in a 5xx body, in the correlation header.
    endpoint.script("client-desc", [], always={
        "status": 401, "json": {"error": "invalid_client",
                                "error_description": f"secret {secrets['desc']} is wrong"}})
    endpoint.script("client-echo5xx", [
        {"status": 503, "json": {"error": secrets["echo5xx"],
                                 "error_description": "Basic " + encodings(
                                     secrets["echo5xx"], "client-echo5xx")[2]}},
        {"status": 500, "body": f"upstream said {secrets['echo5xx']}"},
    ])
    endpoint.script("client-hdr", [
        {"status": 504, "headers": {"ININ-Correlation-Id": secrets["hdr"]}},
        {"status": 429, "retry_after": secrets["hdr"]},
    ])
    endpoint.script("client-bad200", [
        {"status": 200, "json": {"access_token": "tok-notquiteatoken-000001",
                                 "expires_in": "later"}},
        {"status": 200, "body": f'{{"access_token": "{secrets["bad200"]}"'},
    ])
    daemon = tokend_factory(
        endpoint,
        [{"id": t, "secret": secrets[t], **({"auth_method": "post"} if t == "post" else {})}
         for t in tenants],
        {"logging": {"format": log_format, "level": "trace"},
         "refresh": {"startup_spread": "0s", "expiry_margin": "1s"},
         "backoff": {"initial": "50ms", "max": "200ms", "permanent_error_retry": "1s"}})
    daemon.wait_all("fresh", ["ok", "echo5xx", "hdr", "bad200", "post"], timeout=10)
    wait_until(lambda: daemon.tenant_states()["desc"] == "failed", what="desc failed")

    # Client traffic while tokens turn over: gets, waiting gets, bad requests,
    # invalidate reports of real and made-up tokens, status.
    deadline = time.monotonic() + 3.5
    with daemon.client() as c:
        while time.monotonic() < deadline:
            got = c.request({"op": "get", "tenant": "ok", "wait_ms": 500})
            if got["ok"]:
                c.request({"op": "invalidate", "tenant": "ok",
                           "access_token": got["access_token"]})
            c.request({"op": "invalidate", "tenant": "ok", "access_token": secrets["ok"]})
            c.request({"op": "get", "tenant": "desc"})
            c.request({"op": "status"})
            c.send_raw(f'{{"op":"get","tenant":"{secrets["ok"]}"}}\n'.encode())
            c.read_line()
            time.sleep(0.05)
    status = daemon.status()
    daemon.stop()

    issued = endpoint.stats()["tokens"]
    assert len([t for t in issued]) >= 6  # "ok" turned its token over more than once
    text = daemon.log_text()
    assert len(text.splitlines()) > 30  # trace level: plenty was said
    assert "refresh_failed" in text and "refresh_ok" in text
    everything = [s for t in tenants for s in encodings(secrets[t], f"client-{t}")]
    leaks = [line for line in text.splitlines()
             if any(s in line for s in everything) or any(t in line for t in issued)]
    assert not leaks, leaks[:3]
    assert not daemon.log_leaks(issued)
    # Nor in what `status` shows (last_error messages come from the endpoint).
    status_text = str(status)
    assert not any(s in status_text for s in everything)
