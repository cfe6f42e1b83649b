"""The state one simulator owns (skills, faults, prompt cache, request counts) and its ``/sim`` control
surface, through which tests and demos inject faults, change skills and read what was served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streams.providers.sim.behaviour import Behaviour, task_type_of
from streams.providers.sim.config import SimConfig
from streams.providers.sim.faults import FaultBook, FaultError, FaultSpec
from streams.providers.sim.usage import PromptCache


@dataclass
class Stats:
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> dialect -> count
    by_dialect: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    total: int = 0

    def count(self, model: str, dialect: str, stream: bool) -> None:
        per_model = self.requests.setdefault(model, {})
        per_model[dialect] = per_model.get(dialect, 0) + 1
        self.by_dialect[dialect] = self.by_dialect.get(dialect, 0) + 1
        self.total += 1
        self.streams += stream


class SimState:
    """Everything one simulator instance owns (no module globals: several can run side by side)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.behaviour = Behaviour(config)
        self.faults = FaultBook(config.faults, seed=config.seed)
        self.cache = PromptCache()
        self.stats = Stats()


class Control:
    """GET/POST/DELETE /sim/faults, GET/POST /sim/skill, GET /sim/outcome, GET/DELETE /sim/stats."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def faults(self, request: Request) -> Response:
        book = self.state.faults
        if request.method == "DELETE":
            cleared = len(book.active())
            book.clear()
            return JSONResponse({"cleared": cleared})
        if request.method == "POST":
            try:
                data = await request.json()
                items = data if isinstance(data, list) else [data]
                specs = [FaultSpec.from_dict(item) for item in items]
            except (ValueError, FaultError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            for spec in specs:
                book.add(spec)
        return JSONResponse({"faults": [f.to_dict() for f in book.active()]})

    async def skill(self, request: Request) -> Response:
        behaviour = self.state.behaviour
        if request.method == "POST":
            try:
                data = await request.json()
                task_type = data.get("task_type")
                if task_type is not None and not isinstance(task_type, str):
                    raise TypeError("task_type must be a string")
                model = str(data["model"])
                behaviour.set_skill(model, float(data["skill"]), task_type)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return JSONResponse(
                    {"error": f"expected {{'model': str, 'skill': 0..1, 'task_type'?: str}}: {exc}"}, status_code=400
                )
            body: dict[str, Any] = {"model": model, "skill": behaviour.skill_of(model, task_type)}
            if task_type:
                body["task_type"] = task_type
            return JSONResponse(body)
        return JSONResponse(
            {
                "models": behaviour.skills,
                "task_skills": behaviour.task_skills,
                "default_skill": self.state.config.default_skill,
            }
        )

    async def outcome(self, request: Request) -> Response:
        model, task = request.query_params.get("model"), request.query_params.get("task")
        if not model or not task:
            return JSONResponse({"error": "query parameters 'model' and 'task' are required"}, status_code=400)
        behaviour = self.state.behaviour
        task_type = request.query_params.get("task_type") or task_type_of(task)
        body: dict[str, Any] = {
            "model": model,
            "task": task,
            "skill": behaviour.skill_of(model, task_type),
            "success": behaviour.outcome(model, task, task_type),
        }
        if task_type:
            body["task_type"] = task_type
        return JSONResponse(body)

    async def stats(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.stats = Stats()
            self.state.faults.injected.clear()
            return JSONResponse({"reset": True})
        s = self.state.stats
        return JSONResponse(
            {
                "total": s.total,
                "streams": s.streams,
                "requests": s.requests,
                "by_dialect": s.by_dialect,
                "faults_injected": self.state.faults.injected,
            }
        )
