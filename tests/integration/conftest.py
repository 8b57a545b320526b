import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_endpoint import FakeEndpoint, make_test_ca  # noqa: E402
from tokend_harness import Tokend  # noqa: E402


@pytest.fixture
def endpoint(tmp_path):
    with FakeEndpoint(any_client=True, lifetime=3600) as ep:
        yield ep


@pytest.fixture
def tokend_factory(tmp_path):
    """Makes Tokend instances in the test's directory and stops them afterwards."""
    started = []

    def make(endpoint, tenants, overrides=None, name="tokend", start=True, **kw):
        daemon = Tokend(tmp_path / name, endpoint, tenants, overrides, **kw)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        daemon.stop(timeout=5)
    # Log hygiene, for every daemon of every test: no client secret and no access
    # token in any log line (SPEC §6). Tokens are those the daemon's endpoint
    # issued, when it still answers, plus anything shaped like a fake-endpoint token.
    for daemon in started:
        tokens = []
        if daemon.endpoint is not None:
            try:
                tokens = daemon.endpoint.stats()["tokens"]
            except Exception:  # the endpoint was already stopped
                pass
        leaks = daemon.log_leaks(tokens)
        assert not leaks, f"{daemon.log_path}: secret or token in the log:\n" + "\n".join(leaks)
