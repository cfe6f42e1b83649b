"""Task-type classifiers behind one interface: rules by default, embeddings when configured.

Task types: planning, implementation, test_writing, debugging, search, chat, background. A classifier
reads the user's latest words plus the request's features (the agent's stage and tools say a lot:
an agent re-running failing tests is debugging whatever the first prompt said).
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from streams.routing.features import TASK_TYPES, Features

if TYPE_CHECKING:
    import numpy as np

    from streams.routing.embedding import Embedder


@runtime_checkable
class TaskClassifier(Protocol):
    def predict_one(self, text: str, features: Features | None) -> tuple[str, float]: ...

    def learn_one(self, text: str, label: str) -> None: ...


# (pattern, weight) per task type; patterns are matched case-insensitively on word boundaries.
_KEYWORDS: dict[str, list[tuple[str, float]]] = {
    "planning": [
        (r"plan|planning|roadmap|strategy|approach|architecture|architect|design|high[- ]level|outline", 1.5),
        (r"trade-?offs?|proposal|rfc|how should (?:we|i)|what(?:'s| is) the best way|migration path", 1.5),
        (r"structure|organi[sz]e|break\b[^.]{0,30}\bdown|steps to|pros and cons|before (?:we|you) (?:start|code)", 1.0),
        (r"module boundaries|layering|in what order|which components", 1.5),
    ],
    "implementation": [
        (r"implement|add|create|build|make|write (?:a|an|the) (?:function|class|method|module|endpoint|script)", 1.2),
        (r"refactor|rename|change|update|convert|port|extend|support for|feature|endpoint|migrate", 1.0),
        (r"replace|remove|delete|move|extract|wire up|hook up|integrate|cli flag|option", 0.6),
    ],
    "test_writing": [
        (r"(?:write|add|create|cover)\b[^.?!]{0,40}\b(?:tests?|specs?)\b", 3.0),
        (r"unit tests?|test cases?|test coverage|coverage|test suite for|fixtures?|mocks?|property[- ]based", 1.6),
        (r"pytest|jest|vitest|unittest|rspec|spec file|assertions?|edge cases?", 0.8),
    ],
    "debugging": [
        (r"bug|fix|error|exception|traceback|stack ?trace|crash(?:es|ed)?|segfault|panic", 1.6),
        (r"fail(?:s|ed|ing|ure)?|broken|doesn'?t work|not working|wrong|regression|flaky|hangs?|leak", 1.3),
        (r"debug|investigate why|why (?:does|is|do)|unexpected|typeerror|keyerror|nullpointer|undefined", 1.0),
        (r"instead of|exits? (?:immediately )?with (?:code|status)|returns? (?:a )?[45]\d\d", 1.0),
    ],
    "search": [
        (r"where (?:is|are|do|does)|find (?:all|the|where|usages?)|search|look ?up|locate|grep|which files?", 1.6),
        (r"latest|current version|newer|newest|release notes|docs? for|documentation|changelog|today|news", 1.4),
        (r"which (?:module|file|class|function|package)s?|defined? (?:in|where)", 1.4),
        (r"list (?:all|every)|usages? of|references to|who calls|callers of", 1.2),
    ],
    "chat": [
        (r"^(?:hi|hello|hey|thanks|thank you|ok|okay|cool|great)\b", 2.0),
        (r"explain|what (?:is|are|does)|how does|difference between|meaning of|tell me about|can you describe", 1.3),
        (r"\?$", 0.4),
    ],
    "background": [
        (r"(?:generate|write|give) (?:a |the )?(?:short |concise )?(?:title|summary|commit message)", 2.5),
        (r"summari[sz]e (?:this|the) (?:conversation|session|thread)|new topic|isnewtopic|respond with only", 2.5),
        (r"one (?:word|line|sentence)|in \d+ words|json with (?:a|the) (?:title|topic)", 1.2),
        (r"title|summar(?:y|i[sz]e)|compact(?:ed|ion)?|progress note|slug", 1.2),
    ],
}


class RuleClassifier:
    """Keywords plus the agent's stage and tools; cheap (tens of microseconds) and deterministic."""

    name = "rules"

    def __init__(self, temperature: float = 1.5, memo_size: int = 1024) -> None:
        self._patterns = [
            (label, re.compile(r"\b(?:" + pattern + r")", re.IGNORECASE), weight)
            for label, items in _KEYWORDS.items()
            for pattern, weight in items
        ]
        self._temperature = temperature
        # An agent re-sends the same user text on every turn of its tool loop: memoise the keyword pass.
        self._memo: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._memo_size = memo_size

    def _keyword_scores(self, text: str) -> dict[str, float]:
        head = text[:600]
        hit = self._memo.get(head)
        if hit is not None:
            self._memo.move_to_end(head)
            return hit
        scores = dict.fromkeys(TASK_TYPES, 0.0)
        for label, rx, weight in self._patterns:
            if rx.search(head):
                scores[label] += weight
        self._memo[head] = scores
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return scores

    def scores(self, text: str, features: Features | None) -> dict[str, float]:
        scores = dict(self._keyword_scores(text))
        if features is not None:
            if features.background:
                scores["background"] += 4.0
            stage = features.stage
            if stage in ("failing_tests", "stuck"):
                scores["debugging"] += 2.5
            elif stage == "editing":
                scores["implementation"] += 0.8
            elif stage == "testing":
                scores["test_writing"] += 0.3
                scores["debugging"] += 0.3
            if features.tools_offered == 0 and features.n_code_blocks == 0 and len(text) < 200:
                scores["chat"] += 0.5
            if features.tools_offered and scores["implementation"] == 0 and max(scores.values()) == 0:
                scores["implementation"] += 0.3  # an agent with tools and no other signal is usually building
        if max(scores.values()) == 0:
            scores["chat"] = 0.5
        return scores

    def predict_one(self, text: str, features: Features | None) -> tuple[str, float]:
        scores = self.scores(text, features)
        label = max(scores, key=scores.__getitem__)
        # Softmax over the scores: a lone strong keyword hit gives high confidence, a tie gives ~0.5.
        t = self._temperature
        top = scores[label]
        z = sum(math.exp((s - top) / t) for s in scores.values())
        return label, round(1.0 / z, 4)

    def learn_one(self, text: str, label: str) -> None:
        """Rules do not learn; present so every classifier has one interface."""


class EmbeddingClassifier:
    """Nearest centroid over sentence embeddings, learning online (``learn_one`` moves a centroid).

    Until every task type has an example it falls back to ``fallback`` (the rule classifier) for a
    text whose nearest centroid is not confidently ahead. Embeddings are memoised per text because
    an agent re-sends the same user text on every turn of its tool loop.
    """

    name = "embedding"

    def __init__(
        self,
        embedder: Embedder,
        *,
        fallback: TaskClassifier | None = None,
        temperature: float = 0.05,
        cache_size: int = 4096,
    ) -> None:
        import numpy as np

        self._np = np
        self.embedder = embedder
        self.fallback = fallback
        self._temperature = temperature
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._centroids: np.ndarray | None = None
        self._labels: list[str] = []
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_np")
        state["_cache"] = OrderedDict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import numpy as np

        self.__dict__.update(state)
        self._np = np

    def _embed(self, text: str) -> np.ndarray:
        vec = self._cache.get(text)
        if vec is not None:
            self._cache.move_to_end(text)
            return vec
        vec = self.embedder.embed([text])[0]
        self._cache[text] = vec
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vec

    def fit(self, examples: Iterable[tuple[str, str]], batch: int = 64) -> EmbeddingClassifier:
        items = [(t, lab) for t, lab in examples if lab in TASK_TYPES]
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            vecs = self.embedder.embed([t for t, _ in chunk])
            for (_, label), vec in zip(chunk, vecs, strict=True):
                self._add(vec, label)
        self._rebuild()
        return self

    def _add(self, vec: np.ndarray, label: str) -> None:
        if label in self._sums:
            self._sums[label] = self._sums[label] + vec
            self._counts[label] += 1
        else:
            self._sums[label] = vec.astype("float32", copy=True)
            self._counts[label] = 1

    def _rebuild(self) -> None:
        np = self._np
        self._labels = sorted(self._sums)
        if not self._labels:
            self._centroids = None
            return
        c = np.stack([self._sums[label] / self._counts[label] for label in self._labels])
        c /= np.linalg.norm(c, axis=1, keepdims=True) + 1e-9
        self._centroids = c

    def learn_one(self, text: str, label: str) -> None:
        if label not in TASK_TYPES or not text:
            return
        self._add(self._embed(text), label)
        self._rebuild()

    def predict_one(self, text: str, features: Features | None) -> tuple[str, float]:
        if features is not None and features.background:
            return "background", 0.95
        if self._centroids is None or not text.strip():
            if self.fallback is not None:
                return self.fallback.predict_one(text, features)
            return "chat", 0.0
        np = self._np
        sims = self._centroids @ self._embed(text)
        z = np.exp((sims - sims.max()) / self._temperature)
        probs = z / z.sum()
        i = int(probs.argmax())
        label, conf = self._labels[i], float(probs[i])
        if self.fallback is not None and len(self._labels) < len(TASK_TYPES) and conf < 0.5:
            return self.fallback.predict_one(text, features)
        return label, round(conf, 4)


def load_labels(path: str | Path) -> list[tuple[str, str]]:
    """``{"text": ..., "label": ...}`` per line; unknown labels are an error (a typo would silently skew)."""
    examples = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["label"] not in TASK_TYPES:
            raise ValueError(f"{path}:{n}: unknown label {row['label']!r}")
        examples.append((row["text"], row["label"]))
    return examples


def accuracy(clf: TaskClassifier, examples: Iterable[tuple[str, str]]) -> float:
    rows = list(examples)
    if not rows:
        return 0.0
    hits = sum(1 for text, label in rows if clf.predict_one(text, None)[0] == label)
    return hits / len(rows)
