"""Signed reasoning, checked the way the real APIs check it.

Each simulated model signs its reasoning with its own key (here: a keyed hash of the model name and
the reasoning), and a request whose history holds a signature the model did not make is refused with
the API's 400, so a gateway that sends one model's thinking to another fails here as it would there.
"""

from __future__ import annotations

import hashlib

# What gemini-cli puts on a call another model made; Gemini accepts it instead of a signature.
GEMINI_SKIP = "skip_thought_signature_validator"


class ApiRefusal(ValueError):
    """A request the real API refuses with 400; ``str()`` is the API's own message."""


class InvalidSignature(ApiRefusal):
    """A signature the model did not make."""


def sign(model: str, content: str) -> str:
    return hashlib.blake2b(content.encode(), key=model.encode()[:64], digest_size=24).hexdigest()


def valid(model: str, content: str, signature: object) -> bool:
    return isinstance(signature, str) and signature == sign(model, content)
