"""`cmake --install` into a DESTDIR puts every file where an operator expects it."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tokend_harness import REPO, TOKEND_BIN

BUILD = Path(TOKEND_BIN).resolve().parent


def test_install_tree(tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["cmake", "--install", str(BUILD), "--prefix", "/usr"],
                   env=dict(os.environ, DESTDIR=str(dest)), check=True, capture_output=True,
                   timeout=120)
    expected = [
        "usr/bin/tokend",
        "usr/bin/tokenctl",
        "usr/lib/systemd/system/tokend.service",
        "usr/lib/systemd/system/tokend.socket",
        "usr/lib/sysusers.d/tokend.conf",
        "etc/tokend/tokend.yaml",
        "usr/share/doc/tokend/README.md",
        "usr/share/doc/tokend/CONFIG.md",
        "usr/share/doc/tokend/EVENTS.md",
    ]
    for path in expected:
        assert (dest / path).is_file(), path
    for binary in ["usr/bin/tokend", "usr/bin/tokenctl"]:
        assert os.access(dest / binary, os.X_OK)
        out = subprocess.run([str(dest / binary), "--version"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.split()[0] == Path(binary).name
    assert (dest / "etc/tokend/tokend.yaml").stat().st_mode & 0o007 == 0
    unit = (dest / "usr/lib/systemd/system/tokend.service").read_text()
    assert "ExecStart=/usr/bin/tokend" in unit


def test_example_config_checks_when_its_secrets_exist(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in ["org-parent", "org-child-1", "org-child-2"]:
        (credentials / name).write_text(f"secret-{name}\n")
        (credentials / name).chmod(0o600)
    out = subprocess.run([TOKEND_BIN, "--config", str(REPO / "config" / "tokend.yaml"),
                          "--check-config"], capture_output=True, text=True,
                         env=dict(os.environ, CREDENTIALS_DIRECTORY=str(credentials)))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "config OK: 3 tenants\n"


@pytest.mark.skipif(shutil.which("cpack") is None or shutil.which("dpkg-deb") is None,
                    reason="cpack or dpkg-deb missing")
def test_cpack_builds_a_deb(tmp_path):
    out = subprocess.run(["cpack", "-G", "DEB", "-B", str(tmp_path), "--config",
                          str(BUILD / "CPackConfig.cmake")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    debs = list(tmp_path.glob("tokend_*.deb"))
    assert len(debs) == 1
    listing = subprocess.run(["dpkg-deb", "-c", str(debs[0])], capture_output=True, text=True).stdout
    for path in ["./usr/bin/tokend", "./usr/bin/tokenctl", "./usr/lib/systemd/system/tokend.service",
                 "./etc/tokend/tokend.yaml"]:
        assert path in listing
    info = subprocess.run(["dpkg-deb", "-I", str(debs[0])], capture_output=True, text=True).stdout
    assert "libcurl" in info  # shlibdeps found the runtime libraries
