"""Translation between the dialects agents speak and the one canonical form routing reads.

``canonical`` is the typed request/response/stream model; each dialect is a package
(``openai_chat``, ``openai_responses``, ``anthropic_messages``) exposing a ``CODEC``, the
``DialectCodec`` of ``codec``; ``registry.get(dialect)`` finds it. ``common`` holds the helpers the
dialects share, ``custom_tools`` OpenAI's custom (freeform) tools in their function form for the
dialects without them, ``sse`` the event-stream framing, ``scanner`` the relay's usage scanner and
``fastpath`` the same-dialect body rewrite.
"""
