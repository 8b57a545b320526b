"""The persisted token cache (state.file): restarts without a stampede."""

import json
import os
import signal
import stat
import time

from tokend_harness import wait_until


def state_overrides(workdir, **refresh):
    return {"state": {"file": str(workdir / "state.json")},
            "refresh": {"startup_spread": "1s", **refresh}}


def test_restart_with_50_valid_tokens_sends_no_request(tmp_path, endpoint, tokend_factory):
    tenants = [f"org-{i:02d}" for i in range(50)]
    overrides = state_overrides(tmp_path, max_concurrent=8)
    first = tokend_factory(endpoint, tenants, overrides, name="run")
    first.wait_all("fresh", timeout=20)
    tokens = {t: first.request({"op": "get", "tenant": t})["access_token"] for t in tenants}
    assert first.stop()[0] == 0
    state = tmp_path / "state.json"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert len(json.loads(state.read_text())["tokens"]) == 50

    requests_before = endpoint.stats()["total_requests"]
    second = tokend_factory(endpoint, tenants, overrides, name="run")
    # Served at once: the very first get of every tenant answers the stored token.
    for t in tenants:
        answer = second.request({"op": "get", "tenant": t})
        assert answer["ok"] is True and answer["access_token"] == tokens[t]
    time.sleep(1.5)  # past startup_spread: nothing was due
    assert endpoint.stats()["total_requests"] == requests_before
    assert second.events("state_loaded")[0]["tokens"] == 50
    assert len(second.events("state_token_restored")) == 50


def test_changed_client_id_discards_stored_token(tmp_path, endpoint, tokend_factory):
    overrides = state_overrides(tmp_path)
    first = tokend_factory(endpoint, ["a", "b"], overrides, name="run")
    first.wait_all("fresh", timeout=5)
    old = {t: first.request({"op": "get", "tenant": t})["access_token"] for t in ["a", "b"]}
    first.stop()

    second = tokend_factory(endpoint, [{"id": "a", "client_id": "client-a-v2"}, "b"],
                            overrides, name="run")
    assert second.request({"op": "get", "tenant": "b"})["access_token"] == old["b"]
    fresh_a = second.request({"op": "get", "tenant": "a", "wait_ms": 5000})
    assert fresh_a["ok"] and fresh_a["access_token"] != old["a"]
    assert endpoint.stats()["clients"]["client-a-v2"]["requests"] == 1
    assert second.events("state_token_dropped")[0]["tenant"] == "a"


def test_corrupt_state_file_is_set_aside_and_tenants_refresh(tmp_path, endpoint, tokend_factory):
    state = tmp_path / "state.json"
    state.write_text('{"version":1,"tokens":[{"tenant":')
    state.chmod(0o600)
    daemon = tokend_factory(endpoint, ["a"], state_overrides(tmp_path), name="run")
    daemon.wait_all("fresh", timeout=5)
    failed = daemon.events("state_load_failed")
    assert failed and failed[0]["set_aside"] is True
    assert list(tmp_path.glob("state.json.bad-*"))


def test_group_readable_state_file_is_refused(tmp_path, endpoint, tokend_factory):
    first = tokend_factory(endpoint, ["a"], state_overrides(tmp_path), name="run")
    first.wait_all("fresh", timeout=5)
    first.stop()
    state = tmp_path / "state.json"
    state.chmod(0o644)
    before = endpoint.stats()["total_requests"]
    second = tokend_factory(endpoint, ["a"], state_overrides(tmp_path), name="run")
    second.wait_all("fresh", timeout=5)
    assert "readable by group or others" in second.events("state_load_failed")[0]["error"]
    assert endpoint.stats()["total_requests"] == before + 1


def test_kill_9_during_refresh_storms_never_leaves_a_bad_file(tmp_path, tokend_factory):
    from fake_endpoint import FakeEndpoint
    tenants = [f"t{i:03d}" for i in range(120)]
    with FakeEndpoint(any_client=True, lifetime=3600, service_time=0.01) as ep:
        overrides = state_overrides(tmp_path, max_concurrent=16, startup_spread="300ms",
                                    adaptive=False)
        for round_ in range(8):
            daemon = tokend_factory(ep, tenants, overrides, name=f"run{round_}")
            # Tenants without a stored token refresh now; kill while they do.
            time.sleep(0.15 + 0.1 * (round_ % 4))
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait()
            state = tmp_path / "state.json"
            if state.exists():
                doc = json.loads(state.read_text())  # never truncated or torn
                assert doc["version"] == 1
                assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
        final = tokend_factory(ep, tenants, overrides, name="final")
        final.wait_all("fresh", timeout=20)
        assert not final.events("state_load_failed")
