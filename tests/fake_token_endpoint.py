#!/usr/bin/env python3
"""A fake OAuth 2.0 client-credentials token endpoint (RFC 6749 §4.4) for tests,
demos and benchmarks. Python 3 standard library only.

Usage:
  python3 tests/fake_token_endpoint.py [--host 127.0.0.1] [--port 0]
      [--port-file PATH] [--tls-cert CERT --tls-key KEY]
      [--lifetime SECONDS] [--capacity C] [--hold SECONDS]
      [--service-time SECONDS] [--client ID:SECRET ...] [--any-client]
      [--fail-rate P --fail-status 504 --seed N] [--hang SECONDS]
      [--request-id-header X-Request-Id] [--quiet]

Once listening it prints "listening <url>" on stdout and, with --port-file,
writes the bound port (decimal, newline) to PATH atomically (tmp + rename).
SIGTERM or SIGINT stop it cleanly (hung answers are released at once).

Token requests: POST /oauth/token with a form body
  grant_type=client_credentials [&scope=...] [&other=...]
and client authentication by HTTP Basic (client_secret_basic; id and secret
are form-url-decoded as RFC 6749 §2.3.1 says) or by the body fields
client_id/client_secret (client_secret_post). Unknown client or wrong secret:
401 {"error":"invalid_client",...}. --any-client accepts any id with a
non-empty secret. Success: 200 {"access_token":"tok-...","token_type":"Bearer",
"expires_in":<lifetime>}. Every answer carries ININ-Correlation-Id: <uuid4>.

Capacity model (a gateway of finite capacity): with --capacity C > 0, a token
request that arrives while C others are in flight is held --hold seconds and
then answered 504 with an HTML gateway page. Otherwise the answer comes after
--service-time seconds. The highest concurrency seen is in the stats.

Order of decisions for one token request: capacity (gateway) -> global hang
(--hang S > 0: every token request hangs as {"hang":S} below) -> the client's
script -> random failure (--fail-rate) -> normal behaviour.

Scripts: per client_id, a list of actions consumed one per token request, then
an optional "always" action that applies once the list is used up; without it
normal behaviour resumes. Actions are JSON objects; "hold": S (delay before
answering) is allowed on any of them:
  {"status":504}  {"status":503}  {"status":500}  {"status":403}
  {"status":429,"retry_after":"2"}           any string, HTTP-dates too
  {"status":401,"json":{"error":"invalid_client"}}
  {"status":200,"body":"not json"}           raw body
  {"status":200,"json":{...}}                any JSON body
  {"status":200,"expires_in":5}              a normal token with this lifetime
  {"status":200,"big_body":100000}           a valid token answer padded to N bytes
  {"status":302,"location":"http://127.0.0.1:1/x"}
  {"hang":30}             never answer; close after N s, at shutdown, or when
                          the client goes away
  {"reset":true}          close the connection with a TCP RST, no answer
  {"reset_mid_body":true} headers with Content-Length 100, 10 bytes, then RST
  "headers": {...}        extra response headers (any action with a status)

Control API (same port, same scheme):
  POST /_control/script   {"client_id":X,"actions":[...],"always":{...}|null}
  POST /_control/clients  {"client_id":X,"secret":Y,"lifetime":S?}
  POST /_control/config   any of {"capacity":C,"hold":S,"service_time":S,
                                  "lifetime":S,"fail_rate":P,"fail_status":N,
                                  "hang":S}
  GET  /_control/stats    totals, status_counts, max_in_flight, per-client
                          requests/ok/request_ids/auth_methods/scopes/params/
                          tokens/times, and every issued token
  POST /_control/reset    clears stats, scripts and max_in_flight; keeps
                          clients and config
"""

import argparse
import base64
import collections
import html
import json
import os
import random
import secrets
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/oauth/token"
MAX_BODY_BYTES = 1 << 20
DEFAULT_ERROR_BODIES = {
    400: {"error": "invalid_request"},
    401: {"error": "invalid_client", "error_description": "client authentication failed"},
    403: {"error": "access_denied"},
    429: {"error": "too_many_requests", "error_description": "rate limit exceeded"},
    500: {"error": "server_error"},
    502: {"error": "bad_gateway"},
    503: {"error": "temporarily_unavailable"},
}
GATEWAY_504 = (
    "<html><head><title>504 Gateway Time-out</title></head>"
    "<body><center><h1>504 Gateway Time-out</h1></center></body></html>\n"
)


class Endpoint:
    """The endpoint's mutable state: clients, config, scripts and stats.

    Every field is guarded by `lock`; `stopping` is set at shutdown and wakes
    every hold, service time and hang.
    """

    def __init__(self, args):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.request_id_header = args.request_id_header
        self.any_client = args.any_client
        self.quiet = args.quiet
        self.config = {
            "capacity": args.capacity,
            "hold": args.hold,
            "service_time": args.service_time,
            "lifetime": args.lifetime,
            "fail_rate": args.fail_rate,
            "fail_status": args.fail_status,
            "hang": args.hang,
        }
        self.rng = random.Random(args.seed)
        self.clients = {}  # id -> {"secret": str, "lifetime": number|None}
        for spec in args.client or []:
            client_id, sep, secret = spec.partition(":")
            if not sep or not client_id:
                raise SystemExit(f"--client wants ID:SECRET, got {spec!r}")
            self.clients[client_id] = {"secret": secret, "lifetime": None}
        self.in_flight = 0
        self.reset()

    def reset(self):
        """Clears stats and scripts (caller holds the lock or is __init__)."""
        self.scripts = {}  # id -> {"actions": deque, "always": dict|None}
        self.total_requests = 0
        self.max_in_flight = self.in_flight
        self.status_counts = collections.Counter()
        self.per_client = {}
        self.tokens = []

    def client_stats(self, client_id):
        stats = self.per_client.get(client_id)
        if stats is None:
            stats = {
                "requests": 0,
                "ok": 0,
                "request_ids": [],
                "auth_methods": [],
                "scopes": [],
                "params": [],
                "tokens": [],
                "times": [],
            }
            self.per_client[client_id] = stats
        return stats

    def next_scripted(self, client_id):
        script = self.scripts.get(client_id)
        if script is None:
            return None
        if script["actions"]:
            return script["actions"].popleft()
        return script["always"]

    def snapshot(self):
        return {
            "total_requests": self.total_requests,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "status_counts": dict(self.status_counts),
            "clients": json.loads(json.dumps(self.per_client)),
            "tokens": list(self.tokens),
            "config": dict(self.config),
        }


class ResetConnection(Exception):
    """Raised by a handler that has reset its connection: nothing more to write."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-token-endpoint/1"
    timeout = 120  # an idle keep-alive connection is closed after this
    # Headers and body go out in separate writes; with Nagle on, the body waits
    # for the client's delayed ACK (40 ms on Linux loopback) and every answer
    # comes late by that much.
    disable_nagle_algorithm = True

    # --- plumbing -----------------------------------------------------------

    @property
    def endpoint(self):
        return self.server.endpoint

    def log_message(self, fmt, *args):
        if not self.endpoint.quiet:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def leave_flight(self, outcome):
        """Ends this token request's time in flight and counts its outcome (once).
        Called before the answer goes out: a client that has its answer may send
        its next request, or read the stats, at once, and must find this request
        done in them."""
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            with self.endpoint.lock:
                self.endpoint.in_flight -= 1
                self.endpoint.status_counts[str(outcome)] += 1

    def send_answer(self, status, body=b"", content_type="application/json", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.leave_flight(status)
        self.send_response(status)
        self.send_header("ININ-Correlation-Id", str(uuid.uuid4()))
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, headers=None):
        self.send_answer(status, json.dumps(obj), "application/json", headers)

    def reset_connection(self):
        """Closes the TCP connection with an RST (SO_LINGER 0), answering nothing."""
        self.close_connection = True
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # detach() so the buffered reader/writer cannot close the descriptor
            # a second time; os.close() then sends the RST at once.
            os.close(conn.detach())
        except OSError:
            pass
        raise ResetConnection()

    def wait(self, seconds):
        """Sleeps up to `seconds`; returns early at shutdown."""
        if seconds and seconds > 0:
            self.endpoint.stopping.wait(seconds)

    def hang(self, seconds):
        """Holds the request unanswered until `seconds` pass, shutdown, or the peer leaves."""
        deadline = time.monotonic() + max(0.0, float(seconds))
        conn = self.connection
        while not self.endpoint.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                readable, _, _ = select.select([conn], [], [], min(left, 0.05))
            except (OSError, ValueError):
                break
            if readable:
                if isinstance(conn, ssl.SSLSocket):
                    break  # close_notify, FIN or more bytes: the client is done
                try:
                    if conn.recv(1, socket.MSG_PEEK) == b"":
                        break
                except OSError:
                    break
                # The client sent more bytes; keep them unread and keep hanging.
                self.endpoint.stopping.wait(min(left, 0.05))
        self.close_connection = True

    # --- dispatch -----------------------------------------------------------

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except ResetConnection:
            self.close_connection = True
        except (ConnectionError, ssl.SSLError, socket.timeout):
            self.close_connection = True

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_control/stats":
            with self.endpoint.lock:
                snapshot = self.endpoint.snapshot()
            self.send_json(200, snapshot)
        elif path == "/healthz":
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "not_found"})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send_json(400, {"error": "invalid_request", "error_description": "bad body"})
            return
        if path == TOKEN_PATH:
            self.token_request(body)
        elif path.startswith("/_control/"):
            self.control_request(path, body)
        else:
            self.send_json(404, {"error": "not_found"})

    # --- control API --------------------------------------------------------

    def control_request(self, path, body):
        try:
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as e:
            self.send_json(400, {"error": "bad_json", "error_description": str(e)})
            return
        ep = self.endpoint
        with ep.lock:
            if path == "/_control/script":
                client_id = req.get("client_id")
                actions = req.get("actions") or []
                always = req.get("always")
                if not isinstance(client_id, str) or not isinstance(actions, list):
                    self.send_json(400, {"error": "want client_id and actions"})
                    return
                ep.scripts[client_id] = {
                    "actions": collections.deque(actions),
                    "always": always,
                }
            elif path == "/_control/clients":
                client_id = req.get("client_id")
                secret = req.get("secret")
                if not isinstance(client_id, str) or not isinstance(secret, str):
                    self.send_json(400, {"error": "want client_id and secret"})
                    return
                ep.clients[client_id] = {"secret": secret, "lifetime": req.get("lifetime")}
            elif path == "/_control/config":
                unknown = set(req) - set(ep.config)
                if unknown:
                    self.send_json(400, {"error": "unknown keys", "keys": sorted(unknown)})
                    return
                ep.config.update(req)
            elif path == "/_control/reset":
                ep.reset()
            else:
                self.send_json(404, {"error": "not_found"})
                return
        self.send_json(200, {"ok": True})

    # --- token requests -----------------------------------------------------

    def authenticate(self, form):
        """Returns (client_id, secret, method, error) from the request."""
        auth = self.headers.get("Authorization")
        body_id = form.get("client_id")
        body_secret = form.get("client_secret")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "basic":
                return body_id, None, "other", "unsupported authorization scheme"
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return body_id, None, "basic", "malformed Basic credentials"
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                return body_id, None, "basic", "malformed Basic credentials"
            client_id = urllib.parse.unquote_plus(raw_id)
            secret = urllib.parse.unquote_plus(raw_secret)
            if body_secret is not None:
                return client_id, secret, "basic", "more than one authentication method"
            return client_id, secret, "basic", None
        if body_id is not None:
            return body_id, body_secret, "post", None
        return None, None, "none", "no client authentication"

    def token_request(self, raw_body):
        ep = self.endpoint
        arrival = time.time()
        try:
            pairs = urllib.parse.parse_qsl(
                raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
            )
        except UnicodeDecodeError:
            pairs = []
        form = {}
        for key, value in pairs:
            form.setdefault(key, value)
        client_id, secret, method, auth_error = self.authenticate(form)
        params = {
            k: v
            for k, v in pairs
            if k not in ("grant_type", "scope", "client_id", "client_secret")
        }
        request_id = self.headers.get(ep.request_id_header) if ep.request_id_header else None

        with ep.lock:
            ep.in_flight += 1
            self._in_flight = True
            ep.max_in_flight = max(ep.max_in_flight, ep.in_flight)
            ep.total_requests += 1
            stats = ep.client_stats(client_id if client_id is not None else "")
            stats["requests"] += 1
            stats["request_ids"].append(request_id)
            stats["auth_methods"].append(method)
            stats["scopes"].append(form.get("scope"))
            stats["params"].append(params)
            stats["times"].append(arrival)
            config = dict(ep.config)
            over_capacity = config["capacity"] and ep.in_flight > config["capacity"]
            action = None
            if not over_capacity and config["hang"]:
                action = {"hang": config["hang"]}
            elif not over_capacity:
                action = ep.next_scripted(client_id)
                if action is None and config["fail_rate"] > 0:
                    if ep.rng.random() < config["fail_rate"]:
                        action = {"status": int(config["fail_status"])}
        outcome = "error"
        if isinstance(action, dict):
            for label in ("hang", "reset", "reset_mid_body"):
                if action.get(label):
                    outcome = label
        try:
            if over_capacity:
                self.wait(config["hold"])
                outcome = 504
                self.send_answer(504, GATEWAY_504, "text/html")
            elif action is not None:
                outcome = self.scripted(action, client_id, config, stats)
            else:
                self.wait(config["service_time"])
                outcome = self.normal(form, client_id, secret, auth_error, config, stats)
        finally:
            self.leave_flight(outcome)  # hang, reset: no answer went out

    def lifetime_for(self, client_id, config):
        client = self.endpoint.clients.get(client_id)
        if client and client.get("lifetime") is not None:
            return client["lifetime"]
        return config["lifetime"]

    def issue(self, client_id, lifetime, stats, pad_to=0):
        token = "tok-" + secrets.token_urlsafe(24)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        body = json.dumps(answer)
        if pad_to > len(body):
            answer["padding"] = ""
            base = len(json.dumps(answer))
            answer["padding"] = "x" * max(0, pad_to - base)
            body = json.dumps(answer)
        with self.endpoint.lock:
            stats["ok"] += 1
            stats["tokens"].append(token)
            self.endpoint.tokens.append(token)
        self.send_answer(200, body)
        return 200

    def normal(self, form, client_id, secret, auth_error, config, stats):
        grant_type = form.get("grant_type")
        if grant_type is None:
            self.send_json(400, {"error": "invalid_request",
                                 "error_description": "grant_type is missing"})
            return 400
        if grant_type != "client_credentials":
            self.send_json(400, {"error": "unsupported_grant_type"})
            return 400
        if auth_error is not None:
            self.send_json(401, {"error": "invalid_client", "error_description": auth_error},
                           headers={"WWW-Authenticate": 'Basic realm="token"'})
            return 401
        with self.endpoint.lock:
            client = self.endpoint.clients.get(client_id)
            accepted = (client is not None and secrets.compare_digest(
                client["secret"].encode(), (secret or "").encode())) or (
                self.endpoint.any_client and bool(client_id) and bool(secret))
        if not accepted:
            self.send_json(401, {"error": "invalid_client",
                                 "error_description": "unknown client or wrong secret"},
                           headers={"WWW-Authenticate": 'Basic realm="token"'})
            return 401
        return self.issue(client_id, self.lifetime_for(client_id, config), stats)

    def scripted(self, action, client_id, config, stats):
        if not isinstance(action, dict):
            action = {"status": 500}
        self.wait(action.get("hold", 0))
        if "hang" in action:
            self.hang(action["hang"])
            return "hang"
        if action.get("reset"):
            self.reset_connection()
        if action.get("reset_mid_body"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"access_')
            self.wfile.write(b"t")
            self.wfile.flush()
            time.sleep(0.05)  # let the client read the partial answer first
            self.reset_connection()
        status = int(action.get("status", 200))
        headers = dict(action.get("headers") or {})
        if "retry_after" in action:
            headers["Retry-After"] = action["retry_after"]
        if "location" in action:
            headers["Location"] = action["location"]
        if "body" in action:
            self.send_answer(status, action["body"], action.get("content_type", "text/plain"),
                             headers)
        elif "json" in action:
            self.send_answer(status, json.dumps(action["json"]), "application/json", headers)
        elif status == 200:
            lifetime = action.get("expires_in", self.lifetime_for(client_id, config))
            return self.issue(client_id, lifetime, stats, pad_to=int(action.get("big_body", 0)))
        elif status == 504:
            self.send_answer(504, GATEWAY_504, "text/html", headers)
        elif 300 <= status < 400:
            target = html.escape(str(headers.get("Location", "")))
            self.send_answer(status, f'<a href="{target}">moved</a>\n', "text/html", headers)
        else:
            body = DEFAULT_ERROR_BODIES.get(status, {"error": f"http_{status}"})
            self.send_json(status, body, headers)
        return status


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address, endpoint, tls_context):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.endpoint = endpoint
        self.tls_context = tls_context
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the connection's own thread, so a slow
        # or failing handshake never blocks accept().
        if self.tls_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return None  # e.g. the client does not trust our CA
        try:
            tls.settimeout(None)
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass
        return None

    def handle_error(self, request, client_address):
        if not self.endpoint.quiet:
            super().handle_error(request, client_address)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Fake OAuth 2.0 client-credentials token endpoint (see module docstring).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--lifetime", type=float, default=3600)
    p.add_argument("--capacity", type=int, default=0, help="0 = unlimited")
    p.add_argument("--hold", type=float, default=0.5,
                   help="seconds an over-capacity request is held before its 504")
    p.add_argument("--service-time", type=float, default=0.0)
    p.add_argument("--client", action="append", metavar="ID:SECRET")
    p.add_argument("--any-client", action="store_true")
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--fail-status", type=int, default=504)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang", type=float, default=0.0,
                   help="every token request hangs this many seconds (0 = off)")
    p.add_argument("--request-id-header", default="X-Request-Id")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.lifetime == int(args.lifetime):
        args.lifetime = int(args.lifetime)
    return args


def write_port_file(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tls_context = None
    if args.tls_cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)
    endpoint = Endpoint(args)
    server = Server((args.host, args.port), endpoint, tls_context)
    port = server.server_address[1]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                               name="serve", daemon=True)
    serving.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    scheme = "https" if tls_context else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"listening {scheme}://{host}:{port}{TOKEN_PATH}", flush=True)

    while not stop.wait(0.1):
        pass
    endpoint.stopping.set()  # releases holds, service times and hangs
    server.shutdown()
    server.server_close()
    serving.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
