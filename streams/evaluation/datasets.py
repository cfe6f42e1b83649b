"""Outcome matrices: for each task and model, the success (0/1 or a score) and what it cost.

Format of a folder (see the data README): ``outcomes.csv`` with ``task_id,model,success,cost_usd``
and an optional ``calls`` column; ``tasks.jsonl`` with ``task_id``, ``prompt``, ``features``;
``META.json`` optional. Any folder in this format works: nothing here knows a task or a model.
"""

from __future__ import annotations

import csv
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streams.routing.features import text_features


@dataclass(slots=True)
class Task:
    task_id: str
    prompt: str = ""
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class OutcomeMatrix:
    """Dense ``tasks x models`` arrays; a missing cell counts as a failure at the model's mean cost."""

    name: str
    tasks: list[Task]
    models: list[str]
    success: np.ndarray  # shape (tasks, models), values in [0, 1]
    cost: np.ndarray  # shape (tasks, models), USD
    calls: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def mean_cost(self) -> dict[str, float]:
        """Mean cost per task of each model: the catalogue price a router would know up front."""
        return {m: float(c) for m, c in zip(self.models, self.cost.mean(axis=0), strict=True)}

    def mean_success(self) -> dict[str, float]:
        return {m: float(s) for m, s in zip(self.models, self.success.mean(axis=0), strict=True)}


def load_dataset(path: str | Path) -> OutcomeMatrix:
    root = Path(path)
    outcomes = root / "outcomes.csv"
    if not outcomes.is_file():
        raise FileNotFoundError(f"{root}: no outcomes.csv (expected task_id,model,success,cost_usd[,calls])")
    rows: list[tuple[str, str, float, float, float | None]] = []
    with outcomes.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"task_id", "model", "success", "cost_usd"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{outcomes}: missing columns {sorted(missing)}")
        for r in reader:
            s = float(r["success"])
            if math.isnan(s):
                raise ValueError(f"{outcomes}: success is not a number: {r['success']!r}")
            # Graded scores can stray slightly outside [0, 1] (penalised answers): clip, not reject.
            s = min(1.0, max(0.0, s))
            calls = r.get("calls")
            rows.append((r["task_id"], r["model"], s, float(r["cost_usd"]), float(calls) if calls else None))

    tasks_by_id: dict[str, Task] = {}
    tasks_file = root / "tasks.jsonl"
    if tasks_file.is_file():
        with tasks_file.open() as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    tid = str(obj["task_id"])
                    tasks_by_id[tid] = Task(tid, str(obj.get("prompt") or ""), dict(obj.get("features") or {}))

    task_ids = list(dict.fromkeys(r[0] for r in rows))
    models = list(dict.fromkeys(r[1] for r in rows))
    ti = {t: i for i, t in enumerate(task_ids)}
    mi = {m: i for i, m in enumerate(models)}
    success = np.full((len(task_ids), len(models)), np.nan)
    cost = np.full_like(success, np.nan)
    has_calls = any(r[4] is not None for r in rows)
    calls = np.zeros_like(success) if has_calls else None
    for tid, model, s, c, n in rows:
        success[ti[tid], mi[model]] = s
        cost[ti[tid], mi[model]] = c
        if calls is not None and n is not None:
            calls[ti[tid], mi[model]] = n
    # A missing cell: failed, at that model's mean cost (a router would have paid for the attempt).
    col_cost = np.nanmean(cost, axis=0)
    holes = np.isnan(success)
    success[holes] = 0.0
    cost[holes] = np.broadcast_to(col_cost, cost.shape)[holes]

    meta: dict[str, Any] = {}
    if (root / "META.json").is_file():
        meta = json.loads((root / "META.json").read_text())
    tasks = [tasks_by_id.get(t, Task(t)) for t in task_ids]
    return OutcomeMatrix(root.name, tasks, models, success, cost, calls, meta)


_WORD = re.compile(r"[a-z0-9_]+")


def task_context(task: Task, *, buckets: int = 16) -> dict[str, float]:
    """A generic context for one task: the prompt's text features (as the router computes them for a
    request's current turn), a hashed bag of words, and the task's own features.

    Numeric features keep their value; strings become ``key=value`` indicators (category, repo,
    difficulty ...). Word counts go into ``buckets`` hashed slots so the context stays small.
    """
    ctx: dict[str, float] = text_features(task.prompt)  # the router's own text features
    words = _WORD.findall(task.prompt.lower())
    if words:
        for w in words:
            key = f"bow{zlib.crc32(w.encode()) % buckets}"
            ctx[key] = ctx.get(key, 0.0) + 1.0 / len(words)
        ctx["prompt_words"] = float(len(words))
    for k, v in task.features.items():
        if isinstance(v, bool):
            ctx[f"{k}"] = float(v)
        elif isinstance(v, int | float):
            ctx[k] = float(v)
        elif v is not None:
            ctx[f"{k}={v}"] = 1.0
    return ctx
