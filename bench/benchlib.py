"""Shared plumbing for the Python benchmarks in bench/: the fake token endpoint,
a tokend with a generated config, its log, and /proc readings.

Binaries: TOKEND_BIN, else build-rel/tokend, else build/tokend under the
repository. Everything runs on loopback and in a temporary directory.
"""

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))


def _default_bin(name):
    for build in ("build-rel", "build"):
        candidate = REPO / build / name
        if candidate.exists():
            return str(candidate)
    return str(REPO / "build" / name)


os.environ.setdefault("TOKEND_BIN", _default_bin("tokend"))
os.environ.setdefault("TOKENCTL_BIN", _default_bin("tokenctl"))

from fake_endpoint import FakeEndpoint  # noqa: E402
from tokend_harness import Tokend, wait_until  # noqa: E402

# Debian's python3 runs the endpoint (the harness default is sys.executable).
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tenant_ids(n):
    width = len(str(max(n - 1, 0)))
    return [f"t{i:0{width}d}" for i in range(n)]


def daemon_config(refresh, backoff=None, http=None):
    """Daemon defaults except what the benchmark sets; info-level JSON logs."""
    return {
        "refresh": refresh,
        "backoff": backoff or {"initial": "1s", "max": "2m"},
        "http": http or {"connect_timeout": "5s", "timeout": "15s"},
        "logging": {"format": "json", "level": "info"},
        "socket": {"max_connections": 512},
    }


class Workdir:
    """A temporary directory removed at exit (kept with BENCH_KEEP=1)."""

    def __init__(self, prefix):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        if os.environ.get("BENCH_KEEP"):
            print(f"# kept {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


class LogTail:
    """Reads tokend's JSON log incrementally."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = 0
        self.partial = b""

    def new_events(self):
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


def parse_ts(ts):
    """RFC 3339 UTC with milliseconds -> Unix seconds (float)."""
    from datetime import datetime

    return datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_mib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0]) / 1024.0


def threads(pid):
    return int(proc_status(pid)["Threads"])


def cpu_seconds(pid):
    """utime + stime of the process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model})"


def now():
    return time.time()
