"""Runs tests/fake_token_endpoint.py as a subprocess for pytest and benchmarks.

    from fake_endpoint import FakeEndpoint, make_test_ca

    with FakeEndpoint(clients={"c1": "s1"}) as ep:
        ep.script("c1", [{"status": 504}], always=None)
        ... point tokend at ep.url ...
        assert ep.stats()["clients"]["c1"]["requests"] == 1

    ca = make_test_ca(tmp_path)            # {"ca", "cert", "key"}
    with FakeEndpoint(tls=ca, any_client=True) as ep:   # ep.url is https://
        ...

Standard library only (plus the `openssl` command for make_test_ca).
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_SCRIPT = os.path.join(SOURCE_DIR, "tests", "fake_token_endpoint.py")


class FakeEndpoint:
    """A fake token endpoint in a child process; a context manager.

    Options map to the server's command line (see tests/fake_token_endpoint.py):
    clients is a dict {id: secret}; tls is a dict from make_test_ca() (its
    cert/key serve, its ca verifies control calls); extra_args are appended.
    """

    def __init__(self, *, clients=None, any_client=False, lifetime=None, capacity=None,
                 hold=None, service_time=None, fail_rate=None, fail_status=None, seed=None,
                 hang=None,
                 request_id_header=None, tls=None, host="127.0.0.1", quiet=True,
                 extra_args=(), python=None, start_timeout=10.0):
        self.host = host
        self.tls = tls
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self._tmpdir = None
        args = [python or sys.executable, SERVER_SCRIPT, "--host", host, "--port", "0"]
        for client_id, secret in (clients or {}).items():
            args += ["--client", f"{client_id}:{secret}"]
        if any_client:
            args.append("--any-client")
        for flag, value in (("--lifetime", lifetime), ("--capacity", capacity),
                            ("--hold", hold), ("--service-time", service_time),
                            ("--fail-rate", fail_rate), ("--fail-status", fail_status),
                            ("--seed", seed), ("--request-id-header", request_id_header),
                            ("--hang", hang)):
            if value is not None:
                args += [flag, str(value)]
        if tls:
            args += ["--tls-cert", tls["cert"], "--tls-key", tls["key"]]
        if quiet:
            args.append("--quiet")
        self._args = args + list(extra_args)

    # --- lifecycle ------------------------------------------------------------

    def start(self):
        self._tmpdir = tempfile.mkdtemp(prefix="fake-endpoint-")
        port_file = os.path.join(self._tmpdir, "port")
        self.proc = subprocess.Popen(self._args + ["--port-file", port_file],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    self.port = int(f.read().strip())
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        code = self.proc.poll()
        self.stop()
        raise RuntimeError(f"fake token endpoint did not start (exit code {code})")

    def stop(self, timeout=3.0):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- addresses ------------------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def base_url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def url(self):
        """The token URL."""
        return self.base_url + "/oauth/token"

    # --- control API ----------------------------------------------------------

    def _ssl_context(self):
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.tls["ca"])

    def _call(self, method, path, body=None, timeout=5.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
            return json.loads(r.read() or b"null")

    def script(self, client_id, actions, always=None):
        """Replaces the client's script: `actions` one per token request, then `always`."""
        return self._call("POST", "/_control/script",
                          {"client_id": client_id, "actions": list(actions), "always": always})

    def add_client(self, client_id, secret, lifetime=None):
        body = {"client_id": client_id, "secret": secret}
        if lifetime is not None:
            body["lifetime"] = lifetime
        return self._call("POST", "/_control/clients", body)

    def configure(self, **kw):
        """Any of capacity, hold, service_time, lifetime, fail_rate, fail_status, hang."""
        return self._call("POST", "/_control/config", kw)

    def stats(self):
        return self._call("GET", "/_control/stats")

    def reset(self):
        return self._call("POST", "/_control/reset", {})

    def token(self, client_id, secret, scope=None, method="basic", timeout=5.0):
        """One token request with urllib; returns (status, headers, parsed body or raw bytes)."""
        import base64
        import urllib.parse

        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if method == "basic":
            pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = client_id
            form["client_secret"] = secret
        req = urllib.request.Request(self.url, data=urllib.parse.urlencode(form).encode(),
                                     method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                status, hdrs, raw = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, dict(e.headers), e.read()
        try:
            return status, hdrs, json.loads(raw)
        except ValueError:
            return status, hdrs, raw


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def make_test_ca(directory, name="test"):
    """Makes a throwaway CA and a server certificate it signed, valid for 127.0.0.1,
    localhost and ::1. Files are NAME-ca.pem, NAME-server.pem, NAME-server.key in
    `directory`. Another `name` gives an unrelated CA (for "unknown CA" tests).

    Returns {"ca": path, "cert": path, "key": path}.
    """
    directory = os.path.abspath(str(directory))
    os.makedirs(directory, exist_ok=True)
    ca_key, ca_pem = f"{name}-ca.key", f"{name}-ca.pem"
    key, csr, pem, ext = (f"{name}-server.key", f"{name}-server.csr", f"{name}-server.pem",
                          f"{name}-server.ext")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", ca_key, "-out", ca_pem, "-days", "7",
             "-subj", f"/CN=tokend {name} test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost", cwd=directory)
    with open(os.path.join(directory, ext), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:::1\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
             "-out", pem, "-days", "7", "-extfile", ext, cwd=directory)
    return {
        "ca": os.path.join(directory, ca_pem),
        "cert": os.path.join(directory, pem),
        "key": os.path.join(directory, key),
    }


if __name__ == "__main__":
    # python3 tests/integration/fake_endpoint.py make-ca DIR [NAME]: prints the paths as JSON.
    if len(sys.argv) >= 3 and sys.argv[1] == "make-ca":
        print(json.dumps(make_test_ca(sys.argv[2], *(sys.argv[3:4] or []))))
    else:
        sys.exit(__doc__)
