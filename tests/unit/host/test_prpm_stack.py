# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm_stack: the contract, the shared helpers, the Stack and the prpm-stack command."""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path
from typing import Any, ClassVar

import prpm_stack
import pytest
from host_fakes import CONTRACT, FakeHost, healthy_rows, ps_rows, write_json
from prpm_stack import Failure, Stack

COMPOSE = ["docker", "compose", "-f", "/opt/prpm/compose.yaml", "-p", "prpm"]


# --- The contract -----------------------------------------------------------------------------
def test_a_good_contract_loads(tmp_path: Path, contract: dict[str, Any]) -> None:
    path = write_json(tmp_path / "stack.json", contract)
    assert prpm_stack.load_contract(path) == CONTRACT


def test_packages_in_s3_and_unknown_keys_are_fine(contract: dict[str, Any]) -> None:
    contract.update(package_files=None, storage="s3", later_addition={"x": 1})
    contract["services"].remove("storage")
    contract["data_services"].remove("storage")
    assert prpm_stack.validate_contract(contract) is contract


def test_a_missing_contract_says_which_file_and_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    with pytest.raises(Failure) as err:
        prpm_stack.load_contract(path)
    assert str(err.value) == (
        f"the stack contract {path} is missing: run prpm.hobby.registry_stack first"
    )


def test_a_contract_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text("{schema: 1", encoding="utf-8")
    with pytest.raises(Failure, match=f"the stack contract {path} cannot be read"):
        prpm_stack.load_contract(path)


def _without(contract: dict[str, Any], dotted: str) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = contract
    for key in parents:
        node = node[key]
    del node[last]
    return contract


@pytest.mark.parametrize(
    "key",
    ["dir", "project", "services", "registry_service", "database.volume", "health.server_name"],
)
def test_a_missing_key_is_named(tmp_path: Path, contract: dict[str, Any], key: str) -> None:
    path = write_json(tmp_path / "stack.json", _without(contract, key))
    with pytest.raises(Failure) as err:
        prpm_stack.load_contract(path)
    assert f"the stack contract {path} is not valid: '{key}' is missing" in str(err.value)
    assert "run prpm.hobby.registry_stack first" in str(err.value)


@pytest.mark.parametrize("schema", [2, 0, "1", None, True])
def test_another_schema_is_refused(contract: dict[str, Any], schema: Any) -> None:
    contract["schema"] = schema
    with pytest.raises(
        Failure, match=f"has 'schema' {schema!r}; this prpm_stack.py reads schema 1"
    ):
        prpm_stack.validate_contract(contract, "/etc/prpm-hobby/stack.json")


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("services", "postgres redis", "'services' must be a list"),
        ("services", ["postgres", 3], "'services[1]' must be a string (not empty)"),
        ("project", "", "'project' must be a string (not empty)"),
        ("database", "postgres", "'database' must be an object"),
        ("package_files", {"service": "storage"}, "'package_files.volume' is missing"),
        (
            "health",
            dict(CONTRACT["health"], validate_certs="no"),
            "'health.validate_certs' must be true or false",
        ),
        ("backup_paths", None, "'backup_paths' must be a list"),
    ],
)
def test_wrong_types_are_named(
    contract: dict[str, Any], key: str, value: Any, problem: str
) -> None:
    contract[key] = value
    with pytest.raises(Failure) as err:
        prpm_stack.validate_contract(contract, "/x/stack.json")
    assert str(err.value).startswith("the stack contract /x/stack.json is not valid: ")
    assert problem in str(err.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"registry_service": "api"}, "'registry_service' is api, which is not in 'services'"),
        ({"data_services": ["postgres", "db"]}, "'data_services' names db, which is not in"),
        (
            {"oneshot_services": ["migrate", "caddy"]},
            "'oneshot_services' names caddy, which is also",
        ),
        ({"services": []}, "'services' is empty"),
    ],
)
def test_names_that_do_not_add_up_are_refused(
    contract: dict[str, Any], change: dict[str, Any], problem: str
) -> None:
    contract.update(change)
    with pytest.raises(Failure, match=problem):
        prpm_stack.validate_contract(contract)


def test_a_program_config_is_checked_against_its_spec(tmp_path: Path) -> None:
    spec = {"timeout": int, "url": prpm_stack.Text, "names": [str], "extra?": dict}
    good = write_json(tmp_path / "good.json", {"timeout": 3, "url": "", "names": ["a"]})
    assert prpm_stack.load_config(good, spec)["timeout"] == 3
    bad = write_json(tmp_path / "bad.json", {"timeout": 3.5, "names": ["a"], "extra": []})
    with pytest.raises(Failure) as err:
        prpm_stack.load_config(bad, spec)
    assert str(err.value) == (
        f"the configuration {bad} is not valid: 'timeout' must be an integer; "
        "'url' is missing; 'extra' must be an object"
    )


# --- Processes, JSON, pings ---------------------------------------------------------------------
PY = sys.executable


def test_run_returns_stdout_and_adds_env() -> None:
    code = "import os, sys; print(os.environ['ADDED'], sys.stdin.read() == '')"
    assert prpm_stack.run([PY, "-c", code], env={"ADDED": "yes"}) == "yes True\n"


def test_run_failure_says_command_exit_status_and_stderr() -> None:
    code = "import sys; sys.stderr.write('boom'); sys.exit(4)"
    with pytest.raises(Failure, match=r"-c .* exited 4: boom$"):
        prpm_stack.run([PY, "-c", code])


def test_run_timeout_and_missing_program_are_failures(tmp_path: Path) -> None:
    with pytest.raises(Failure, match=r"did not finish in 0\.2 s"):
        prpm_stack.run([PY, "-c", "import time; time.sleep(5)"], timeout=0.2)
    with pytest.raises(Failure, match="No such file"):
        prpm_stack.run([str(tmp_path / "nothing-here")])


def test_attempt_never_raises(tmp_path: Path) -> None:
    done = prpm_stack.attempt([PY, "-c", "import sys; print('x'); sys.exit(3)"])
    assert (done.returncode, done.stdout) == (3, "x\n")
    assert prpm_stack.attempt([str(tmp_path / "nothing-here")]).returncode == 127


def test_pipe_passes_data_and_reports_the_producer_first() -> None:
    upper = [PY, "-c", "import sys; print(sys.stdin.read().upper(), end='')"]
    assert prpm_stack.pipe([PY, "-c", "print('abc', end='')"], upper) == "ABC"
    broken = [PY, "-c", "import sys; print('part'); sys.stderr.write('repo damaged'); sys.exit(1)"]
    strict = [PY, "-c", "import sys; sys.stdin.read(); sys.exit(2)"]
    with pytest.raises(Failure, match=r"^restic dump exited 1: repo damaged$"):
        prpm_stack.pipe(broken, strict, producer_name="restic dump")
    with pytest.raises(Failure, match="exited 2"):
        prpm_stack.pipe([PY, "-c", "print('fine')"], strict)


def test_write_json_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "last.json"
    prpm_stack.write_json(path, {"b": 1, "a": 2})
    assert path.read_text(encoding="utf-8") == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(TypeError):
        prpm_stack.write_json(path, {"a": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 2, "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.json"]


class _Opened:
    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


@pytest.mark.parametrize(
    ("url", "ok", "sent"),
    [
        ("https://hc.example/ping/abc", True, "https://hc.example/ping/abc"),
        ("https://hc.example/ping/abc/", False, "https://hc.example/ping/abc/fail"),
        ("", False, None),
        ("file:///etc/passwd", True, None),
    ],
)
def test_ping(monkeypatch: pytest.MonkeyPatch, url: str, ok: bool, sent: str | None) -> None:
    requests: list[Any] = []
    monkeypatch.setattr(
        prpm_stack.urllib.request, "urlopen", lambda req, timeout: requests.append(req) or _Opened()
    )
    prpm_stack.ping(url, ok, "why")
    assert [r.full_url for r in requests] == ([sent] if sent else [])
    if sent:
        assert (requests[0].method, requests[0].data) == ("POST", b"why")


def test_a_failed_ping_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(_req: Any, timeout: float) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(prpm_stack.urllib.request, "urlopen", refuse)
    prpm_stack.ping("https://hc.example/x", True, prog="prpm-test")
    assert (
        "prpm-test: ping to https://hc.example/x failed: connection refused"
        in capsys.readouterr().out
    )


# --- The Stack ----------------------------------------------------------------------------------
def test_compose_and_exec_argv(contract: dict[str, Any]) -> None:
    stack = Stack(contract)
    assert stack.compose("ps") == [*COMPOSE, "ps"]
    assert stack.exec("postgres", "psql", "-c", "SELECT 1") == [
        *COMPOSE, "exec", "-T", "postgres", "psql", "-c", "SELECT 1",
    ]  # fmt: skip
    assert (stack.data, stack.front) == (["postgres", "redis", "storage"], ["registry", "caddy"])


def test_stop_front_first_then_data(fake: FakeHost, contract: dict[str, Any]) -> None:
    Stack(contract).stop()
    assert fake.argvs() == [
        [*COMPOSE, "stop", "--timeout", "5", "registry", "caddy"],
        [*COMPOSE, "stop", "--timeout", "60", "postgres", "redis", "storage"],
    ]


def test_start_data_first_waiting_then_front(fake: FakeHost, contract: dict[str, Any]) -> None:
    Stack(contract).start(120)
    up = [*COMPOSE, "up", "--detach", "--no-recreate", "--no-deps"]
    assert fake.argvs() == [
        [*up, "--wait", "--wait-timeout", "120", "postgres", "redis", "storage"],
        [*up, "registry", "caddy"],
    ]


def test_service_config(fake: FakeHost, contract: dict[str, Any]) -> None:
    config = {"services": {"postgres": {"image": "pg:17", "command": ["postgres"]}}}
    fake.on("config", "--format", out=json.dumps(config))
    assert Stack(contract).service_config("postgres")["image"] == "pg:17"
    assert fake.argvs() == [[*COMPOSE, "config", "--format", "json"]]


@pytest.mark.parametrize(
    ("rows", "ok", "states"),
    [
        (healthy_rows(CONTRACT), True, {"caddy": "running healthy", "migrate": "exited (0)"}),
        (
            [
                *healthy_rows(CONTRACT)[:3],
                {"Service": "registry", "State": "running", "Health": "starting"},
                {"Service": "caddy", "State": "running", "Health": ""},
            ],
            False,
            {"registry": "running starting", "caddy": "running"},
        ),
        (
            [
                {"Service": "postgres", "State": "running", "Health": "healthy"},
                {"Service": "registry", "State": "exited", "Health": "", "ExitCode": 137},
                {"Service": "caddy", "State": "running", "Health": "healthy"},
                {"Service": "migrate", "State": "exited", "Health": "", "ExitCode": 1},
            ],
            False,
            {
                "redis": "missing",
                "storage": "missing",
                "registry": "exited",
                "migrate": "exited (1)",
            },
        ),
        ([], False, {"postgres": "missing", "caddy": "missing"}),
    ],
)
def test_service_states(
    fake: FakeHost,
    contract: dict[str, Any],
    rows: list[dict[str, Any]],
    ok: bool,
    states: dict[str, str],
) -> None:
    fake.on("ps", out=ps_rows(rows))
    got_ok, got = Stack(contract).service_states()
    assert got_ok is ok
    assert {k: got[k] for k in states} == states
    assert fake.argvs() == [[*COMPOSE, "ps", "--all", "--format", "json"]]


def test_service_states_from_a_json_array(fake: FakeHost, contract: dict[str, Any]) -> None:
    fake.on("ps", out=json.dumps(healthy_rows(contract)))
    assert Stack(contract).service_states()[0] is True


def test_service_states_when_docker_fails(fake: FakeHost, contract: dict[str, Any]) -> None:
    fake.on("ps", rc=1)
    assert Stack(contract).service_states() == (False, {"docker": "docker exited 1"})


URL = "https://127.0.0.1:443/health"


@pytest.mark.parametrize(
    ("status", "body", "ok", "message"),
    [
        (200, '{"status": "ok", "version": "1.2"}', True, f"{URL}: ok"),
        (200, '{"status": "degraded"}', False, f'{URL}: HTTP 200 {{"status": "degraded"}}'),
        (502, "Bad Gateway\n", False, f"{URL}: HTTP 502 Bad Gateway"),
        (200, "ok", False, f"{URL}: HTTP 200 ok"),
        (200, '["ok"]', False, f'{URL}: HTTP 200 ["ok"]'),
    ],
)
def test_judge_health(status: int, body: str, ok: bool, message: str) -> None:
    assert prpm_stack.judge_health(URL, status, body) == (ok, message)


class _Response:
    status = 200

    def read(self, _n: int) -> bytes:
        return b'{"status": "ok"}'


class _Connection:
    """Stands in for _LoopbackHTTPS: records where it would connect and what it asks."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, address: str, port: int, server_name: str, **kw: Any) -> None:
        self.seen = {"address": address, "port": port, "server_name": server_name, **kw}
        _Connection.made.append(self.seen)

    def request(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.seen.update(method=method, path=path, headers=headers)

    def getresponse(self) -> _Response:
        return _Response()

    def close(self) -> None:
        self.seen["closed"] = True


def test_http_health_goes_through_caddy_on_loopback_with_the_site_name(
    monkeypatch: pytest.MonkeyPatch, contract: dict[str, Any]
) -> None:
    contract["health"].update(local_url="https://127.0.0.1:8443/healthz", server_name="reg.example")
    monkeypatch.setattr(prpm_stack, "_LoopbackHTTPS", _Connection)
    _Connection.made.clear()
    assert Stack(contract).http_health() == (True, "https://127.0.0.1:8443/healthz: ok")
    (seen,) = _Connection.made
    assert (seen["address"], seen["port"], seen["server_name"]) == (
        "127.0.0.1",
        8443,
        "reg.example",
    )
    assert (seen["method"], seen["path"], seen["headers"]) == (
        "GET",
        "/healthz",
        {"Host": "reg.example"},
    )
    assert seen["closed"] is True


def test_loopback_https_connects_to_the_address_and_sends_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connected: dict[str, Any] = {}

    class Context:
        verify_mode = ssl.CERT_NONE
        check_hostname = False
        post_handshake_auth = None

        def wrap_socket(self, sock: str, server_hostname: str) -> str:
            connected["sni"] = server_hostname
            return sock

    def create_connection(address: tuple[str, int], timeout: float) -> str:
        connected["address"] = address
        return "socket"

    monkeypatch.setattr(prpm_stack.socket, "create_connection", create_connection)
    conn = prpm_stack._LoopbackHTTPS("127.0.0.1", 443, "reg.example", context=Context(), timeout=1)
    conn.connect()
    assert connected == {"address": ("127.0.0.1", 443), "sni": "reg.example"}


def test_health_probes_http_only_when_the_services_are_fine(
    fake: FakeHost, monkeypatch: pytest.MonkeyPatch, contract: dict[str, Any]
) -> None:
    monkeypatch.setattr(Stack, "http_health", lambda _self: (True, "probed: ok"))
    fake.on("ps", out=ps_rows(healthy_rows(contract)))
    assert Stack(contract).health()["http"] == "probed: ok"
    fake.on("ps", out=ps_rows(healthy_rows(contract)[1:]))
    result = Stack(contract).health()
    assert (result["ok"], result["http"], result["services"]["postgres"]) == (
        False, "not probed", "missing",
    )  # fmt: skip
    assert prpm_stack.describe(result).startswith("services: caddy=running healthy, ")
    assert prpm_stack.describe(result).endswith("; health: not probed")


def test_wait_healthy_polls_until_ok_or_timeout(
    fake: FakeHost, monkeypatch: pytest.MonkeyPatch, contract: dict[str, Any]
) -> None:
    answers = iter([False, False, True])
    monkeypatch.setattr(Stack, "health", lambda _self: {"ok": next(answers)})
    assert Stack(contract).wait_healthy(600)["ok"] is True
    monkeypatch.setattr(Stack, "health", lambda _self: {"ok": False})
    result = Stack(contract).wait_healthy(0)
    assert result == {"ok": False, "waited_seconds": 0.0}


# --- prpm-stack ---------------------------------------------------------------------------------
@pytest.fixture
def contract_file(tmp_path: Path, contract: dict[str, Any]) -> str:
    return str(write_json(tmp_path / "stack.json", contract))


def test_cli_status(
    fake: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    contract_file: str,
    contract: dict[str, Any],
) -> None:
    monkeypatch.setattr(Stack, "http_health", lambda _self: (True, "h: ok"))
    fake.on("ps", out=ps_rows(healthy_rows(contract)))
    assert prpm_stack.main(["status"], contract_file) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["ok"], out["project"], out["http"]) == (True, "prpm", "h: ok")
    assert set(out["services"]) == {*contract["services"], "migrate"}
    fake.on("ps", rc=1)
    assert prpm_stack.main(["health", "--wait", "0.01"], contract_file) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_cli_stop_and_start(
    fake: FakeHost, capsys: pytest.CaptureFixture[str], contract_file: str
) -> None:
    assert prpm_stack.main(["stop"], contract_file) == 0
    assert prpm_stack.main(["start", "--wait-timeout", "90"], contract_file) == 0
    assert [a[6] for a in fake.argvs()] == ["stop", "stop", "up", "up"]
    assert "90" in fake.argvs()[2]
    assert "prpm-stack: stack started: postgres, redis, storage, registry, caddy" in (
        capsys.readouterr().out
    )


def test_cli_reload_asks_caddy_to_reread_its_caddyfile(
    fake: FakeHost, capsys: pytest.CaptureFixture[str], contract_file: str
) -> None:
    assert prpm_stack.main(["reload", "--proxy", "caddy"], contract_file) == 0
    (argv,) = fake.argvs()
    assert argv[-7:] == ["caddy", "caddy", "reload", "--config", "/etc/caddy/Caddyfile",
                         "--adapter", "caddyfile"]  # fmt: skip
    assert argv[argv.index("exec") :][:2] == ["exec", "-T"]
    assert "prpm-stack: caddy reloaded its configuration" in capsys.readouterr().out
    fake.on("reload", rc=1)
    assert prpm_stack.main(["reload", "--proxy", "caddy"], contract_file) == 1
    assert "prpm-stack: reload FAILED" in capsys.readouterr().err


def test_cli_without_a_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert prpm_stack.main(["status"], str(tmp_path / "none.json")) == 1
    err = capsys.readouterr().err
    assert err.startswith("prpm-stack: status FAILED: the stack contract ")
    assert "run prpm.hobby.registry_stack first" in err


def test_host_reads_the_contract_only_when_needed(tmp_path: Path, contract_file: str) -> None:
    assert prpm_stack.Host({}, tmp_path / "none.json").cfg == {}
    host = prpm_stack.Host({}, contract_file)
    assert host.stack.contract is host.contract
    assert host.contract["project"] == "prpm"
