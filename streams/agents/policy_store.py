"""The learner's own partial policy on local disk, so learning survives a broker that forgets.

The embedded broker keeps router.policy in memory only: without this, every restart of ``up`` starts
the learned policy over at version 0. Each snapshot the learner publishes is also written here (the
same Avro single-object bytes, replaced atomically, 0600); at start the learner resumes from the
newer of the broker's copy and this one, and publishes it again so every follower gets it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from streams.events.codec import DecodeError, EventCodec

log = logging.getLogger("weave.policy")


def _path(data_dir: str | os.PathLike[str], topic: str, policy: str, learner_id: str) -> Path:
    # Named by topic too: a stack on other topic names (tests, replays) has a policy of its own.
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{topic}-{policy}-{learner_id}")
    return Path(data_dir) / "policy" / f"{safe}.snapshot"


def save_partial(data_dir: str | os.PathLike[str], topic: str, event: dict[str, Any], codec: EventCodec) -> None:
    """Write ``event`` (a PolicySnapshot) as this learner's local copy; a failure is logged, not raised."""
    path = _path(data_dir, topic, str(event["policy"]), str(event["learner_id"]))
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, codec.encode("PolicySnapshot", event))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot keep the policy snapshot in %s: %s", path, exc)


def load_partial(data_dir: str | os.PathLike[str], topic: str, policy: str, learner_id: str,
                 codec: EventCodec) -> dict[str, Any] | None:
    """This learner's local copy, or None (missing or unreadable: learning starts over, with a log line)."""
    path = _path(data_dir, topic, policy, learner_id)
    if not path.exists():
        return None
    try:
        name, event = codec.decode(path.read_bytes())
    except (DecodeError, OSError, ValueError) as exc:
        log.warning("ignoring the unreadable policy snapshot %s: %s", path, exc)
        return None
    return event if name == "PolicySnapshot" else None
