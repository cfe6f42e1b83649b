"""The shape of the bandit's model: its input vector and the cascade's count tables.

Every module of the bandit agrees on these numbers; a snapshot records ``HEAD`` so that a change of
layout is detected (and an older, shorter head upgraded) on restore.
"""

from __future__ import annotations

from streams.routing.features import TASK_TYPES

# Context keys the cascade reads (both optional): 1-based attempt number within the session, and
# how many attempts remain after this one.
ATTEMPT_KEY = "attempt"
ATTEMPTS_LEFT_KEY = "attempts_left"
# Layout of the model's input: [bias, attempt>=2, attempt>=3, attempt>=4, task type one-hot ...,
# hashed context ..., hashed text ...]. The cascade indicators sit outside the normalised hashed
# part so that "this is a retry" keeps its full weight however long the prompt is. So does the task
# type (the router's ``task=<type>`` keys), the feature routing depends on most: hashed, two task
# types shared a slot (crc32 % 32 puts task=implementation and task=debugging together) and the
# normalisation diluted it, so the bandit could not tell a debugging session from an implementation one.
CASCADE_SLOTS = 3
CASCADE_END = 1 + CASCADE_SLOTS
TASK_SLOTS: dict[str, int] = {"task=" + t: CASCADE_END + i for i, t in enumerate(TASK_TYPES)}
HEAD = CASCADE_END + len(TASK_SLOTS)
# Snapshots written before the task slots had this head (restore pads them with the prior).
LEGACY_HEAD = CASCADE_END
# Cascade statistics per attempt number (1-based) up to this one.
MAX_ATTEMPT_SLOTS = 16
# Retries are scored by a count model per (arm, attempt bucket); attempts past the last bucket
# share it.
RETRY_BUCKETS = 6
