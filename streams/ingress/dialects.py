"""The serving core of each dialect the gateway ingests, by dialect name."""

from __future__ import annotations

from streams.ingress.anthropic_messages import AnthropicMessagesCore
from streams.ingress.core import ServingCore
from streams.ingress.gateway import Gateway
from streams.ingress.gemini import GeminiCore
from streams.ingress.openai_chat import OpenAIChatCore
from streams.ingress.openai_responses import OpenAIResponsesCore

CORES: tuple[type[ServingCore], ...] = (OpenAIChatCore, OpenAIResponsesCore, AnthropicMessagesCore, GeminiCore)


def serving_cores(gateway: Gateway) -> dict[str, ServingCore]:
    return {core.dialect: core(gateway) for core in CORES}
