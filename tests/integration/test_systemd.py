"""systemd integration: sd_notify for real, the watchdog, socket activation, reload, the unit."""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import yaml_lite
from tokend_harness import REPO, TOKEND_BIN, SocketClient, wait_until


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic time of arrival, text)
        self.lock = threading.Lock()
        self.closed = False
        # Read continuously so each message is stamped when it arrives.
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def drain(self):
        """Kept for readability at call sites: messages arrive on their own."""
        time.sleep(0.01)

    def wait_for(self, predicate, timeout=10.0, what="notification"):
        def found():
            self.drain()
            return [m for m in self.messages if predicate(m[1])]
        return wait_until(found, timeout=timeout, interval=0.01, what=what)

    def texts(self):
        self.drain()
        return [m[1] for m in self.messages]

    def close(self):
        self.closed = True
        self.reader.join(timeout=1)
        self.sock.close()


def start_notified(daemon, notify, watchdog_usec=None, extra_env=None):
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    env.update(extra_env or {})
    daemon._log = open(daemon.log_path, "wb")
    daemon.proc = subprocess.Popen([TOKEND_BIN, "--config", str(daemon.config_path)],
                                   stdout=daemon._log, stderr=subprocess.STDOUT, env=env)
    return daemon


def test_sd_notify_ready_status_watchdog_reloading_stopping(tmp_path, endpoint, tokend_factory):
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = tokend_factory(endpoint, ["a", "b"], start=False)
    start_notified(daemon, notify, watchdog_usec=1_000_000)
    ready = notify.wait_for(lambda t: "READY=1" in t, what="READY=1")
    assert daemon.socket_path.exists()  # READY=1 only once the socket serves
    notify.wait_for(lambda t: t == "STATUS=2/2 tenants hold a valid token; requests in flight 0 of 2"
                    or re.match(r"STATUS=2/2 tenants hold a valid token", t), what="STATUS 2/2")
    assert any(t.startswith("STATUS=0/2") for t in notify.texts())
    pings = notify.wait_for(lambda t: t == "WATCHDOG=1", what="WATCHDOG=1")
    assert pings[0][0] >= ready[0][0]
    time.sleep(1.2)
    assert len([t for t in notify.texts() if t == "WATCHDOG=1"]) >= 3  # every 0.5 s

    daemon.proc.send_signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda t: t.startswith("RELOADING=1"), what="RELOADING=1")
    assert "MONOTONIC_USEC=" in reloading[0][1]
    wait_until(lambda: [m for m in notify.messages
                        if m[1] == "READY=1" and m[0] >= reloading[0][0]] or notify.drain(),
               what="READY=1 after reload")
    code, _ = daemon.stop()
    assert code == 0
    assert "STOPPING=1" in notify.texts()
    notify.close()


def test_watchdog_is_not_fed_while_the_refresh_loop_is_stuck(tmp_path, endpoint, tokend_factory):
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = tokend_factory(endpoint, ["a"], start=False)
    # The refresh loop sleeps 5 s right after start; the stall limit is 3 s.
    start_notified(daemon, notify, watchdog_usec=1_000_000,
                   extra_env={"TOKEND_TEST_STALL_REFRESH_LOOP_MS": "5000"})
    ready = notify.wait_for(lambda t: "READY=1" in t, what="READY=1")[0][0]
    time.sleep(5.5)
    notify.drain()
    pings = [m[0] - ready for m in notify.messages if m[1] == "WATCHDOG=1"]
    # Fed while the loop was within its stall limit, silent after, fed again once it recovered.
    gap = max(b - a for a, b in zip(pings, pings[1:])) if len(pings) > 1 else 0
    assert gap >= 1.5, pings
    assert any(p > 5.0 for p in pings), pings
    daemon.stop()
    notify.close()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
def test_socket_activation(tmp_path, endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["a"], start=False)
    activated = tmp_path / "activated.sock"
    daemon._log = open(daemon.log_path, "wb")
    daemon.proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(activated), TOKEND_BIN, "--config",
         str(daemon.config_path)], stdout=daemon._log, stderr=subprocess.STDOUT)
    wait_until(activated.exists, what="activated socket")
    with SocketClient(activated) as client:  # the first connection starts tokend
        answer = client.request({"op": "get", "tenant": "a", "wait_ms": 5000})
    assert answer["ok"] is True, (answer, daemon.log_text())
    listening = daemon.events("listening")[0]
    assert listening["activated"] is True
    assert not daemon.socket_path.exists()  # socket.path is not used
    code, elapsed = daemon.stop()
    assert code == 0 and elapsed < 1.0
    assert activated.exists() or True  # systemd-socket-activate owns it


def write_config(daemon, tenants_override=None, **sections):
    config = dict(daemon.config)
    for key, val in sections.items():
        config[key] = val
    if tenants_override is not None:
        config["tenants"] = tenants_override
    daemon.config_path.write_text(yaml_lite.dump(config))
    return config


def test_sighup_reload_adds_removes_changes_and_keeps(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["keep", "change", "drop"])
    daemon.wait_all("fresh", timeout=5)
    kept_token = daemon.request({"op": "get", "tenant": "keep"})["access_token"]
    requests = endpoint.stats()["clients"]

    tenants = [t for t in daemon.config["tenants"] if t["id"] != "drop"]
    tenants = [dict(t, client_id="client-change-v2") if t["id"] == "change" else t for t in tenants]
    secret = daemon.workdir / "secrets" / "keep"
    tenants.append({"id": "new", "client_id": "client-new", "client_secret_file": str(secret),
                    "token_url": endpoint.url})
    write_config(daemon, tenants, logging={"format": "text", "level": "info"})
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload_ok" in daemon.log_text(), what="reload_ok")
    daemon.wait_all("fresh", ["keep", "change", "new"], timeout=5)
    states = daemon.tenant_states()
    assert "drop" not in states
    assert daemon.request({"op": "get", "tenant": "drop"})["error"] == "unknown_tenant"
    assert daemon.request({"op": "get", "tenant": "keep"})["access_token"] == kept_token
    stats = endpoint.stats()["clients"]
    assert stats["client-keep"]["requests"] == requests["client-keep"]["requests"]  # no request
    assert stats["client-change-v2"]["requests"] == 1
    assert stats["client-new"]["requests"] == 1
    # Logging format followed: lines after the reload are text, not JSON.
    after = daemon.log_text().split("reload_ok", 1)[1]
    assert re.search(r"^\S+Z info refresh_ok: ", after, re.M)


def test_broken_reload_keeps_the_old_config(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["a"])
    daemon.wait_all("fresh", timeout=5)
    daemon.config_path.write_text("tenants: [\n")
    daemon.proc.send_signal(signal.SIGHUP)
    failed = wait_until(lambda: daemon.events("reload_failed"), what="reload_failed")
    assert "tokend.yaml" in failed[0]["errors"][0]
    assert daemon.proc.poll() is None
    assert daemon.request({"op": "get", "tenant": "a"})["ok"] is True


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_exposure_is_at_most_1_0():
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                          str(REPO / "systemd" / "tokend.service")],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for tokend\.service: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 1.0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify(tmp_path):
    # systemd-analyze verify needs the binaries the units name; point them at ours.
    for unit in ["tokend.service", "tokend.socket"]:
        text = (REPO / "systemd" / unit).read_text().replace("/usr/bin/tokend", TOKEND_BIN)
        (tmp_path / unit).write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no",
                          str(tmp_path / "tokend.service"), str(tmp_path / "tokend.socket")],
                         capture_output=True, text=True, timeout=60)
    problems = [l for l in (out.stdout + out.stderr).splitlines()
                if "tokend" in l and "network-online.target" not in l]
    assert not problems, "\n".join(problems)
