"""Command lines of both binaries: --version, --help, usage errors (SPEC §2)."""

import subprocess

from tokend_harness import TOKENCTL_BIN, TOKEND_BIN


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=10)


def test_tokend_version_and_help():
    version = run(TOKEND_BIN, "--version")
    assert version.returncode == 0 and version.stdout.startswith("tokend ")
    helped = run(TOKEND_BIN, "--help")
    assert helped.returncode == 0
    for option in ["--config", "--check-config", "--log-level", "--log-format"]:
        assert option in helped.stdout


def test_tokend_usage_errors_exit_2():
    for args in (["--frobnicate"], ["--config"], ["--log-level", "loud"], ["--log-format", "xml"]):
        out = run(TOKEND_BIN, *args)
        assert out.returncode == 2, args
        assert "usage: tokend" in out.stderr and out.stdout == ""


def test_tokend_missing_config_exits_1(tmp_path):
    out = run(TOKEND_BIN, "--config", str(tmp_path / "nope.yaml"), "--check-config")
    assert out.returncode == 1
    assert str(tmp_path / "nope.yaml") in out.stderr


def test_tokenctl_version_help_and_usage():
    assert run(TOKENCTL_BIN, "--version").returncode == 0
    helped = run(TOKENCTL_BIN, "--help")
    assert helped.returncode == 0 and "get TENANT" in helped.stdout
    for args in ([], ["get"], ["get", "a", "--wait", "soon"], ["--timeout"], ["frobnicate"]):
        out = run(TOKENCTL_BIN, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr


def test_tokenctl_cannot_reach_daemon_exits_3(tmp_path):
    out = run(TOKENCTL_BIN, "--socket", str(tmp_path / "none.sock"), "ping")
    assert out.returncode == 3
    assert str(tmp_path / "none.sock") in out.stderr
