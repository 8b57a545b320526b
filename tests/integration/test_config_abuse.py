"""Configuration abuse, end to end with the real binary: every bad config is
refused with exit status 1 and a clear `PATH:LINE:COL: key: message` on stderr,
both by `--check-config` and at start-up (which then never binds its socket).
The loader's rules are unit-tested in tests/unit/config_test.cc; this checks
what an operator sees.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tokend_harness import TOKEND_BIN

NOBODY = 65534


def write_secret(directory, name="secret", text="s3cr3t-value\n", mode=0o600):
    path = Path(directory) / name
    path.write_text(text)
    path.chmod(mode)
    return path


def base_config(tmp_path, tenant_extra="", top_extra="", secret=None):
    """A valid config (tenant on line 5) plus what a case adds."""
    secret = secret or write_secret(tmp_path)
    return (
        f'socket:\n'                                                   # 1
        f'  path: "{tmp_path / "tokend.sock"}"\n'                     # 2
        f'tenants:\n'                                                  # 3
        f'  - id: org-a\n'                                             # 4
        f'    client_id: "client-a"\n'                                 # 5
        f'    client_secret_file: "{secret}"\n'                       # 6
        f'    token_url: "http://127.0.0.1:9/oauth/token"\n'           # 7
        + tenant_extra + top_extra
    )


def run(tmp_path, text, *, check_config, env=None, as_nobody=False, config_path=None):
    config = Path(config_path) if config_path else tmp_path / "tokend.yaml"
    if text is not None:
        config.write_text(text)
    args = [TOKEND_BIN, "--config", str(config)]
    if check_config:
        args.append("--check-config")
    if as_nobody:
        args = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEND_TEST_")}
    full_env.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=20, env=full_env), config


def refused(tmp_path, text, expected, **kw):
    """Runs --check-config and a start-up; both must exit 1 with every expected
    (line, key, words) error on stderr as PATH:LINE:COL: KEY...WORDS."""
    for check_config in (True, False):
        result, config = run(tmp_path, text, check_config=check_config, **kw)
        where = "--check-config" if check_config else "start-up"
        assert result.returncode == 1, (where, result.returncode, result.stdout, result.stderr)
        assert "config OK" not in result.stdout
        lines = result.stderr.splitlines()
        for line_no, key, words in expected:
            prefix = f"{config}:{line_no}:" if line_no else f"{config}:"
            matching = [l for l in lines if l.startswith(prefix) and key in l and words in l]
            assert matching, (where, line_no, key, words, result.stderr)
            # The key comes right after the position.
            if line_no:
                assert re.match(re.escape(config.as_posix()) + r":\d+:\d+: " + re.escape(key),
                                matching[0]), matching[0]
        assert not (tmp_path / "tokend.sock").exists(), where
        assert "s3cr3t" not in result.stderr + result.stdout
    return result


def test_a_valid_config_passes(tmp_path):
    result, _ = run(tmp_path, base_config(tmp_path), check_config=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "config OK: 1 tenants\n"


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    for check_config in (True, False):
        result, _ = run(tmp_path, None, check_config=check_config, config_path=missing)
        assert result.returncode == 1
        assert result.stderr.strip() == f"{missing}: config file not found"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop root")
def test_unreadable_file_and_secret(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user")
    # A directory nobody can enter, with root's 0600 files in it.
    shared = Path(tempfile.mkdtemp(prefix="tokend-cfg-"))
    try:
        shared.chmod(0o755)
        config = shared / "tokend.yaml"
        config.write_text(base_config(shared))
        config.chmod(0o600)
        for check_config in (True, False):
            result, _ = run(shared, None, check_config=check_config, as_nobody=True,
                            config_path=config)
            assert result.returncode == 1, result.stderr
            assert result.stderr.strip() == \
                f"{config}: cannot read config file: Permission denied"
        # The config readable, the secret file not.
        config.chmod(0o644)
        refused(shared, None, [(6, "tenants[0].client_secret_file", "Permission denied")],
                as_nobody=True, config_path=config)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize("text,line,words", [
    ("socket:\n  path: [unclosed\ntenants: []\n", 3, ""),
    ("tenants:\n  - id: \"org-a\n", 2, ""),
    ("socket:\n\tpath: x\n", 2, ""),
    ("tenants:\n  - id: a\n - id: b\n", 3, ""),
    ("a: b: c\n", 1, ""),
    ("--- {}\n--- {}\n", 2, "one YAML document"),
    (",refea-bc_id: 2}]\n", 1, "YAML syntax error"),  # made yaml-cpp's LoadAll() eat all memory
])
def test_yaml_syntax_errors(tmp_path, text, line, words):
    result = refused(tmp_path, text, [(line, "", words)])
    if line:
        assert re.match(r".*:\d+:\d+: \S", result.stderr), result.stderr


@pytest.mark.parametrize("extra,line,key,words", [
    ("refresh:\n  max_concurrent: four\n", 9, "refresh.max_concurrent", "integer"),
    ("refresh:\n  max_concurrent: \"4\"\n", 9, "refresh.max_concurrent", "integer"),
    ("refresh:\n  max_concurrent: 100000\n", 9, "refresh.max_concurrent", "between"),
    ("refresh:\n  adaptive: maybe\n", 9, "refresh.adaptive", "true or false"),
    ("refresh:\n  at: [0.5]\n", 9, "refresh.at", "number"),
    ("backoff: 5\n", 8, "backoff", "mapping"),
    ("backoff:\n  jitter: ful\n", 9, "backoff.jitter", "did you mean full?"),
    ("logging:\n  level: loud\n", 9, "logging.level", "expected one of"),
    ("http:\n  max_response_bytes: -1\n", 9, "http.max_response_bytes", "between"),
    ("http:\n  request_id_header: \"X Bad\"\n", 9, "http.request_id_header", "header name"),
])
def test_wrong_types_and_values(tmp_path, extra, line, key, words):
    # `extra` starts on line 8, after the tenant.
    refused(tmp_path, base_config(tmp_path) + extra, [(line, key, words)])


@pytest.mark.parametrize("value,words", [("0999", "octal"), ("rw-rw----", "octal"),
                                         ("[1]", "octal"), ("07777", "")])
def test_bad_socket_mode(tmp_path, value, words):
    text = base_config(tmp_path).replace("socket:\n", f"socket:\n  mode: {value}\n", 1)
    refused(tmp_path, text, [(2, "socket.mode", words)])


def test_wrong_types_in_tenants(tmp_path):
    secret = write_secret(tmp_path)
    text = (
        'tenants:\n'                                   # 1
        '  - id: 5\n'                                  # 2
        '    client_id: [x]\n'                         # 3
        f'    client_secret_file: "{secret}"\n'        # 4
        '    token_url: "http://127.0.0.1:9/t"\n'      # 5
        '    scopes: read\n'                           # 6
        '    params: [a]\n'                            # 7
        '  - just a string\n'                          # 8
    )
    refused(tmp_path, text, [
        (3, "tenants[0].client_id", "string"),
        (6, "tenants[0].scopes", "list of strings"),
        (7, "tenants[0].params", "mapping"),
        (8, "tenants[1]", "mapping"),
    ])
    refused(tmp_path, "tenants: {a: 1}\n", [(1, "tenants", "list of tenants")])
    refused(tmp_path, "tenants: []\n", [(1, "tenants", "at least one tenant")])


def test_unknown_keys_with_did_you_mean(tmp_path):
    text = base_config(tmp_path, tenant_extra="    regoin: mypurecloud.com\n",
                       top_extra="refesh:\n  max_concurent: 4\nhttp:\n  timout: 5s\n  frobnicate: 1\n")
    refused(tmp_path, text, [
        (8, "tenants[0].regoin", "unknown key (did you mean region?)"),
        (9, "refesh", "unknown key (did you mean refresh?)"),
        (12, "http.timout", "unknown key (did you mean timeout?)"),
        (13, "http.frobnicate", "unknown key"),
    ])


def test_duplicate_and_invalid_tenant_ids(tmp_path):
    secret = write_secret(tmp_path)

    def tenant(tid):
        return (f'  - id: "{tid}"\n'
                f'    client_id: "c"\n'
                f'    client_secret_file: "{secret}"\n'
                f'    token_url: "http://127.0.0.1:9/t"\n')

    text = ("tenants:\n" + tenant("org-a") + tenant("org-a") + tenant("org a!") + tenant("")
            + tenant("x" * 65) + tenant("../etc"))
    refused(tmp_path, text, [
        (6, "tenants[1].id", 'duplicate id "org-a" (first at line 2)'),
        (10, "tenants[2].id", 'invalid id "org a!"'),
        (14, "tenants[3].id", "invalid id"),
        (18, "tenants[4].id", "invalid id"),
        (22, "tenants[5].id", 'invalid id "../etc"'),
    ])


@pytest.mark.parametrize("value", ["5", "15 s", "-1s", "1d", "1.5ms", "s", "\"\"", "1e3s",
                                   "9999999h", "0x10s", "1,5s", "[1s]"])
def test_bad_durations(tmp_path, value):
    text = base_config(tmp_path, top_extra=f"backoff:\n  initial: {value}\n")
    refused(tmp_path, text, [(9, "backoff.initial", "duration")])


@pytest.mark.parametrize("url,words", [
    ("http://example.com/oauth/token", "https"),
    ("http://10.0.0.1/oauth/token", "https"),
    ("http://127.0.0.1.example.com/oauth/token", "https"),
    ("ftp://127.0.0.1/x", "https"),
    ("not a url", ""),
])
def test_plain_http_to_a_non_loopback_host(tmp_path, url, words):
    text = base_config(tmp_path).replace("http://127.0.0.1:9/oauth/token", url)
    refused(tmp_path, text, [(7, "tenants[0].token_url", words)])


def test_plain_http_to_loopback_is_fine(tmp_path):
    for url in ["http://localhost:9/t", "http://[::1]:9/t", "http://127.1.2.3/t"]:
        text = base_config(tmp_path).replace("http://127.0.0.1:9/oauth/token", url)
        result, _ = run(tmp_path, text, check_config=True)
        assert result.returncode == 0, (url, result.stderr)


def test_secret_files_missing_empty_or_world_readable(tmp_path):
    missing = tmp_path / "no-such-secret"
    refused(tmp_path, base_config(tmp_path, secret=missing),
            [(6, "tenants[0].client_secret_file", "not found")])
    empty = write_secret(tmp_path, "empty", "")
    refused(tmp_path, base_config(tmp_path, secret=empty),
            [(6, "tenants[0].client_secret_file", "empty")])
    newline_only = write_secret(tmp_path, "newline", "\n")
    refused(tmp_path, base_config(tmp_path, secret=newline_only),
            [(6, "tenants[0].client_secret_file", "empty")])
    world = write_secret(tmp_path, "world", mode=0o644)
    refused(tmp_path, base_config(tmp_path, secret=world),
            [(6, "tenants[0].client_secret_file", "world-readable")])
    directory = tmp_path / "a-directory"
    directory.mkdir()
    refused(tmp_path, base_config(tmp_path, secret=directory),
            [(6, "tenants[0].client_secret_file", "")])


def test_secret_sources_env_missing_and_conflicting(tmp_path):
    text = base_config(tmp_path).replace(
        f'    client_secret_file: "{tmp_path / "secret"}"\n',
        '    client_secret_env: TOKEND_TEST_NO_SUCH_VARIABLE\n')
    refused(tmp_path, text, [(6, "tenants[0].client_secret_env", "TOKEND_TEST_NO_SUCH_VARIABLE")])
    refused(tmp_path, text, [(6, "tenants[0].client_secret_env", "empty")],
            env={"TOKEND_TEST_NO_SUCH_VARIABLE": ""})
    result, _ = run(tmp_path, text, check_config=True,
                    env={"TOKEND_TEST_NO_SUCH_VARIABLE": "from-env"})
    assert result.returncode == 0, result.stderr
    both = base_config(tmp_path, tenant_extra="    client_secret_env: HOME\n")
    refused(tmp_path, both, [(0, "tenants[0]", "exactly one client secret source")])
    none = base_config(tmp_path).replace(f'    client_secret_file: "{tmp_path / "secret"}"\n', "")
    refused(tmp_path, none, [(0, "tenants[0]", "secret")])


def test_every_error_is_reported_at_once(tmp_path):
    text = base_config(tmp_path, top_extra=(
        "refresh:\n  max_concurrent: 0\n  at: 2\n"
        "backoff:\n  initial: soon\n"
        "http:\n  timeout: 1s\n  connect_timeout: 2s\n"))
    result = refused(tmp_path, text, [
        (9, "refresh.max_concurrent", "between"),
        (10, "refresh.at", ""),
        (12, "backoff.initial", "duration"),
        (0, "http.connect_timeout", "http.timeout"),
    ])
    assert len(result.stderr.splitlines()) >= 4
