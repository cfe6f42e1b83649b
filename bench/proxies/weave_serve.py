"""Weave Router's gateway alone, as the side-by-side harness (../shared/bench/compare.py) runs a peer.

    python bench/proxies/weave_serve.py --port 4000 --upstream http://127.0.0.1:18000/v1 [--model fake]

One OpenAI-compatible provider at ``--upstream`` serving ``--model``; no broker, no sink, no learner: the
relay path only, like the peers' specs. The circuit breaker is off so that a saturated run is measured
as latency rather than as fast 503s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="provider base URL, ending in /v1")
    parser.add_argument("--model", default="fake")
    args = parser.parse_args()

    import uvloop

    from streams.config import Settings
    from streams.ingress.app import create_app, serve
    from streams.ingress.gateway import Gateway
    from streams.providers.client import UpstreamClient
    from streams.routing.router import Router

    settings = Settings.model_validate({
        "providers": [{"name": "upstream", "dialect": "openai_chat", "base_url": args.upstream}],
        "models": [{"name": args.model, "provider": "upstream", "price_in": 1.0, "price_out": 1.0,
                    "tier": "frontier"}],
        "routing": {"auto_models": ["router/auto"], "default_model": args.model},
        "reliability": {"breaker": {"enabled": False}},
    })
    gateway = Gateway(settings, Router(settings), UpstreamClient())
    uvloop.run(serve(create_app(gateway), args.host, args.port))


if __name__ == "__main__":
    main()
