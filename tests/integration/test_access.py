"""Access control with real peers: clients forked as other users and groups.

Runs as root (it creates users and groups, and switches uid in child
processes); skipped otherwise.
"""

import grp
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import yaml_lite
from tokend_harness import TOKEND_BIN, TOKENCTL_BIN, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd to test other peers")

NOBODY = 65534

# Sends each stdin line as a request on one connection, prints each answer line.
CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rwb")
for line in sys.stdin:
    f.write(line.encode())
    f.flush()
    print(f.readline().decode().rstrip("\n"), flush=True)
"""


def free_id(exists):
    for _ in range(1000):
        n = random.randint(62000, 64999)
        try:
            exists(n)
        except KeyError:
            return n
    raise AssertionError("no free id")


class Peer:
    """A uid/gid (and supplementary groups) that client processes run as."""

    def __init__(self, uid, gid, groups=()):
        self.uid, self.gid, self.groups = uid, gid, list(groups)

    def popen_args(self):
        return {"user": self.uid, "group": self.gid, "extra_groups": self.groups, "cwd": "/"}

    def ask(self, socket_path, *requests):
        """Sends the requests on one connection as this peer; returns the answers."""
        stdin = "".join(json.dumps(r) + "\n" for r in requests)
        done = subprocess.run([sys.executable, "-c", CLIENT, str(socket_path)], input=stdin,
                              capture_output=True, text=True, timeout=20, **self.popen_args())
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def tokenctl(self, socket_path, *args, stdin=None):
        return subprocess.run([TOKENCTL_BIN, "--socket", str(socket_path), *args], input=stdin,
                              capture_output=True, text=True, timeout=20, **self.popen_args())


@pytest.fixture
def accounts():
    """Real users and groups for user:/group: entries, removed afterwards."""
    tag = f"{os.getpid() % 10000:04d}{random.randint(0, 999):03d}"
    names = {"group": f"tkg{tag}", "member": f"tkm{tag}", "named": f"tkn{tag}",
             "other": f"tko{tag}"}
    created_users, created_groups = [], []
    try:
        subprocess.run(["groupadd", names["group"]], check=True)
        created_groups.append(names["group"])
        # member: own primary group, and the shared group as a supplementary one.
        for user, extra in (("member", ["-G", names["group"]]), ("named", []), ("other", [])):
            subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", *extra, names[user]],
                           check=True)
            created_users.append(names[user])
            created_groups.append(names[user])
        peers = {}
        for user in ("member", "named", "other"):
            pw = pwd.getpwnam(names[user])
            groups = os.getgrouplist(names[user], pw.pw_gid)
            peers[user] = Peer(pw.pw_uid, pw.pw_gid, groups)
        yield names, peers, grp.getgrnam(names["group"]).gr_gid
    finally:
        for user in created_users:
            subprocess.run(["userdel", user], capture_output=True)
        for group in created_groups:
            subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture
def open_dir():
    """A directory every uid may traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tokend-access-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def denied_lines(daemon, uid=None):
    return [e for e in daemon.events("client_denied") if uid is None or e["uid"] == uid]


def test_allowed_and_denied_peers(endpoint, tokend_factory, accounts, open_dir):
    names, peers, group_gid = accounts
    free_uid = free_id(pwd.getpwuid)
    admin_uid = free_id(pwd.getpwuid)
    socket_path = open_dir / "tokend.sock"
    daemon = tokend_factory(endpoint, ["org-a", {"id": "org-b", "clients": [f"user:{names['named']}"]}],
                            {"socket": {"path": str(socket_path), "mode": "0666"},
                             "access": {"clients": [f"user:{names['named']}",
                                                    f"group:{names['group']}",
                                                    f"uid:{free_uid}"],
                                        "admins": [f"uid:{admin_uid}"]}})
    daemon.wait_all("fresh", timeout=5)
    get_a = {"op": "get", "tenant": "org-a"}
    get_b = {"op": "get", "tenant": "org-b"}

    # user: entry, and the only reader of org-b; not an admin.
    named = peers["named"]
    a, b, refresh, reload_ = named.ask(socket_path, get_a, get_b,
                                       {"op": "refresh", "tenant": "org-a"}, {"op": "reload"})
    assert a["ok"] and b["ok"]
    assert refresh["error"] == "forbidden" and reload_["error"] == "forbidden"

    # group: entry through a supplementary group; org-b is not for it.
    a, b = peers["member"].ask(socket_path, get_a, get_b)
    assert a["ok"]
    assert b["error"] == "forbidden"
    # group: entry through the primary gid (SO_PEERCRED) of a uid without a passwd entry.
    assert Peer(free_id(pwd.getpwuid), group_gid).ask(socket_path, get_a)[0]["ok"]
    # uid: entry without a passwd entry.
    assert Peer(free_uid, NOBODY).ask(socket_path, get_a)[0]["ok"]

    # Admin: refresh and reload, and a client too.
    refresh, reload_, a = Peer(admin_uid, NOBODY).ask(
        socket_path, {"op": "refresh", "tenant": "org-a", "wait_ms": 5000}, {"op": "reload"}, get_a)
    assert refresh["ok"] and reload_ == {"ok": True, "tenants": 2} and a["ok"]

    # Strangers: forbidden for everything but ping.
    for stranger in (peers["other"], Peer(NOBODY, NOBODY)):
        answers = stranger.ask(socket_path, get_a, {"op": "status"}, {"op": "watch"},
                               {"op": "metrics"}, {"op": "ping"})
        assert [x.get("error") for x in answers[:4]] == ["forbidden"] * 4
        assert answers[4]["ok"] is True
        assert all("access_token" not in x for x in answers)

    # Root is always allowed.
    assert daemon.request(get_b)["ok"]

    def logged():
        return denied_lines(daemon, NOBODY) and denied_lines(daemon, peers["member"].uid)
    wait_until(logged, what="client_denied lines")
    nobody = denied_lines(daemon, NOBODY)
    assert [e["op"] for e in nobody] == ["get", "status", "watch", "metrics"]
    assert all(e["gid"] == NOBODY and e["pid"] > 0 and e["level"] == "warn" for e in nobody)
    member = denied_lines(daemon, peers["member"].uid)
    assert [(e["op"], e.get("tenant")) for e in member] == [("get", "org-b")]
    assert [(e["op"], e["uid"]) for e in denied_lines(daemon, named.uid)] == [
        ("refresh", named.uid), ("reload", named.uid)]


def test_denial_flood_is_rate_limited(endpoint, tokend_factory, open_dir):
    socket_path = open_dir / "tokend.sock"
    daemon = tokend_factory(endpoint, ["org-a"],
                            {"socket": {"path": str(socket_path), "mode": "0666"}})
    answers = Peer(NOBODY, NOBODY).ask(socket_path, *([{"op": "get", "tenant": "org-a"}] * 300))
    assert len(answers) == 300 and all(a["error"] == "forbidden" for a in answers)
    assert daemon.request({"op": "ping"})["ok"]  # the log has caught up with the socket loop
    lines = denied_lines(daemon, NOBODY)
    assert 1 <= len(lines) <= 5, lines


def test_tokenctl_exit_codes_for_other_peers(endpoint, tokend_factory, open_dir, accounts):
    names, peers, _ = accounts
    socket_path = open_dir / "tokend.sock"
    daemon = tokend_factory(endpoint, ["org-a"],
                            {"socket": {"path": str(socket_path), "mode": "0666"},
                             "access": {"clients": [f"user:{names['named']}"]}})
    daemon.wait_all("fresh", timeout=5)
    ok = peers["named"].tokenctl(socket_path, "get", "org-a")
    assert ok.returncode == 0 and ok.stdout.strip() in endpoint.stats()["tokens"]
    denied = peers["other"].tokenctl(socket_path, "get", "org-a")
    assert denied.returncode == 1 and denied.stderr.startswith("error: forbidden: "), denied.stderr
    assert peers["other"].tokenctl(socket_path, "ping").returncode == 0
    not_admin = peers["named"].tokenctl(socket_path, "reload")
    assert not_admin.returncode == 1 and "forbidden" in not_admin.stderr


def test_socket_mode_keeps_other_users_out(endpoint, tokend_factory, open_dir):
    socket_path = open_dir / "tokend.sock"
    tokend_factory(endpoint, ["org-a"], {"socket": {"path": str(socket_path), "mode": "0600"}})
    assert socket_path.stat().st_mode & 0o777 == 0o600
    run = Peer(NOBODY, NOBODY).tokenctl(socket_path, "ping")
    assert run.returncode == 3 and "Permission denied" in run.stderr, run.stderr


def test_reload_changes_who_is_allowed(endpoint, tokend_factory, accounts, open_dir):
    names, peers, _ = accounts
    socket_path = open_dir / "tokend.sock"
    daemon = tokend_factory(endpoint, ["org-a"],
                            {"socket": {"path": str(socket_path), "mode": "0666"}})
    daemon.wait_all("fresh", timeout=5)
    get_a = {"op": "get", "tenant": "org-a"}
    other = peers["other"]
    assert other.ask(socket_path, get_a)[0]["error"] == "forbidden"

    # A stranger's access follows the reloaded config.
    config = dict(daemon.config)
    config["access"] = {"clients": [f"user:{names['other']}"]}
    daemon.config_path.write_text(yaml_lite.dump(config))
    assert daemon.request({"op": "reload"}) == {"ok": True, "tenants": 1}
    assert other.ask(socket_path, get_a)[0]["ok"]

    # An unknown name is a reload error naming the key; the old access stays.
    config["access"] = {"clients": ["user:no-such-user-tokend"]}
    daemon.config_path.write_text(yaml_lite.dump(config))
    answer = daemon.request({"op": "reload"})
    assert answer["ok"] is False and answer["error"] == "bad_request"
    assert any("access.clients[0]: unknown user" in e for e in answer["errors"]), answer
    assert other.ask(socket_path, get_a)[0]["ok"]

    watcher = subprocess.Popen([TOKENCTL_BIN, "--socket", str(socket_path), "watch"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               **other.popen_args())
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["event"] == "token" and first["tenant"] == "org-a"

        # SIGHUP: back to root only; the watcher loses its right and is dropped.
        config.pop("access")
        daemon.config_path.write_text(yaml_lite.dump(config))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(daemon.events("reload_ok")) >= 2, what="reload_ok")
        assert watcher.wait(timeout=5) == 3
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watcher.wait()
    dropped = daemon.events("watcher_dropped")
    assert [(e["reason"], e["uid"]) for e in dropped] == [("access_revoked", other.uid)]
    assert other.ask(socket_path, get_a)[0]["error"] == "forbidden"


def test_unknown_user_in_config_is_a_config_error(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["org-a"],
                            {"access": {"clients": ["group:no-such-group-tokend"]}}, start=False)
    check = subprocess.run([TOKEND_BIN, "--check-config", "--config", str(daemon.config_path)],
                           capture_output=True, text=True, timeout=10)
    assert check.returncode == 1
    assert f"{daemon.config_path}:" in check.stderr
    assert "access.clients[0]: unknown group \"no-such-group-tokend\"" in check.stderr, check.stderr
