"""Routes: each configured route's ``match`` compiled once, and the first route matching a request.

A route pairs a matcher (every key of its ``match`` must hold) with a routing pattern
(``streams.routing.patterns``); without a catch-all route, a default bandit route over every model
comes last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streams.routing.matching import Matcher
from streams.routing.patterns import PATTERNS, BanditPattern, Pattern

if TYPE_CHECKING:
    from streams.routing.catalog import Catalog
    from streams.routing.settings import RouteSettings


@dataclass(slots=True)
class CompiledRoute:
    name: str
    match: Matcher
    pattern: Pattern
    prompt_version: str | None


def compile_routes(routes: Sequence[RouteSettings], catalog: Catalog) -> list[CompiledRoute]:
    """The configured routes plus, if none has an empty match, a default bandit route over every model."""
    from streams.routing.settings import RouteSettings

    compiled = [
        CompiledRoute(r.name, Matcher(r.match), PATTERNS[r.pattern](r, catalog), r.prompt_version) for r in routes
    ]
    if not any(not r.match for r in routes):
        default = RouteSettings(name="default", pattern="bandit")
        compiled.append(CompiledRoute("default", Matcher({}), BanditPattern(default, catalog), None))
    return compiled


def select_route(routes: Sequence[CompiledRoute], features: Mapping[str, Any]) -> CompiledRoute:
    for r in routes:
        if r.match(features):
            return r
    return routes[-1]
