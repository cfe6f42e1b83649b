"""Configuration of the simulated provider.

A plain dataclass so tests and the CLI can build one in a line; ``from_settings`` maps the service's
``Settings`` (``sim:`` section plus per-model ``skill``) onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.providers.sim.faults import FaultSpec


@dataclass
class SimConfig:
    """How the simulated models behave. Every field has a demo-friendly default."""

    # Latency: time to first token, then a steady token rate (0 = as fast as possible).
    ttft_ms: float = 5.0
    tokens_per_s: float = 2000.0
    # Output tokens per streamed chunk (real APIs send 1-3 tokens per event).
    chunk_tokens: int = 1
    # Length of a text reply in tokens; each reply varies deterministically by +-25% around it.
    reply_tokens: int = 40
    # model name -> skill in [0, 1] (probability of solving a task); also the /v1/models listing. A
    # mapping {task_type: skill, "default": skill} makes the skill depend on the task type (see
    # ``behaviour.task_type_of``); task types without an entry use "default", else ``default_skill``.
    models: dict[str, float | dict[str, float]] = field(default_factory=dict)
    # Skill of a model not listed in ``models``.
    default_skill: float = 0.5
    # Reject models not listed in ``models`` with a 404 in the dialect's shape.
    strict_models: bool = False
    # Faults active from start (the same objects POST /sim/faults accepts).
    faults: list[FaultSpec] = field(default_factory=list)
    require_auth: bool = True
    # Default script applied to every request (the x-sim-script header overrides it per request).
    script: dict[str, Any] | None = None
    # Tool names the model prefers when the API forces a call (tool_choice required) that the prompt does
    # not ask for, in order (first match wins). Otherwise the prompt picks the tool (see ``intent``).
    preferred_tools: list[str] = field(
        default_factory=lambda: ["Bash", "exec_command", "shell", "Read", "read_file", "Grep", "Glob"]
    )
    # Say a short sentence before calling a tool, as real models usually do.
    tool_preamble: bool = True
    # Fraction of tool-calling turns (per request hash) that call two tools at once.
    parallel_rate: float = 0.0
    # Emit a thinking block when an Anthropic request enables extended thinking.
    thinking: bool = True
    # Seed of the fault-injection RNG (probabilistic faults are reproducible run to run).
    seed: int = 0
    # How long a ``timeout`` fault hangs by default, seconds.
    hang_s: float = 30.0

    def __post_init__(self) -> None:
        # Accept plain dicts for faults (YAML / JSON config).
        self.faults = [f if isinstance(f, FaultSpec) else FaultSpec.from_dict(f) for f in self.faults]
        for name, skill in self.models.items():
            per_task = skill.items() if isinstance(skill, Mapping) else [("", skill)]
            for task_type, value in per_task:
                if not 0.0 <= float(value) <= 1.0:
                    where = f"[{task_type!r}]" if task_type else ""
                    raise ValueError(f"sim.models[{name!r}]{where}: skill must be in [0, 1], got {value}")
        if self.tokens_per_s < 0 or self.ttft_ms < 0:
            raise ValueError("sim: ttft_ms and tokens_per_s must be >= 0")
        if self.chunk_tokens < 1 or self.reply_tokens < 1:
            raise ValueError("sim: chunk_tokens and reply_tokens must be >= 1")

    @classmethod
    def from_settings(cls, settings: Any) -> SimConfig:
        """Build from the service ``Settings``: the ``sim`` section and each model's ``skill``."""
        sim = settings.sim
        models: dict[str, float | dict[str, float]] = {}
        for m in settings.models:
            if m.skill is not None:
                models[m.name] = m.skill
                models.setdefault(m.upstream, m.skill)
        return cls(ttft_ms=sim.ttft_ms, tokens_per_s=sim.tokens_per_s, models=models)
