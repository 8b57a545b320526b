"""The example clients in examples/ against a real tokend."""

import shutil
import subprocess
import sys

import pytest

from tokend_harness import REPO

PYTHON_CLIENT = REPO / "examples" / "python" / "tokend_client.py"
JAVA_SOURCE = REPO / "examples" / "java" / "TokendClient.java"


def check_client(command, daemon, endpoint):
    """Runs an example client that gets a token, then watches for two events
    (the current token, then one refreshed while it watches)."""
    client = subprocess.Popen([*command, "--socket", str(daemon.socket_path), "--count", "2",
                               "org-a"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = client.stdout.readline().split()
        assert got[:2] == ["token", "org-a"], got
        assert got[2] in endpoint.stats()["tokens"]
        first = client.stdout.readline().split()
        assert first[:3] == ["event", "token", "org-a"] and first[3] == got[2], first
        assert 3500 < int(first[4]) <= 3600
        refreshed = daemon.request({"op": "refresh", "tenant": "org-a", "wait_ms": 5000})
        second = client.stdout.readline().split()
        assert second[:4] == ["event", "token", "org-a", refreshed["access_token"]], second
        assert client.wait(timeout=10) == 0, client.stderr.read()
    finally:
        if client.poll() is None:
            client.kill()
        client.wait()

    # An error answer exits 1 with the code on stderr.
    failed = subprocess.run([*command, "--socket", str(daemon.socket_path), "org-zz"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "unknown_tenant" in failed.stderr


def test_python_example(endpoint, tokend_factory):
    daemon = tokend_factory(endpoint, ["org-a"])
    daemon.wait_all("fresh", timeout=5)
    check_client([sys.executable, str(PYTHON_CLIENT)], daemon, endpoint)


@pytest.mark.skipif(not shutil.which("javac") or not shutil.which("java"),
                    reason="javac/java (JDK 16+) not installed; the Java example is not tested")
def test_java_example(endpoint, tokend_factory, tmp_path):
    classes = tmp_path / "classes"
    compiled = subprocess.run(["javac", "-Xlint:all", "-Werror", "-d", str(classes),
                               str(JAVA_SOURCE)], capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    daemon = tokend_factory(endpoint, ["org-a"])
    daemon.wait_all("fresh", timeout=5)
    check_client(["java", "-cp", str(classes), "TokendClient"], daemon, endpoint)
