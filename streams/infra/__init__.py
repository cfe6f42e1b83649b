"""Running the service: the embedded broker, the stack of parts, the processes, the HTTP server.

``runtime.run_service`` is ``weave-router up`` (``stack`` brings up broker, ClickHouse and the
simulator; ``worker_process`` is the second process with the agents, the sink and ClickHouse);
``broker`` runs the embedded broker, ``capabilities`` asks a broker what it grants, ``topics``
creates the topics, ``serve`` runs an ASGI app in the current loop, ``health`` and ``observed`` the
health app and the metrics-feeding event sink, ``package_data`` finds the files shipped in the package.

The names are loaded when first used (``__getattr__``): this package runs everything else, while
``package_data`` and ``capabilities`` are needed by the modules it runs (events, storage, agents), so
importing it whole up front would be an import cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.infra.broker import EmbeddedBroker
    from streams.infra.capabilities import start_producer
    from streams.infra.health import create_health_app
    from streams.infra.observed import MeteredEventSink, RecentRequests
    from streams.infra.package_data import files_ending, package_folder
    from streams.infra.runtime import build_gateway_app, feedback_handler, make_router, run_service
    from streams.infra.serve import HttpServer
    from streams.infra.stack import Stack, StackState
    from streams.infra.topics import ensure_topics, partition_counts
    from streams.infra.worker_process import AnalyticsProxy, TokenGuard, WorkerProcess

_HOME = {
    "EmbeddedBroker": "broker",
    "start_producer": "capabilities",
    "create_health_app": "health",
    "MeteredEventSink": "observed",
    "RecentRequests": "observed",
    "files_ending": "package_data",
    "package_folder": "package_data",
    "build_gateway_app": "runtime",
    "feedback_handler": "runtime",
    "make_router": "runtime",
    "run_service": "runtime",
    "HttpServer": "serve",
    "Stack": "stack",
    "StackState": "stack",
    "ensure_topics": "topics",
    "partition_counts": "topics",
    "AnalyticsProxy": "worker_process",
    "TokenGuard": "worker_process",
    "WorkerProcess": "worker_process",
}

__all__ = [
    "AnalyticsProxy",
    "EmbeddedBroker",
    "HttpServer",
    "MeteredEventSink",
    "RecentRequests",
    "Stack",
    "StackState",
    "TokenGuard",
    "WorkerProcess",
    "build_gateway_app",
    "create_health_app",
    "ensure_topics",
    "feedback_handler",
    "files_ending",
    "make_router",
    "package_folder",
    "partition_counts",
    "run_service",
    "start_producer",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
