#!/usr/bin/env python3
"""A minimal tokend client: Python 3 standard library only.

Gets a tenant's access token, then watches for new ones (SPEC §5 `get` and
`watch`: newline-delimited JSON over a Unix socket).

  tokend_client.py [--socket PATH] [--count N] TENANT

prints `token TENANT ACCESS_TOKEN`, then one line per pushed event:
`event token TENANT ACCESS_TOKEN EXPIRES_IN` or `event expired TENANT`, until
tokend goes away (exit 3) or N events were printed (exit 0). An error answer
prints `error CODE: MESSAGE` to stderr and exits 1.

Copy TokendClient into your program: keep the token in memory, use the latest
one pushed, and on a 401 from the API call invalidate(tenant, token).
"""

import argparse
import json
import os
import socket
import sys


class TokendError(Exception):
    """tokend answered {"ok": false, ...}."""

    def __init__(self, answer):
        super().__init__(f"{answer.get('error')}: {answer.get('message')}")
        self.code = answer.get("error")
        self.answer = answer


class TokendClient:
    """One connection to tokend. Not thread-safe; open one per thread."""

    def __init__(self, path=None, timeout=10.0):
        self.path = path or os.environ.get("TOKEND_SOCKET", "/run/tokend/tokend.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_line(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("tokend closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, request):
        """Sends one request; returns its answer, or raises TokendError."""
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        answer = self._read_line()
        if not answer.get("ok"):
            raise TokendError(answer)
        return answer

    def get(self, tenant, wait_ms=0):
        """The tenant's current token answer (access_token, expires_in, ...)."""
        return self.call({"op": "get", "tenant": tenant, "wait_ms": wait_ms})

    def invalidate(self, tenant, access_token, wait_ms=10000):
        """Reports a token the API rejected (401); returns the replacement."""
        return self.call({"op": "invalidate", "tenant": tenant, "access_token": access_token,
                          "wait_ms": wait_ms})

    def watch(self, tenants=None):
        """Turns this connection into a watch; yields each pushed event forever.

        The first events are the current tokens. No timeout applies while
        waiting for events."""
        request = {"op": "watch"}
        if tenants:
            request["tenants"] = list(tenants)
        self.call(request)
        self.sock.settimeout(None)
        while True:
            yield self._read_line()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", help="default: $TOKEND_SOCKET or /run/tokend/tokend.sock")
    parser.add_argument("--count", type=int, default=0, help="stop after N events (0 = never)")
    parser.add_argument("tenant")
    args = parser.parse_args(argv)
    try:
        with TokendClient(args.socket) as client:
            token = client.get(args.tenant, wait_ms=10000)
            print("token", args.tenant, token["access_token"], flush=True)
        printed = 0
        with TokendClient(args.socket) as watcher:
            for event in watcher.watch([args.tenant]):
                if event["event"] == "token":
                    print("event token", event["tenant"], event["access_token"],
                          event["expires_in"], flush=True)
                else:
                    print("event", event["event"], event["tenant"], flush=True)
                printed += 1
                if args.count and printed >= args.count:
                    return 0
    except TokendError as e:
        print(f"error {e}", file=sys.stderr)
        return 1
    except (OSError, ConnectionError) as e:
        print(f"cannot reach tokend: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
