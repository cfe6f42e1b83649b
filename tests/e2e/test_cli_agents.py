"""The real Claude Code, Codex and gemini-cli, run headless through the gateway to the simulated provider.

Each test gives the agent a task that needs one tool call round trip: the simulator is scripted (with
an ``x-sim-script`` header, which the gateway forwards to simulated providers) to call the agent's
shell tool with ``touch <marker>`` first; after the tool result it answers with text that starts with
"Done: checked the tool output." (the simulator says so only when the request it got ends in a tool
result, so the sentence proves the second request carried the tool result through any translation).
Every CLI runs once per provider dialect: the same dialect as the client and the others. gemini-cli
edits a file (its ``replace`` tool, scripted) and answers a plain prompt on the default config, where
its own model names (``gemini-2.5-pro``...) are routed. Codex edits a file with its freeform
``apply_patch`` (a custom tool), straight to the simulator and through each other provider dialect,
given model metadata by the README's ``model_catalog_json`` recipe.

What a user would see is what is checked: the CLI exits 0, reports the simulator's final answer, the
marker file exists (the tool really ran), the gateway's /metrics count the requests on the intended
model and provider, and the simulator's /sim/stats saw them in the provider's dialect.

The CLIs come from ``npm ci`` (package.json; ``./dev test`` runs it); without them the tests skip, and fail in CI.
Only loopback is used: the service runs on the embedded default (simulated providers, no keys).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _service import DEFAULT_CONFIG, Service, child_env, get_json, running_service

from tests._support import missing

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin"
CLAUDE = BIN / "claude"
CODEX = BIN / "codex"
GEMINI = BIN / "gemini"
CLI_TIMEOUT_S = 120
START_TIMEOUT_S = 90
FINAL_ANSWER = "Done: checked the tool output."


@dataclass(frozen=True)
class Target:
    """A configured model and where the gateway must send it (``streams/default_config.yaml``)."""

    model: str
    provider: str
    dialect: str  # the provider's dialect, as the simulator counts it


ANTHROPIC = Target("claude-opus-sim", "sim-anthropic", "anthropic_messages")
ANTHROPIC_SMALL = Target("claude-haiku-sim", "sim-anthropic", "anthropic_messages")
CHAT = Target("gpt-mini-sim", "sim-openai", "openai_chat")
CHAT_CHEAP = Target("deepseek-sim", "sim-openai", "openai_chat")
RESPONSES = Target("gpt-frontier-sim", "sim-responses", "openai_responses")
GEMINI_FLASH = Target("gemini-flash-sim", "sim-gemini", "gemini")


# -- the CLIs --------------------------------------------------------------------------------------------
@pytest.fixture
def claude() -> Path:
    if not CLAUDE.exists():
        missing(f"Claude Code is not installed at {CLAUDE} (run `npm ci` in {ROOT})")
    return CLAUDE


@pytest.fixture
def codex() -> Path:
    if not CODEX.exists():
        missing(f"Codex is not installed at {CODEX} (run `npm ci` in {ROOT})")
    if shutil.which("node") is None:
        missing("the Codex launcher (codex.js) needs node on PATH")
    return CODEX


@pytest.fixture
def gemini() -> Path:
    if not GEMINI.exists():
        missing(f"gemini-cli is not installed at {GEMINI} (run `npm ci` in {ROOT})")
    if shutil.which("node") is None:
        missing("gemini-cli needs node on PATH")
    return GEMINI


# -- the service ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One ``weave-router up`` (embedded broker, chDB, simulator) serving every test of the module."""
    if not (CLAUDE.exists() or CODEX.exists() or GEMINI.exists()):
        missing(f"none of {CLAUDE}, {CODEX}, {GEMINI} is installed (run `npm ci` in {ROOT})")
    with running_service(tmp_path_factory.mktemp("weave-e2e"), START_TIMEOUT_S) as service:
        yield service


# -- what the gateway and the simulator counted --------------------------------------------------------
_SAMPLE = re.compile(r"^weave_router_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def gateway_requests(service: Service) -> dict[tuple[str, str, str, str], float]:
    """``weave_router_requests_total`` by (client dialect, model, provider, status)."""
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str, str, str], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(1)))
            key = (labels.get("dialect", ""), labels.get("model", ""), labels.get("provider", ""), labels.get("status", ""))
            out[key] = float(m.group(2))
    return out


def sim_requests(service: Service) -> dict[tuple[str, str], int]:
    """Requests the simulator received, by (model, dialect)."""
    stats = get_json(f"{service.sim_url}/sim/stats")
    return {(model, dialect): n for model, per in stats["requests"].items() for dialect, n in per.items()}


def _delta(after: dict[Any, float], before: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


class Counts:
    """Snapshot both counters before a CLI runs; ``check`` asserts what the run added."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.gateway = gateway_requests(service)
        self.sim = sim_requests(service)

    def check(self, client_dialect: str, target: Target) -> None:
        gateway = _delta(gateway_requests(self.service), self.gateway)
        sim = _delta(sim_requests(self.service), self.sim)
        served = gateway.get((client_dialect, target.model, target.provider, "200"), 0)
        # At least the tool call turn and the turn after the tool result, all on the intended model.
        assert served >= 2, f"gateway requests by (dialect, model, provider, status): {gateway}"
        assert set(gateway) == {(client_dialect, target.model, target.provider, "200")}, gateway
        # The simulator got every one of them, in the provider's dialect (translated when it differs).
        assert sim == {(target.model, target.dialect): served}, sim


def _script(tool: str, arguments: dict[str, Any]) -> str:
    """The ``x-sim-script`` header: call ``tool`` while the last message is not a tool result."""
    return json.dumps({"tool_calls": [{"name": tool, "arguments": arguments}]}, separators=(",", ":"))


def _failure(proc: subprocess.CompletedProcess[str], service: Service) -> str:
    log = service.log.read_text()[-4000:]
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}\nservice log:\n{log}"


# -- Claude Code (Anthropic Messages) ------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        pytest.param(ANTHROPIC, id="same-dialect-anthropic"),
        pytest.param(CHAT, id="cross-dialect-chat"),
        pytest.param(RESPONSES, id="cross-dialect-responses"),
    ],
)
def test_claude_code_completes_a_tool_round_trip(
    claude: Path, service: Service, tmp_path: Path, target: Target
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    marker = f"weave-e2e-{target.model}"
    script = _script("Bash", {"command": f"touch {marker}", "description": "Create the marker file"})
    env = {
        **child_env(),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": service.url,
        "ANTHROPIC_API_KEY": "x",
        "ANTHROPIC_CUSTOM_HEADERS": f"x-sim-script: {script}",
        # Background requests (if any) go to the same model, so every request is accounted for.
        "ANTHROPIC_SMALL_FAST_MODEL": target.model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": target.model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    counts = Counts(service)
    proc = subprocess.run(
        [str(claude), "-p", f"Create an empty file named {marker} in the current directory.",
         "--output-format", "json", "--model", target.model, "--allowedTools", "Bash(touch:*)"],
        env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, _failure(proc, service)
    result = json.loads(proc.stdout)
    assert result["subtype"] == "success" and result["is_error"] is False, result
    assert result["num_turns"] >= 2, result
    assert result["permission_denials"] == [], result
    assert result["result"].startswith(FINAL_ANSWER), result["result"]
    assert target.model in result["modelUsage"], result["modelUsage"]
    assert (work / marker).exists(), f"the Bash tool did not run: {sorted(p.name for p in work.iterdir())}"
    counts.check("anthropic_messages", target)


# -- Codex (OpenAI Responses) ---------------------------------------------------------------------------
def _codex_config(
    service: Service, model: str, script: str, base_url: str | None = None, catalog: Path | None = None
) -> str:
    # json.dumps gives a valid TOML basic string (same escapes).
    base_url = base_url or service.url + "/v1"
    return (
        f"model = {json.dumps(model)}\n"
        + (f"model_catalog_json = {json.dumps(str(catalog))}\n" if catalog is not None else "")
        + 'model_provider = "weave"\n\n'
        "[model_providers.weave]\n"
        'name = "Weave Router"\n'
        f"base_url = {json.dumps(base_url)}\n"
        'wire_api = "responses"\n'
        'env_key = "WEAVE_KEY"\n'
        f'http_headers = {{ "x-sim-script" = {json.dumps(script)} }}\n\n'
        # No telemetry export and no plugin sync: offline, each waits ~5 s for a DNS failure at exit.
        # (Keys checked with `codex exec --strict-config` on the pinned 0.169.0.)
        "[analytics]\n"
        "enabled = false\n\n"
        "[features]\n"
        "plugins = false\n"
        "apps = false\n"
        "remote_plugin = false\n"
    )


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(RESPONSES, id="same-dialect-responses"),
        pytest.param(ANTHROPIC_SMALL, id="cross-dialect-anthropic"),
        pytest.param(CHAT_CHEAP, id="cross-dialect-chat"),
    ],
)
def test_codex_completes_a_tool_round_trip(codex: Path, service: Service, tmp_path: Path, target: Target) -> None:
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir()
    marker = f"weave-e2e-{target.model}"
    script = _script("exec_command", {"cmd": f"touch {marker}"})
    (codex_home / "config.toml").write_text(_codex_config(service, target.model, script))
    env = {**child_env(), "HOME": str(home), "CODEX_HOME": str(codex_home), "WEAVE_KEY": "x"}
    counts = Counts(service)
    # The sandbox needs user namespaces, which CI containers often lack; the only command the scripted
    # model runs is the `touch` above, inside this test's tmp dir.
    proc = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
         "--color", "never", "--json", f"Create an empty file named {marker} in the current directory."],
        env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, _failure(proc, service)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    commands = [i for i in items if i.get("type") == "command_execution"]
    assert [(c["exit_code"], marker in c["command"]) for c in commands] == [(0, True)], commands
    messages = [i["text"] for i in items if i.get("type") == "agent_message"]
    assert messages and messages[-1].startswith(FINAL_ANSWER), messages
    assert any(e.get("type") == "turn.completed" for e in events), events
    assert not any(e.get("type") in ("turn.failed", "error") for e in events), events
    assert (work / marker).exists(), f"the shell tool did not run: {sorted(p.name for p in work.iterdir())}"
    counts.check("openai_responses", target)


def test_codex_applies_the_simulators_apply_patch(codex: Path, service: Service, tmp_path: Path) -> None:
    """Straight to the simulator, with a model name Codex knows (so it offers its custom ``apply_patch``
    tool): the scripted edit comes back as a ``custom_tool_call`` patch that Codex applies on disk."""
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir()
    (work / "hello.py").write_text("print('hello')\n")
    script = json.dumps({"edit": {"path": "hello.py", "old": "print('hello')", "new": "print('bye')"}})
    (codex_home / "config.toml").write_text(_codex_config(service, "gpt-5.5", script, service.sim_url + "/v1"))
    env = {**child_env(), "HOME": str(home), "CODEX_HOME": str(codex_home), "WEAVE_KEY": "x"}
    proc = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
         "--color", "never", "--json", "Change hello.py so that it prints bye."],
        env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, _failure(proc, service)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    changes = [i for i in items if i.get("type") == "file_change"]
    assert [(c["status"], [ch["kind"] for ch in c["changes"]]) for c in changes] == [("completed", ["update"])], items
    assert (work / "hello.py").read_text() == "print('bye')\n"
    messages = [i["text"] for i in items if i.get("type") == "agent_message"]
    assert messages and messages[-1].startswith(FINAL_ANSWER), messages


def _codex_catalog(codex: Path, env: dict[str, str], slug: str, path: Path) -> Path:
    """The README's recipe: Codex's bundled model catalog plus ``slug`` described as gpt-5.5 is, so
    Codex knows the gateway's model name and offers its freeform ``apply_patch`` tool for it."""
    proc = subprocess.run(
        [str(codex), "debug", "models", "--bundled"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=CLI_TIMEOUT_S, check=True,
    )  # fmt: skip
    catalog = json.loads(proc.stdout)
    known = next(m for m in catalog["models"] if m["slug"] == "gpt-5.5")
    assert known["apply_patch_tool_type"] == "freeform", known["apply_patch_tool_type"]
    catalog["models"].append({**known, "slug": slug, "display_name": slug, "upgrade": None})
    path.write_text(json.dumps(catalog))
    return path


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(ANTHROPIC_SMALL, id="cross-dialect-anthropic"),
        pytest.param(CHAT_CHEAP, id="cross-dialect-chat"),
        pytest.param(GEMINI_FLASH, id="cross-dialect-gemini"),
    ],
)
def test_codex_edits_a_file_with_apply_patch_through_a_cross_dialect_route(
    codex: Path, service: Service, tmp_path: Path, target: Target
) -> None:
    """Codex offers its custom ``apply_patch`` (the catalog gives the model name metadata); the provider
    gets it as a function of one string and calls it; Codex gets a ``custom_tool_call`` and patches."""
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir()
    (work / "hello.py").write_text("print('hello')\n")
    env = {**child_env(), "HOME": str(home), "CODEX_HOME": str(codex_home), "WEAVE_KEY": "x"}
    catalog = _codex_catalog(codex, env, target.model, codex_home / "weave-models.json")
    script = json.dumps({"edit": {"path": "hello.py", "old": "print('hello')", "new": "print('bye')"}})
    (codex_home / "config.toml").write_text(_codex_config(service, target.model, script, catalog=catalog))
    counts = Counts(service)
    proc = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
         "--color", "never", "--json", "Change hello.py so that it prints bye."],
        env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, _failure(proc, service)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    changes = [i for i in items if i.get("type") == "file_change"]
    assert [(c["status"], [ch["kind"] for ch in c["changes"]]) for c in changes] == [("completed", ["update"])], items
    assert not [i for i in items if i.get("type") == "command_execution"], items  # not through the shell
    assert (work / "hello.py").read_text() == "print('bye')\n"
    messages = [i["text"] for i in items if i.get("type") == "agent_message"]
    assert messages and messages[-1].startswith(FINAL_ANSWER), messages
    assert not any(e.get("type") in ("turn.failed", "error") for e in events), events
    counts.check("openai_responses", target)


def test_codex_on_the_readme_config_edits_with_apply_patch_on_router_auto(
    codex: Path, service: Service, tmp_path: Path
) -> None:
    """The README's Codex setup as it is: ``router/auto`` (whichever model the router picks) with the
    catalog, and an unscripted edit request: Codex patches the file with ``apply_patch``."""
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir()
    (work / "hello.py").write_text("print('hello')\n")
    env = {**child_env(), "HOME": str(home), "CODEX_HOME": str(codex_home), "WEAVE_KEY": "x"}
    catalog = _codex_catalog(codex, env, "router/auto", codex_home / "weave-models.json")
    (codex_home / "config.toml").write_text(_codex_config(service, "router/auto", "{}", catalog=catalog))
    proc = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
         "--color", "never", "--json", "Edit hello.py so that it prints bye."],
        env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, _failure(proc, service)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    changes = [i for i in items if i.get("type") == "file_change"]
    assert [c["status"] for c in changes] == ["completed"], items
    assert (work / "hello.py").read_text() != "print('hello')\n"


# -- gemini-cli (Gemini API) ------------------------------------------------------------------------------
def _gemini_run(gemini: Path, service: Service, tmp_path: Path, prompt: str, *args: str,
                script: dict[str, Any] | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
    """gemini-cli headless (``-p``, JSON output) in a fresh home and work dir; returns (process, work dir)."""
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "telemetry": {"enabled": False},
                "privacy": {"usageStatisticsEnabled": False}}  # fmt: skip
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = {**child_env(), "HOME": str(home), "GOOGLE_GEMINI_BASE_URL": service.url, "GEMINI_API_KEY": "x",
           "GEMINI_CLI_TRUST_WORKSPACE": "true"}  # fmt: skip
    env = {k: v for k, v in env.items() if not k.startswith(("GEMINI_CLI_CUSTOM", "GOOGLE_GENAI", "GOOGLE_CLOUD"))}
    if script is not None:
        # gemini-cli splits its custom headers on commas: the script travels base64-encoded.
        encoded = base64.urlsafe_b64encode(json.dumps(script).encode()).decode()
        env["GEMINI_CLI_CUSTOM_HEADERS"] = f"x-sim-script: base64:{encoded}"
    (work / "hello.py").write_text("print('hello')\n")
    proc = subprocess.run(
        [str(gemini), "-p", prompt, "--output-format", "json", *args],
        env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    return proc, work


def test_gemini_cli_answers_a_plain_prompt_on_the_default_config(
    gemini: Path, service: Service, tmp_path: Path
) -> None:
    """No model named: gemini-cli uses its own default (a ``gemini-*`` name) and its model classifier
    (a structured-output request that must come back as JSON); the router serves both."""
    counts = Counts(service)
    proc, _ = _gemini_run(gemini, service, tmp_path, "say hello")
    assert proc.returncode == 0, _failure(proc, service)
    result = json.loads(proc.stdout)
    assert result["response"].strip(), result
    assert "error" not in result, result
    served = _delta(gateway_requests(service), counts.gateway)
    assert served and all(d == "gemini" and status == "200" for d, _, _, status in served), served
    # gemini-cli reports the routed model (the answers' modelVersion), one of the configured ones.
    configured = {m["name"] for m in yaml.safe_load(DEFAULT_CONFIG.read_text())["models"]}
    assert result["stats"]["models"] and set(result["stats"]["models"]) <= configured, result["stats"]["models"]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(GEMINI_FLASH, id="same-dialect-gemini"),
        pytest.param(ANTHROPIC, id="cross-dialect-anthropic"),
        pytest.param(CHAT, id="cross-dialect-chat"),
        pytest.param(RESPONSES, id="cross-dialect-responses"),
    ],
)
def test_gemini_cli_edits_a_file(gemini: Path, service: Service, tmp_path: Path, target: Target) -> None:
    """The scripted model calls gemini-cli's ``replace`` tool; gemini-cli edits the file on disk, sends
    the function response back (no call ids in Gemini) and prints the model's final answer."""
    script = {"edit": {"path": "hello.py", "old": "print('hello')", "new": "print('bye')"}}
    counts = Counts(service)
    proc, work = _gemini_run(gemini, service, tmp_path, "Change hello.py so that it prints bye.",
                             "--model", target.model, "--yolo", script=script)  # fmt: skip
    assert proc.returncode == 0, _failure(proc, service)
    result = json.loads(proc.stdout)
    assert (work / "hello.py").read_text() == "print('bye')\n", result
    assert result["response"].startswith(FINAL_ANSWER), result
    tools = result["stats"]["tools"]
    assert tools["totalSuccess"] == 1 and tools["totalFail"] == 0, tools
    assert list(result["stats"]["models"]) == [target.model], result["stats"]["models"]
    counts.check("gemini", target)
