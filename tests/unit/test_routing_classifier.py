"""Task-type classifiers: accuracy on the labelled set (tests/data/task_labels.jsonl), one interface.

Run with ``-s`` to see the accuracies printed.
"""

from __future__ import annotations

import random
from pathlib import Path

from streams.routing.classifier import EmbeddingClassifier, RuleClassifier, TaskClassifier, accuracy, load_labels
from streams.routing.embedding import EmbeddingUnavailable, HashingEmbedder, load_embedder
from streams.routing.features import TASK_TYPES, Features
from tests._support import missing

LABELS = Path(__file__).resolve().parents[1] / "data" / "task_labels.jsonl"


def split(seed: int = 7, train: float = 0.6) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Stratified split so every task type is in both halves."""
    rows = load_labels(LABELS)
    rnd = random.Random(seed)
    tr, te = [], []
    for label in TASK_TYPES:
        group = [r for r in rows if r[1] == label]
        rnd.shuffle(group)
        k = int(len(group) * train)
        tr += group[:k]
        te += group[k:]
    return tr, te


def test_labelled_set_covers_every_task_type() -> None:
    rows = load_labels(LABELS)
    assert len(rows) >= 140
    assert {label for _, label in rows} == set(TASK_TYPES)


def test_rule_classifier_accuracy() -> None:
    clf = RuleClassifier()
    assert isinstance(clf, TaskClassifier)
    acc = accuracy(clf, load_labels(LABELS))
    print(f"\nrules accuracy (whole set, in-sample for the keyword lists): {acc:.3f}")
    assert acc >= 0.85


def test_rule_classifier_reads_stage_and_hints() -> None:
    clf = RuleClassifier()
    stuck = Features(stage="failing_tests", tools_offered=5)
    assert clf.predict_one("continue", stuck)[0] == "debugging"
    assert clf.predict_one("anything", Features(background=True))[0] == "background"
    label, conf = clf.predict_one("Write unit tests for the parser", None)
    assert label == "test_writing" and conf > 0.5


def test_embedding_classifier_learns_with_the_hashing_embedder() -> None:
    train, test = split()
    clf = EmbeddingClassifier(HashingEmbedder()).fit(train)
    acc = accuracy(clf, test)
    print(f"\nembedding (hashing) accuracy on held-out split: {acc:.3f}")
    assert acc > 0.45  # far above chance (1/7) with no model at all
    # learn_one moves the centroid: a new phrasing becomes predictable after one example.
    before = clf.predict_one("zorblax the quux frobnicator", None)[0]
    for _ in range(3):
        clf.learn_one("zorblax the quux frobnicator", "planning" if before != "planning" else "search")
    assert clf.predict_one("zorblax the quux frobnicator", None)[0] != before


def test_empty_embedding_classifier_falls_back_to_rules() -> None:
    clf = EmbeddingClassifier(HashingEmbedder(), fallback=RuleClassifier())
    assert clf.predict_one("Write unit tests for the parser", None)[0] == "test_writing"


def test_minilm_embedding_classifier_accuracy() -> None:
    try:
        embedder = load_embedder("auto")
    except EmbeddingUnavailable as exc:
        missing(f"no packaged MiniLM installed: {exc}")
    train, test = split()
    clf = EmbeddingClassifier(embedder).fit(train)
    acc = accuracy(clf, test)
    rules = accuracy(RuleClassifier(), test)
    print(f"\nembedding ({embedder.name}) accuracy on held-out split: {acc:.3f} (rules on the same: {rules:.3f})")
    assert acc >= 0.7
