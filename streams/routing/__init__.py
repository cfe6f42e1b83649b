"""Routing: which model serves a request, and how the choice is learned.

A request's way through, module by module: ``extractor`` reads ``features`` from the canonical
request (``agent_stage``: the agent's stage from its tool calls; ``client_detection``: which agent),
``classifier`` names its task type, ``routes`` picks the first route whose ``matching`` holds, and
the route's pattern (``patterns``: fixed, rules, classifier, cascade, failover, parallel, bandit)
picks a model from the ``catalog``; ``sessions`` keeps a task-session on its model until a safe,
paying switch, ``cache`` reuses a recent decision, and ``router`` ties these together into a
``decision``. ``bandit`` is the learned policy (a package), ``quality`` its quality-target
calibration, ``parallel`` the pick among parallel responses, ``experiments`` canary and shadow
candidates, ``settings`` the ``routing:`` configuration.

The modules are imported by path (``streams.routing.router.Router``); this package imports none of
them, because ``streams.config`` reads ``routing.settings`` while the router reads ``streams.config``.
"""
