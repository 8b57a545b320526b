"""The socket ops beyond get/status/ping, and the socket file, with the real
binaries: watch, invalidate, refresh, reload, metrics; a live or stale socket."""

import datetime
import json
import socket
import subprocess
import time

from tokend_harness import TOKENCTL_BIN, SocketClient, Tokend, wait_until


def log_time(event):
    """An event's `ts` as seconds since the epoch."""
    return datetime.datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def test_second_tokend_on_a_live_socket_exits_3(endpoint, tokend_factory, tmp_path):
    first = tokend_factory(endpoint, ["org-a"])
    second = Tokend(tmp_path / "second", endpoint, ["org-a"],
                    {"socket": {"path": str(first.socket_path)}})
    second.start(wait=False)
    try:
        assert second.proc.wait(timeout=10) == 3
    finally:
        second.stop()
    text = second.log_text()
    assert "another process is listening on " + str(first.socket_path) in text, text
    assert "is tokend already running?" in text
    # The first one is untouched.
    assert first.request({"op": "ping"})["ok"]
    assert first.socket_path.exists()


def test_stale_socket_file_is_replaced(endpoint, tokend_factory, tmp_path):
    path = tmp_path / "stale" / "tokend.sock"
    path.parent.mkdir()
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))  # a file nobody answers on, as after a crash
    leftover.close()
    assert path.exists()
    daemon = tokend_factory(endpoint, ["org-a"], {"socket": {"path": str(path), "mode": "0640"}})

    def pings():  # the stale file was there before tokend: wait for the new one
        try:
            return daemon.request({"op": "ping"})["ok"]
        except OSError:
            return False
    wait_until(pings, what="tokend on the replaced socket")
    assert daemon.proc.poll() is None
    assert path.stat().st_mode & 0o777 == 0o640
    code, _ = daemon.stop()
    assert code == 0 and not path.exists()


def test_watcher_gets_a_refreshed_token_within_100ms(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["org-a", "org-b"])
    daemon.wait_all("fresh", timeout=5)
    with daemon.client() as watcher:
        assert watcher.request({"op": "watch"}) == {"ok": True, "watching": ["org-a", "org-b"]}
        current = {}
        for _ in range(2):
            event = watcher.read_line()
            assert event["event"] == "token"
            current[event["tenant"]] = event["access_token"]
        assert current["org-a"] == daemon.request({"op": "get", "tenant": "org-a"})["access_token"]

        for _ in range(5):
            before = len([e for e in daemon.events("refresh_ok") if e["tenant"] == "org-a"])
            assert daemon.request({"op": "refresh", "tenant": "org-a"})["ok"]
            event = watcher.read_line()
            received = time.time()
            assert event["event"] == "token" and event["tenant"] == "org-a"
            assert event["access_token"] != current["org-a"]
            current["org-a"] = event["access_token"]
            ok = wait_until(lambda: [e for e in daemon.events("refresh_ok")
                                     if e["tenant"] == "org-a"][before:], what="refresh_ok")
            # refresh_ok is logged on the refresh thread right after the token
            # is published (microseconds), so this is the push delay.
            assert received - log_time(ok[0]) < 0.1, (received, ok[0]["ts"])


def test_invalidate_many_reports_one_refresh(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["org-a"])
    daemon.wait_all("fresh", timeout=5)
    rejected = daemon.tokenctl("get", "org-a").stdout.strip()
    requests_before = endpoint.stats()["total_requests"]

    # Ten clients report the same token at once; one refresh follows.
    clients = [SocketClient(daemon.socket_path) for _ in range(10)]
    for c in clients:
        c.send({"op": "invalidate", "tenant": "org-a", "access_token": rejected, "wait_ms": 5000})
    answers = [c.read_line() for c in clients]
    for c in clients:
        c.close()
    assert all(a["ok"] for a in answers), answers
    fresh = {a["access_token"] for a in answers}
    assert len(fresh) == 1 and rejected not in fresh
    assert endpoint.stats()["total_requests"] == requests_before + 1

    # tokenctl reads the token on stdin; a stale report changes nothing.
    run = daemon.tokenctl("invalidate", "org-a", input=rejected + "\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() in fresh
    assert endpoint.stats()["total_requests"] == requests_before + 1


def test_tokenctl_refresh_reload_metrics(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["org-a"])
    daemon.wait_all("fresh", timeout=5)
    old = daemon.tokenctl("get", "org-a").stdout.strip()
    run = daemon.tokenctl("refresh", "org-a")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() not in ("", old)
    assert run.stdout.strip() == daemon.tokenctl("get", "org-a").stdout.strip()

    run = daemon.tokenctl("reload")
    assert (run.returncode, run.stdout) == (0, "reloaded: 1 tenants\n"), run.stderr
    assert daemon.events("reload_ok")

    daemon.config_path.write_text(daemon.config_path.read_text() + "bogus: 1\n")
    run = daemon.tokenctl("reload")
    assert run.returncode == 1
    assert "error: bad_request:" in run.stderr and "bogus: unknown key" in run.stderr, run.stderr

    run = daemon.tokenctl("metrics")
    assert run.returncode == 0, run.stderr
    assert "tokend_build_info" in run.stdout
    assert 'tokend_socket_requests_total{op="refresh",result="ok"} 1' in run.stdout, run.stdout


def test_tokenctl_watch_prints_event_lines(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["org-a", "org-b"])
    daemon.wait_all("fresh", timeout=5)
    watch = subprocess.Popen([TOKENCTL_BIN, "--socket", str(daemon.socket_path), "watch", "org-b"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(watch.stdout.readline())
        assert first["event"] == "token" and first["tenant"] == "org-b"
        assert daemon.request({"op": "refresh", "tenant": "org-b", "wait_ms": 5000})["ok"]
        second = json.loads(watch.stdout.readline())
        assert second["tenant"] == "org-b" and second["access_token"] != first["access_token"]
        daemon.stop()
        assert watch.wait(timeout=5) == 3  # the daemon went away
    finally:
        if watch.poll() is None:
            watch.kill()
        watch.wait()
