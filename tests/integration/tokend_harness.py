"""Runs the real tokend and tokenctl binaries for integration tests.

TOKEND_BIN and TOKENCTL_BIN name the binaries (CTest sets them); otherwise
build/tokend and build/tokenctl under the repository are used.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml_lite

REPO = Path(__file__).resolve().parents[2]
TOKEND_BIN = os.environ.get("TOKEND_BIN", str(REPO / "build" / "tokend"))
TOKENCTL_BIN = os.environ.get("TOKENCTL_BIN", str(REPO / "build" / "tokenctl"))


# What the fake endpoint issues ("tok-" + 32 url-safe characters); a run of 8
# or more such characters after "tok-" catches a truncated token too.
TOKEN_PATTERN = re.compile(r"tok-[A-Za-z0-9_-]{8,}")


def log_leaks(text, secrets=(), tokens=()):
    """The lines of `text` holding a client secret, a given access token, or
    anything shaped like a fake-endpoint token, with what leaked redacted."""
    needles = [s for s in secrets if s] + [t for t in tokens if t]
    leaks = []
    for number, line in enumerate(text.splitlines(), 1):
        found = [n for n in needles if n in line] + TOKEN_PATTERN.findall(line)
        if found:
            redacted = line
            for n in found:
                redacted = redacted.replace(n, n[:4] + "<redacted>")
            leaks.append(f"line {number}: {redacted[:300]}")
    return leaks


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate until it returns a truthy value or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class SocketClient:
    """A newline-delimited JSON client over the daemon's Unix socket."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buffer = b""

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, request):
        self.send_raw(json.dumps(request).encode() + b"\n")

    def read_line(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by tokend")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, request):
        self.send(request)
        return self.read_line()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Tokend:
    """One tokend process with its config, secrets and captured log."""

    def __init__(self, workdir: Path, endpoint, tenants, overrides=None, secret_for=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.workdir / "tokend.sock"
        self.log_path = self.workdir / "tokend.log"
        self.config_path = self.workdir / "tokend.yaml"
        self.endpoint = endpoint
        self.proc = None
        self.secrets = []  # every client secret written, for log_leaks()
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        tenant_entries = []
        for t in tenants:
            entry = dict(t) if isinstance(t, dict) else {"id": t}
            tid = entry["id"]
            entry.setdefault("client_id", f"client-{tid}")
            secret = entry.pop("secret", None) or (secret_for(tid) if secret_for else f"secret-{tid}")
            self.secrets.append(secret)
            secret_file = secrets_dir / tid
            secret_file.write_text(secret + "\n")
            secret_file.chmod(0o600)
            entry.setdefault("client_secret_file", str(secret_file))
            if endpoint is not None:
                entry.setdefault("token_url", endpoint.url)
            tenant_entries.append(entry)
        config = {
            "socket": {"path": str(self.socket_path)},
            "refresh": {"startup_spread": "200ms", "expiry_margin": "1s"},
            "backoff": {"initial": "100ms", "max": "1s"},
            "http": {"connect_timeout": "2s", "timeout": "5s"},
            "logging": {"format": "json", "level": "debug"},
            "tenants": tenant_entries,
        }
        for section, values in (overrides or {}).items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
        self.config = config
        self.socket_path = Path(config["socket"]["path"])  # overrides may move it
        self.config_path.write_text(yaml_lite.dump(config))

    def start(self, wait=True, extra_args=()):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [TOKEND_BIN, "--config", str(self.config_path), *extra_args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_until(lambda: self.socket_path.exists() or self.proc.poll() is not None,
                       what="tokend socket")
            if self.proc.poll() is not None:
                raise AssertionError(f"tokend exited {self.proc.returncode}:\n{self.log_text()}")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig and returns (exit status, seconds it took to exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        elapsed = time.monotonic() - started
        self._log.close()
        return code, elapsed

    def client(self):
        return SocketClient(self.socket_path)

    def request(self, req):
        with self.client() as c:
            return c.request(req)

    def status(self):
        return self.request({"op": "status"})

    def tenant_states(self):
        return {t["tenant"]: t["state"] for t in self.status()["tenants"]}

    def wait_all(self, state, tenants=None, timeout=10.0):
        def check():
            states = self.tenant_states()
            wanted = tenants or list(states)
            return all(states.get(t) == state for t in wanted)
        return wait_until(check, timeout=timeout, what=f"tenants {state}")

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name=None):
        out = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def log_leaks(self, tokens=()):
        """Log lines that hold one of this daemon's secrets or an access token."""
        return log_leaks(self.log_text(), self.secrets, tokens)

    def tokenctl(self, *args, timeout=15, input=None):
        return subprocess.run(
            [TOKENCTL_BIN, "--socket", str(self.socket_path), *args],
            capture_output=True, text=True, timeout=timeout, input=input,
        )

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
