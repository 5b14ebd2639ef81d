# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm_stack: the registry switch (zero-downtime deploys): the plan, the order of the switch,
a candidate that fails (before Caddy, behind Caddy), the drain, leftovers of an interrupted
switch, and `prpm-stack switch`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import prpm_stack
import pytest
from host_fakes import FakeHost, write_json
from prpm_stack import CandidateFailed, Failure, Stack, Switch

COMPOSE = ["docker", "compose", "-f", "/opt/prpm/compose.yaml", "-p", "prpm"]
PORT = 8000
OLD, NEW = "prpm-registry-1", "prpm-registry-2"
OLD_ID, NEW_ID = "c0ffee000001", "c0ffee000002"
UPSTREAMS_URL = "http://localhost:2019/reverse_proxy/upstreams"
HEALTH_OK = (True, "https://127.0.0.1:443/health: ok")
HEALTH_502 = (False, "https://127.0.0.1:443/health: HTTP 502 ")
INSPECT_STATE, INSPECT_HEALTH = "{{json .State}}", "{{json .State.Health}}"


def state(health: str | None = "healthy", *, running: bool = True, exit_code: int = 0) -> dict:
    """What `docker inspect --format {{json .State}}` prints (health None: no health check)."""
    return {
        "Status": "running" if running else "exited",
        "Running": running,
        "ExitCode": exit_code,
        "Health": None if health is None else {"Status": health, "FailingStreak": 0, "Log": []},
    }


HEALTHY, STARTING, UNHEALTHY = state("healthy"), state("starting"), state("unhealthy")


def dry_run(container: str, action: str) -> str:
    """What `docker compose up --dry-run` prints (on stderr) for the registry's container."""
    return (
        " DRY-RUN MODE -  Container prpm-postgres-1  Running\n"
        f" DRY-RUN MODE -  Container {container}  {action}\n"
        " DRY-RUN MODE -  Container prpm-caddy-1  Running\n"
    )


def upstreams(*counts: tuple[str, int]) -> str:
    """Caddy's GET /reverse_proxy/upstreams: the addresses and their requests in flight."""
    return json.dumps([{"address": a, "num_requests": n, "fails": 0} for a, n in counts], indent=1)


class Clock:
    """time for prpm_stack: sleeping moves the clock on, and nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Scene:
    """A host with the stack running: the registry service's containers as `docker compose ps`
    shows them (`up --scale` adds one numbered as Compose numbers it, `docker rm` removes one),
    what `docker inspect` says of each (healthy unless a test says otherwise), Caddy's upstream
    file, and a log of every step with the container the upstream file named when the step
    happened."""

    def __init__(self, fake: FakeHost, tmp_path: Path, contract: dict[str, Any]) -> None:
        self.fake = fake
        self.contract = contract
        self.file = tmp_path / "caddy" / "registry-upstream.caddy"
        self.file.parent.mkdir()
        self.rows: list[dict[str, Any]] = []
        self.log: list[tuple[str, str]] = []
        self.health: list[tuple[bool, str]] = [HEALTH_OK]
        # `docker inspect --format {{json .State}}` of a container, in turn (the last one
        # repeats; None: no such container), and its `{{json .State.Health}}`.
        self.states: dict[str, list[dict[str, Any] | None]] = {}
        self.health_logs: dict[str, str] = {}
        self.clock = Clock()
        fake.on("ps", "--format", out=lambda _argv: self.ps())
        fake.on("up", "--dry-run", out=dry_run(OLD, "Recreate"))
        fake.on("up", "--scale", out=self.start_candidate)
        fake.on("docker", "rm", out=self.rm)
        # Caddy's answers to the drain probe, in turn (the last one repeats): (exit status, out).
        self.wget = [(0, upstreams((f"{OLD}:{PORT}", 0), (f"{NEW}:{PORT}", 0)))]

    # --- The host ---
    def add(self, name: str, cid: str, state: str = "running", health: str = "") -> None:
        row = {"ID": cid, "Name": name, "Service": "registry", "State": state, "Health": health}
        self.rows.append(row)

    def ps(self) -> str:
        rows = [*self.rows, {"ID": "cafe00000009", "Name": "prpm-caddy-1", "Service": "caddy"}]
        return "\n".join(json.dumps(r) for r in rows)

    def start_candidate(self, _argv: list[str]) -> str:
        number = max((int(r["Name"].rsplit("-", 1)[1]) for r in self.rows), default=0) + 1
        self.add(f"prpm-registry-{number}", f"c0ffee00000{number}")
        return ""

    def rm(self, argv: list[str]) -> str:
        self.rows = [r for r in self.rows if r["ID"] != argv[-1]]
        return ""

    def inspect(self, argv: list[str]) -> tuple[int, str, str]:
        cid = argv[-1]
        if argv[-2] == INSPECT_HEALTH:
            return 0, self.health_logs.get(cid, "null"), ""
        turns = self.states.setdefault(cid, [HEALTHY])
        answer = turns.pop(0) if len(turns) > 1 else turns[0]
        if answer is None:
            return 1, "", f"Error response from daemon: No such container: {cid}"
        return 0, json.dumps(answer), ""

    def names(self) -> list[str]:
        return [r["Name"] for r in self.rows]

    def upstream(self) -> str:
        return prpm_stack.upstream_in(self.file.read_text()) if self.file.exists() else ""

    def point_at(self, container: str) -> None:
        self.file.write_text(prpm_stack.upstream_line(container, PORT))

    # --- What happened ---
    def note(self, argv: Sequence[str]) -> None:
        self.log.append((step(argv), self.upstream()))

    def http_health(self) -> tuple[bool, str]:
        self.log.append(("http_health", self.upstream()))
        return self.health.pop(0) if len(self.health) > 1 else self.health[0]

    def steps(self) -> list[str]:
        """What the switch did, in order, without its `compose ps` reads."""
        return [s for s, _named in self.log if s != "ps"]

    def after(self, what: str) -> list[str]:
        """The steps after the first such step."""
        steps = self.steps()
        return steps[steps.index(what) + 1 :]

    def named_at(self, what: str) -> list[str]:
        """The container the upstream file named at each such step."""
        return [named for s, named in self.log if s == what]

    def switch(self, **kw: Any) -> Switch:
        return Switch(Stack(self.contract), proxy="caddy", upstream_file=self.file, port=PORT, **kw)


def step(argv: Sequence[str]) -> str:
    if argv[:2] == ["docker", "stop"]:
        return f"stop {argv[-1]}"
    if argv[:2] == ["docker", "rm"]:
        return f"rm {argv[-1]}"
    if argv[:2] == ["docker", "inspect"]:
        return "health log" if INSPECT_HEALTH in argv else "inspect"
    for word, name in [
        ("--dry-run", "dry-run"),
        ("--scale", "up --scale"),
        ("reload", "caddy reload"),
        ("wget", "wget"),
        ("ps", "ps"),
    ]:
        if word in argv:
            return name
    return " ".join(argv)


@pytest.fixture
def scene(
    fake: FakeHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, contract: dict[str, Any]
) -> Iterator[Scene]:
    """One registry container (prpm-registry-1) serves and the upstream file names it; the
    dry run plans to recreate it; a new container turns healthy at once; every step is logged;
    waits do not wait (the clock moves on by what prpm_stack sleeps)."""
    s = Scene(fake, tmp_path, contract)
    s.add(OLD, OLD_ID)
    s.point_at(OLD)

    def run(cmd: Sequence[str], **kw: Any) -> str:
        s.note(cmd)
        return fake.run(cmd, **kw)

    def attempt(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        s.note(cmd)
        done = fake.attempt(cmd, **kw)
        if "--dry-run" in done.args:  # Compose prints its plan on stderr
            return subprocess.CompletedProcess(done.args, done.returncode, "", done.stdout)
        if "wget" in done.args:
            rc, out = s.wget.pop(0) if len(s.wget) > 1 else s.wget[0]
            return subprocess.CompletedProcess(done.args, rc, out if rc == 0 else "", out)
        if done.args[:2] == ["docker", "inspect"]:
            return subprocess.CompletedProcess(done.args, *s.inspect(done.args))
        return done

    monkeypatch.setattr(prpm_stack, "run", run)
    monkeypatch.setattr(prpm_stack, "attempt", attempt)
    monkeypatch.setattr(Stack, "http_health", lambda _self: s.http_health())
    monkeypatch.setattr(prpm_stack, "time", s.clock)
    monkeypatch.setattr(prpm_stack, "SWITCH_POLL_SECONDS", 0.5)
    monkeypatch.setattr(prpm_stack, "SWITCH_GATE_TIMEOUT", 0)
    monkeypatch.setattr(prpm_stack, "DRAIN_TIMEOUT", 1)
    yield s


# --- The helpers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "wanted"),
    [
        (dry_run(OLD, "Recreate"), True),
        (dry_run(OLD, "Recreate") + dry_run(OLD, "Recreated"), True),
        (" DRY-RUN MODE -  Container prpm-registry-1  Create\n", True),
        (
            " DRY-RUN MODE -  Container prpm-caddy-1  Recreate\n"
            " DRY-RUN MODE -  Container prpm-registry-1  Running\n",
            False,
        ),
        (" DRY-RUN MODE -  Container prpm-registry-10  Recreate\n", False),
        (dry_run(OLD, "Running"), False),
        (dry_run(OLD, "Running") + " DRY-RUN MODE -  Container prpm-migrate-1  Recreate\n", False),
        ("", False),
    ],
)
def test_needs_new_container(output: str, wanted: bool) -> None:
    assert prpm_stack.needs_new_container(output, [OLD]) is wanted


def test_upstream_line_is_the_container_only_and_round_trips() -> None:
    """Never the service name: Docker's DNS answers it with the starting new container too."""
    line = prpm_stack.upstream_line("prpm-registry-12", 8000)
    assert line == "to prpm-registry-12:8000\n"
    assert line.split() == ["to", "prpm-registry-12:8000"]
    assert "registry:8000" not in line.split()
    assert prpm_stack.upstream_in(line) == "prpm-registry-12"
    assert prpm_stack.upstream_in("# written by prpm-stack switch\n\t" + line) == "prpm-registry-12"


def test_upstream_in_reads_a_file_with_the_service_name_fallback_of_before() -> None:
    assert prpm_stack.upstream_in("to prpm-registry-3:8000 registry:8000\n") == "prpm-registry-3"


@pytest.mark.parametrize(
    "text", ["", "\n", "# to prpm-registry-1:8000\n", "# to prpm-registry-1:8000 registry:8000\n"]
)
def test_upstream_in_says_nothing_for_a_file_without_upstreams(text: str) -> None:
    assert prpm_stack.upstream_in(text) == ""


@pytest.mark.parametrize(
    ("answer", "idle"),
    [
        (upstreams(("prpm-registry-1:8000", 1)), False),
        (upstreams(("registry:8000", 0), ("prpm-registry-1:8000", 3)), False),
        (upstreams(("prpm-registry-1:8000", 0)), True),
        (json.dumps([{"address": "prpm-registry-1:8000", "fails": 0}]), True),
        (upstreams(("prpm-registry-2:8000", 5), ("registry:8000", 2)), True),
        (upstreams(("prpm-registry-1:80", 4), ("prpm-registry-10:8000", 4)), True),
        ("[]", True),
        ("null", True),
    ],
)
def test_idle_upstream(answer: str, idle: bool) -> None:
    assert prpm_stack.idle_upstream(answer, "prpm-registry-1:8000") is idle


# --- Nothing to switch ---------------------------------------------------------------------------
@pytest.mark.parametrize("state", [None, "exited"])
def test_no_running_registry_container_is_nothing_to_switch(
    scene: Scene, state: str | None
) -> None:
    scene.rows = []
    if state:
        scene.add(OLD, OLD_ID, state)
    result = scene.switch().run()
    assert (result["changed"], result["switched"]) == (False, False)
    assert "no registry container runs" in result["msg"]
    assert scene.fake.find("up") == []
    assert scene.steps() == []
    assert scene.upstream() == OLD


def test_no_change_planned_and_caddy_already_on_the_serving_container(scene: Scene) -> None:
    scene.fake.on("up", "--dry-run", out=dry_run(OLD, "Running"))
    before = scene.file.read_text()
    result = scene.switch().run()
    assert result == {
        "changed": False,
        "switched": False,
        "serving": OLD,
        "removed": [],
        "msg": f"{OLD} runs the wanted configuration",
    }
    assert scene.steps() == ["dry-run"]
    assert scene.fake.find("caddy", "reload") == []
    assert scene.fake.find("docker", "stop") == []
    assert scene.fake.find("docker", "inspect") == []
    assert scene.file.read_text() == before


def test_the_plan_is_asked_of_all_services_without_deps_and_read_from_stderr(
    scene: Scene, contract: dict[str, Any]
) -> None:
    scene.switch().run()
    (plan,) = scene.fake.find("up", "--dry-run")
    assert plan[: len(COMPOSE)] == COMPOSE
    assert "--no-deps" in plan
    assert plan[-len(contract["services"]) :] == contract["services"]
    # The dry run's Recreate came on stderr only (the scene's attempt): it was read.
    assert scene.fake.find("up", "--scale") != []


def test_a_failed_plan_is_a_failure_and_nothing_starts(scene: Scene) -> None:
    scene.fake.on("up", "--dry-run", out="service registry refers to undefined volume x", rc=1)
    with pytest.raises(Failure, match=r"compose up --dry-run: service registry refers to") as err:
        scene.switch().run()
    assert not isinstance(err.value, CandidateFailed)
    assert scene.steps() == ["dry-run"]
    assert scene.upstream() == OLD


def test_no_change_planned_but_caddy_names_a_gone_container_is_repointed(scene: Scene) -> None:
    """After a manual `compose down`/`up` the container is prpm-registry-1 again while the file
    still names the one a switch made (prpm-registry-3)."""
    scene.point_at("prpm-registry-3")
    scene.fake.on("up", "--dry-run", out=dry_run(OLD, "Running"))
    result = scene.switch().run()
    assert (result["changed"], result["switched"], result["serving"]) == (True, False, OLD)
    assert result["removed"] == []
    assert scene.file.read_text() == f"to {OLD}:{PORT}\n"
    # Caddy is repointed before anything else: right after reading the containers.
    assert [s for s, _named in scene.log] == ["ps", "caddy reload", "dry-run"]
    assert scene.named_at("caddy reload") == [OLD]
    assert scene.fake.find("docker", "stop") == []


# --- The switch ----------------------------------------------------------------------------------
def test_a_planned_change_switches_in_order(scene: Scene, contract: dict[str, Any]) -> None:
    result = scene.switch().run()
    assert scene.steps() == [
        "dry-run",
        "up --scale",
        "inspect",
        "caddy reload",
        "http_health",
        "wget",
        f"stop {OLD_ID}",
        f"rm {OLD_ID}",
    ]
    # The new container is found (compose ps) after `up`, before its health is read.
    assert [s for s, _named in scene.log][2:4] == ["up --scale", "ps"]
    # Caddy named the old container until the new one was healthy, then the new one.
    assert scene.named_at("up --scale") == [OLD]
    assert scene.named_at("inspect") == [OLD]
    assert scene.named_at("caddy reload") == [NEW]
    assert scene.named_at("http_health") == [NEW]
    assert scene.file.read_text() == f"to {NEW}:{PORT}\n"
    assert scene.names() == [NEW]

    (up,) = scene.fake.find("up", "--scale")
    assert up[: len(COMPOSE) + 1] == [*COMPOSE, "up"]
    assert {"--detach", "--no-deps", "--no-recreate"} <= set(up)
    # No --wait: Compose would wait on the serving registry and Caddy too.
    assert [a for a in up if a.startswith("--wait")] == []
    assert up[up.index("--scale") + 1] == "registry=2"
    assert up[-len(contract["services"]) :] == contract["services"]
    # Only the new container's health is read, never the serving one's.
    assert scene.fake.find("docker", "inspect") == [
        ["docker", "inspect", "--format", INSPECT_STATE, NEW_ID]
    ]
    assert scene.fake.find("caddy", "reload") == [
        [*COMPOSE, "exec", "-T", "caddy", "caddy", "reload", "--config", "/etc/caddy/Caddyfile",
         "--adapter", "caddyfile"],
    ]  # fmt: skip
    assert scene.fake.find("wget") == [
        [*COMPOSE, "exec", "-T", "caddy", "wget", "-qO-", UPSTREAMS_URL]
    ]
    assert scene.fake.find("docker", "stop") == [["docker", "stop", "--time", "20", OLD_ID]]
    assert scene.fake.find("docker", "rm") == [["docker", "rm", OLD_ID]]

    assert (result["changed"], result["switched"], result["drained"]) == (True, True, True)
    assert (result["from"], result["to"], result["serving"]) == (OLD, NEW, NEW)
    assert result["removed"] == [OLD_ID]
    assert set(result["seconds"]) == {"healthy", "switched", "total"}
    assert result["msg"] == f"registry: {OLD} -> {NEW}, no request dropped"


def test_the_new_container_is_polled_until_healthy_before_caddy_is_pointed_at_it(
    scene: Scene,
) -> None:
    scene.states[NEW_ID] = [STARTING, STARTING, HEALTHY]
    result = scene.switch().run()
    assert result["switched"] is True
    assert scene.steps()[:6] == [
        "dry-run",
        "up --scale",
        "inspect",
        "inspect",
        "inspect",
        "caddy reload",
    ]
    # While it started, Caddy kept naming the old container; polled every SWITCH_POLL_SECONDS.
    assert scene.named_at("inspect") == [OLD, OLD, OLD]
    assert scene.named_at("caddy reload") == [NEW]
    assert scene.clock.sleeps[:2] == [0.5, 0.5]
    assert all(argv[-1] == NEW_ID for argv in scene.fake.find("docker", "inspect"))
    assert "health log" not in scene.steps()
    assert result["seconds"]["healthy"] == 1.0


def test_an_unhealthy_serving_container_does_not_block_the_deploy(scene: Scene) -> None:
    """The fix for a sick registry must deploy: the serving container's health is never read
    before the switch (no `compose up --wait`, which would wait on it)."""
    scene.rows = []
    scene.add(OLD, OLD_ID, health="unhealthy")
    scene.states[OLD_ID] = [UNHEALTHY]
    scene.health_logs[OLD_ID] = json.dumps(
        {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "database unreachable"}]}
    )
    result = scene.switch().run()
    assert (result["switched"], result["from"], result["to"]) == (True, OLD, NEW)
    assert [argv[-1] for argv in scene.fake.find("docker", "inspect")] == [NEW_ID]
    (up,) = scene.fake.find("up", "--scale")
    assert "--wait" not in up
    assert scene.names() == [NEW]
    assert scene.upstream() == NEW


def test_the_gate_polls_caddy_until_the_new_container_answers(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prpm_stack, "SWITCH_GATE_TIMEOUT", 30)
    scene.health = [HEALTH_502, HEALTH_502, HEALTH_OK]
    assert scene.switch().run()["switched"] is True
    assert scene.steps()[3:7] == ["caddy reload", "http_health", "http_health", "http_health"]
    assert len(scene.fake.find("caddy", "reload")) == 1


# --- A new container that fails before it serves -------------------------------------------------
def assert_never_served(scene: Scene) -> None:
    """The new container was stopped at once and removed; the old one was never stopped; Caddy
    was not reloaded once the new one had started and still names the old one."""
    assert scene.fake.find("docker", "stop") == [["docker", "stop", "--time", "1", NEW_ID]]
    assert scene.fake.find("docker", "rm") == [["docker", "rm", NEW_ID]]
    assert "caddy reload" not in scene.after("up --scale")
    assert scene.fake.find("caddy", "reload") == []
    assert "http_health" not in scene.steps()
    assert scene.upstream() == OLD
    assert scene.names() == [OLD]


def test_an_unhealthy_candidate_is_removed_and_never_served(scene: Scene) -> None:
    scene.states[NEW_ID] = [STARTING, UNHEALTHY]
    scene.health_logs[NEW_ID] = json.dumps(
        {
            "Status": "unhealthy",
            "FailingStreak": 10,
            "Log": [
                {"ExitCode": 1, "Output": "starting\n"},
                {"ExitCode": 1, "Output": "connection refused\n"},
            ],
        }
    )
    with pytest.raises(CandidateFailed) as err:
        scene.switch().run()
    assert str(err.value) == (
        "the new registry container did not turn healthy (unhealthy: connection refused); it "
        f"was removed and never received a request: {OLD} still serves"
    )
    assert scene.steps() == [
        "dry-run",
        "up --scale",
        "inspect",
        "inspect",
        "health log",
        f"stop {NEW_ID}",
        f"rm {NEW_ID}",
    ]
    assert scene.fake.find("docker", "inspect") == [
        ["docker", "inspect", "--format", INSPECT_STATE, NEW_ID],
        ["docker", "inspect", "--format", INSPECT_STATE, NEW_ID],
        ["docker", "inspect", "--format", INSPECT_HEALTH, NEW_ID],
    ]
    assert_never_served(scene)


def test_an_unhealthy_candidate_whose_check_printed_nothing_says_so(scene: Scene) -> None:
    scene.states[NEW_ID] = [UNHEALTHY]
    scene.health_logs[NEW_ID] = json.dumps({"Status": "unhealthy", "Log": []})
    with pytest.raises(
        CandidateFailed, match=r"\(unhealthy: its health check printed nothing\); it was removed"
    ):
        scene.switch().run()
    assert_never_served(scene)


@pytest.mark.parametrize("exit_code", [1, 137])
def test_a_candidate_that_exited_is_removed_and_never_served(scene: Scene, exit_code: int) -> None:
    scene.states[NEW_ID] = [STARTING, state(None, running=False, exit_code=exit_code)]
    with pytest.raises(CandidateFailed) as err:
        scene.switch().run()
    assert str(err.value) == (
        f"the new registry container did not turn healthy (exited {exit_code}); it "
        f"was removed and never received a request: {OLD} still serves"
    )
    assert scene.steps() == [
        "dry-run",
        "up --scale",
        "inspect",
        "inspect",
        f"stop {NEW_ID}",
        f"rm {NEW_ID}",
    ]
    assert_never_served(scene)


@pytest.mark.parametrize("health", ["starting", "healthy", "unhealthy"])
def test_a_candidate_that_exited_with_a_health_state_is_removed_and_never_served(
    scene: Scene, health: str
) -> None:
    """Docker keeps the last health state of a container that stopped: healthy is not enough."""
    scene.states[NEW_ID] = [state(health, running=False, exit_code=1)]
    scene.health_logs[NEW_ID] = json.dumps(
        {"Status": health, "Log": [{"ExitCode": 0, "Output": "ok"}]}
    )
    with pytest.raises(CandidateFailed, match=rf"never received a request: {OLD} still serves$"):
        scene.switch().run()
    assert scene.after("up --scale")[0] == "inspect"
    assert scene.after("up --scale")[-2:] == [f"stop {NEW_ID}", f"rm {NEW_ID}"]
    assert scene.steps().count("inspect") == 1
    assert_never_served(scene)


@pytest.mark.parametrize("health", ["starting", "healthy"])
def test_a_candidate_that_exited_with_a_health_state_says_it_exited(
    scene: Scene, health: str
) -> None:
    scene.states[NEW_ID] = [state(health, running=False, exit_code=1)]
    scene.health_logs[NEW_ID] = json.dumps({"Status": health, "Log": []})
    with pytest.raises(CandidateFailed, match=r"exited 1"):
        scene.switch().run()


@pytest.mark.parametrize(
    "answer",
    [STARTING, state(None), None],
    ids=["health-starting", "no-health-check", "inspect-fails"],
)
def test_a_candidate_still_starting_after_the_wait_timeout_is_removed(
    scene: Scene, answer: dict[str, Any] | None
) -> None:
    scene.states[NEW_ID] = [answer]
    with pytest.raises(CandidateFailed) as err:
        scene.switch(wait_timeout=3).run()
    assert str(err.value) == (
        "the new registry container did not turn healthy (still starting after 3 s); it "
        f"was removed and never received a request: {OLD} still serves"
    )
    # Polled every SWITCH_POLL_SECONDS (0.5) from 0 to 3 s: seven times.
    polls = scene.fake.find("docker", "inspect", INSPECT_STATE)
    assert [argv[-1] for argv in polls] == [NEW_ID] * 7
    assert scene.clock.sleeps == [0.5] * 6
    assert scene.after("up --scale") == ["inspect"] * 7 + [f"stop {NEW_ID}", f"rm {NEW_ID}"]
    assert_never_served(scene)


def test_a_failing_up_removes_what_it_started(scene: Scene) -> None:
    scene.fake.on("up", "--scale", out=scene.start_candidate, rc=1)
    with pytest.raises(CandidateFailed) as err:
        scene.switch().run()
    assert str(err.value) == (
        "the new registry container did not turn healthy (docker exited 1); it "
        f"was removed and never received a request: {OLD} still serves"
    )
    assert scene.steps() == ["dry-run", "up --scale", f"stop {NEW_ID}", f"rm {NEW_ID}"]
    assert scene.fake.find("docker", "inspect") == []
    assert_never_served(scene)


def test_a_failing_up_that_started_nothing_removes_nothing(scene: Scene) -> None:
    scene.fake.on("up", "--scale", out="pull access denied", rc=1)
    with pytest.raises(CandidateFailed, match=rf"\(docker exited 1\).* {OLD} still serves$"):
        scene.switch().run()
    assert scene.steps() == ["dry-run", "up --scale"]
    assert scene.fake.find("docker", "stop") == []
    assert scene.names() == [OLD]
    assert scene.upstream() == OLD


def test_an_up_that_made_no_new_container_is_a_candidate_failure(scene: Scene) -> None:
    scene.fake.on("up", "--scale", out="")
    with pytest.raises(CandidateFailed, match=r"\(expected one new registry container, found 0\)"):
        scene.switch().run()
    assert scene.fake.find("docker", "inspect") == []
    assert scene.fake.find("docker", "stop") == []
    assert scene.names() == [OLD]


# --- prpm-stack switch ---------------------------------------------------------------------------
def cli(scene: Scene, tmp_path: Path, *extra: str) -> int:
    contract_file = str(write_json(tmp_path / "stack.json", scene.contract))
    argv = ["switch", "--proxy", "caddy", "--upstream-file", str(scene.file), "--port", "8000"]
    return prpm_stack.main([*argv, *extra], contract_file)


def test_cli_switch_exits_3_when_the_candidate_fails(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.states[NEW_ID] = [UNHEALTHY]
    scene.health_logs[NEW_ID] = json.dumps(
        {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "connection refused"}]}
    )
    assert cli(scene, tmp_path) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("prpm-stack: switch FAILED: the new registry container did not turn")
    assert "(unhealthy: connection refused)" in err
    assert err.rstrip().endswith(f"{OLD} still serves")
    assert_never_served(scene)


def test_cli_switch_exits_3_when_the_up_fails(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.fake.on("up", "--scale", out=scene.start_candidate, rc=1)
    assert cli(scene, tmp_path) == 3
    assert capsys.readouterr().err.startswith("prpm-stack: switch FAILED: the new registry")
    assert_never_served(scene)


def test_cli_switch_waits_its_wait_timeout_for_the_new_container(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.states[NEW_ID] = [STARTING]
    assert cli(scene, tmp_path, "--wait-timeout", "45") == 3
    assert "(still starting after 45 s)" in capsys.readouterr().err
    assert sum(scene.clock.sleeps) == 45
    (up,) = scene.fake.find("up", "--scale")
    assert [a for a in up if a.startswith("--wait")] == []
    assert_never_served(scene)


def test_cli_switch_prints_the_result(
    scene: Scene,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[tuple[str, float]] = []
    wait = Switch.wait_container_healthy

    def spy(self: Switch, cid: str, timeout: float) -> tuple[bool, str]:
        waits.append((cid, timeout))
        return wait(self, cid, timeout)

    monkeypatch.setattr(Switch, "wait_container_healthy", spy)
    assert cli(scene, tmp_path, "--wait-timeout", "45") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["changed"], out["switched"], out["from"], out["to"]) == (True, True, OLD, NEW)
    assert waits == [(NEW_ID, 45)]
    (up,) = scene.fake.find("up", "--scale")
    assert [a for a in up if a.startswith("--wait")] == []


def test_cli_switch_exits_1_on_another_failure(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.fake.on("up", "--dry-run", out="no such image", rc=1)
    assert cli(scene, tmp_path) == 1
    assert capsys.readouterr().err.startswith("prpm-stack: switch FAILED: compose up --dry-run")


def test_cli_switch_exits_1_when_the_candidate_fails_behind_caddy(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 says the new container never served; behind Caddy it may have: exit 1."""
    scene.health = [HEALTH_502]
    assert cli(scene, tmp_path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("prpm-stack: switch FAILED: behind Caddy the new container failed: ")
    assert err.rstrip().endswith(
        f"Caddy was switched back, the new container removed: {OLD} serves again"
    )
    assert scene.upstream() == OLD
    assert scene.names() == [OLD]


def test_cli_switch_needs_proxy_file_and_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        prpm_stack.main(["switch", "--proxy", "caddy", "--port", "8000"], "/nonexistent")
    assert exit_.value.code == 2
    assert "--upstream-file" in capsys.readouterr().err


# --- A new container that fails behind Caddy -----------------------------------------------------
def test_a_candidate_failing_behind_caddy_is_switched_back_from(scene: Scene) -> None:
    """It may have served requests through Caddy: a plain Failure, not CandidateFailed."""
    scene.health = [HEALTH_502]
    with pytest.raises(Failure) as err:
        scene.switch().run()
    assert not isinstance(err.value, CandidateFailed)
    assert str(err.value) == (
        f"behind Caddy the new container failed: {HEALTH_502[1]}; Caddy was switched back, "
        f"the new container removed: {OLD} serves again"
    )
    assert scene.steps() == [
        "dry-run",
        "up --scale",
        "inspect",
        "caddy reload",
        "http_health",
        "caddy reload",
        f"stop {NEW_ID}",
        f"rm {NEW_ID}",
    ]
    # The first reload pointed Caddy at the new container, the second back at the old one.
    assert scene.named_at("caddy reload") == [NEW, OLD]
    assert scene.upstream() == OLD
    assert scene.file.read_text() == f"to {OLD}:{PORT}\n"
    assert scene.fake.find("docker", "stop") == [["docker", "stop", "--time", "1", NEW_ID]]
    assert scene.fake.find("wget") == []
    assert scene.names() == [OLD]


def test_a_failed_reload_to_the_candidate_is_switched_back_from(scene: Scene) -> None:
    reloads = iter([Failure("caddy reload exited 1: adapting config"), None])

    def reload(_argv: list[str]) -> str:
        problem = next(reloads)
        if problem:
            raise problem
        return ""

    scene.fake.on("caddy", "reload", out=reload)
    with pytest.raises(Failure) as err:
        scene.switch().run()
    assert not isinstance(err.value, CandidateFailed)
    assert str(err.value) == (
        "caddy reload exited 1: adapting config; Caddy was switched back, "
        f"the new container removed: {OLD} serves again"
    )
    assert scene.named_at("caddy reload") == [NEW, OLD]
    assert "http_health" not in scene.steps()
    assert scene.names() == [OLD]


# --- The drain -----------------------------------------------------------------------------------
def test_the_old_container_stops_only_when_caddy_has_no_request_in_flight_to_it(
    scene: Scene,
) -> None:
    scene.wget = [
        (0, upstreams((f"{NEW}:{PORT}", 1), (f"{OLD}:{PORT}", 2))),
        (0, upstreams((f"{NEW}:{PORT}", 3), (f"{OLD}:{PORT}", 0))),
    ]
    result = scene.switch().run()
    assert scene.steps()[-4:] == ["wget", "wget", f"stop {OLD_ID}", f"rm {OLD_ID}"]
    assert result["drained"] is True


def test_a_drain_that_times_out_still_stops_the_old_container_gracefully(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prpm_stack, "DRAIN_TIMEOUT", 0)
    scene.wget = [(0, upstreams((f"{OLD}:{PORT}", 1)))]
    result = scene.switch().run()
    assert (result["switched"], result["drained"]) == (True, False)
    assert scene.fake.find("docker", "stop") == [["docker", "stop", "--time", "20", OLD_ID]]


def test_a_failed_drain_probe_is_polled_again(scene: Scene) -> None:
    scene.wget = [(1, "wget: can't connect to remote host"), (0, upstreams((f"{OLD}:{PORT}", 0)))]
    result = scene.switch().run()
    assert scene.steps()[-4:] == ["wget", "wget", f"stop {OLD_ID}", f"rm {OLD_ID}"]
    assert result["drained"] is True


@pytest.mark.parametrize(
    "answer",
    [
        "garbage",
        "<html>502 Bad Gateway</html>",
        '{"error": "not found"}',
        "[1]",
        json.dumps([{"address": f"{OLD}:{PORT}", "num_requests": "many"}]),
    ],
)
def test_a_drain_answer_that_is_not_the_admin_apis_json_is_asked_again(
    scene: Scene, answer: str
) -> None:
    scene.wget = [(0, answer), (0, "[]")]
    result = scene.switch().run()
    assert scene.steps()[-4:] == ["wget", "wget", f"stop {OLD_ID}", f"rm {OLD_ID}"]
    assert (result["switched"], result["drained"]) == (True, True)


def test_a_drain_that_never_gets_the_admin_apis_json_times_out(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prpm_stack, "DRAIN_TIMEOUT", 0)
    scene.wget = [(0, "garbage")]
    result = scene.switch().run()
    assert (result["switched"], result["drained"]) == (True, False)
    assert scene.steps()[-3:] == ["wget", f"stop {OLD_ID}", f"rm {OLD_ID}"]
    assert scene.fake.find("docker", "stop") == [["docker", "stop", "--time", "20", OLD_ID]]


# --- Leftovers of an interrupted switch ----------------------------------------------------------
def test_leftovers_caddy_is_reloaded_on_the_named_container_before_they_go(scene: Scene) -> None:
    """An interrupted switch may have written the file without Caddy loading it: with leftovers
    the file is written and Caddy reloaded even though the file names the serving container,
    before the leftovers are stopped. (The file here is in the format of before, with the
    service-name fallback: rewritten, the fallback is gone.)"""
    scene.add(NEW, NEW_ID)
    scene.file.write_text(f"to {NEW}:{PORT} registry:{PORT}\n")
    scene.fake.on("up", "--dry-run", out=dry_run(NEW, "Running"))
    result = scene.switch().run()
    assert [s for s, _named in scene.log] == [
        "ps",
        "caddy reload",
        f"stop {OLD_ID}",
        f"rm {OLD_ID}",
        "dry-run",
    ]
    assert scene.named_at("caddy reload") == [NEW]
    assert scene.file.read_text() == f"to {NEW}:{PORT}\n"
    assert scene.fake.find("docker", "stop") == [["docker", "stop", "--time", "20", OLD_ID]]
    assert scene.names() == [NEW]
    assert scene.upstream() == NEW
    assert (result["changed"], result["switched"], result["serving"]) == (True, False, NEW)
    assert result["removed"] == [OLD_ID]


def test_leftovers_are_removed_after_caddy_is_reloaded_and_before_a_planned_switch(
    scene: Scene,
) -> None:
    scene.add(NEW, NEW_ID)
    scene.add("prpm-registry-3", "c0ffee000003", "exited")
    scene.point_at(NEW)
    scene.fake.on("up", "--dry-run", out=dry_run(NEW, "Recreate"))
    result = scene.switch().run()
    assert [s for s, _named in scene.log][:9] == [
        "ps",
        "caddy reload",
        f"stop {OLD_ID}",
        f"rm {OLD_ID}",
        "stop c0ffee000003",
        "rm c0ffee000003",
        "dry-run",
        "up --scale",
        "ps",
    ]
    assert scene.named_at("caddy reload") == [NEW, "prpm-registry-3"]
    # Compose numbers the new container after the highest left: prpm-registry-3 again.
    assert (result["from"], result["to"]) == (NEW, "prpm-registry-3")
    assert [argv[-1] for argv in scene.fake.find("docker", "inspect")] == ["c0ffee000003"]
    assert result["removed"] == [OLD_ID, "c0ffee000003", NEW_ID]
    assert scene.names() == ["prpm-registry-3"]
    assert scene.upstream() == "prpm-registry-3"


def test_without_an_upstream_file_the_oldest_running_container_serves(scene: Scene) -> None:
    """Containers are ordered by their number (prpm-registry-9 before prpm-registry-10)."""
    scene.rows = []
    scene.add("prpm-registry-10", "c0ffee000010")
    scene.add("prpm-registry-9", "c0ffee000009")
    scene.file.unlink()
    scene.fake.on("up", "--dry-run", out=dry_run("prpm-registry-9", "Running"))
    result = scene.switch().run()
    assert (result["serving"], result["removed"]) == ("prpm-registry-9", ["c0ffee000010"])
    assert (result["changed"], result["switched"]) == (True, False)
    assert scene.file.read_text() == f"to prpm-registry-9:{PORT}\n"
    # Caddy is pointed at the serving container first, then the leftover goes, then the plan.
    assert [s for s, _named in scene.log] == [
        "ps",
        "caddy reload",
        "stop c0ffee000010",
        "rm c0ffee000010",
        "dry-run",
    ]
    assert scene.named_at("caddy reload") == ["prpm-registry-9"]


# --- A stale upstream file ----------------------------------------------------------------------
def test_a_stale_upstream_is_repointed_before_the_candidate_starts(scene: Scene) -> None:
    """After a manual compose down/up the file names prpm-registry-2 while prpm-registry-1
    serves, and Compose names the candidate prpm-registry-2 (highest number + 1): unless Caddy is
    repointed first, its upstream is the unvetted candidate as soon as that answers, and after a
    candidate failure the file still names it, not the old one."""
    scene.point_at(NEW)  # the container of an earlier switch, gone after compose down/up
    scene.states[NEW_ID] = [UNHEALTHY]
    with pytest.raises(CandidateFailed):
        scene.switch().run()
    assert scene.named_at("up --scale") == [OLD]
    assert scene.named_at("inspect") == [OLD]
    assert scene.upstream() == OLD
    assert [s for s, _named in scene.log][:3] == ["ps", "caddy reload", "dry-run"]
    assert scene.named_at("caddy reload") == [OLD]
    assert "caddy reload" not in scene.after("up --scale")


def test_a_file_with_the_service_name_fallback_is_rewritten_before_the_candidate_starts(
    scene: Scene,
) -> None:
    scene.file.write_text(f"to {OLD}:{PORT} registry:{PORT}\n")
    scene.states[NEW_ID] = [UNHEALTHY]
    with pytest.raises(CandidateFailed):
        scene.switch().run()
    assert scene.file.read_text() == f"to {OLD}:{PORT}\n"
    assert scene.steps().index("caddy reload") < scene.steps().index("up --scale")
