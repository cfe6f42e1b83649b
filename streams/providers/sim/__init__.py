"""The built-in simulated LLM provider: a real HTTP server speaking OpenAI Chat Completions, OpenAI
Responses (custom tools too), Anthropic Messages and the Gemini API, with deterministic replies, tool
calls when the prompt asks for an action (or a script says so), per-model skill, realistic
streaming/latency/usage and injectable faults. Used for demos, load and chaos tests, and as the
conformance oracle of the gateway (it implements the wire formats itself).

    async with running_sim(SimConfig(ttft_ms=0, models={"small": 0.4, "big": 0.9})) as url:
    # per-task-type skill: models={"small": {"test_writing": 0.9, "debugging": 0.1, "default": 0.4}}
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x")
"""

from streams.providers.sim.app import SimState, create_sim_app
from streams.providers.sim.behaviour import FAIL_MARKER, PASS_MARKER, solves, task_type_of
from streams.providers.sim.config import SimConfig
from streams.providers.sim.faults import FaultSpec, parse_fault_header
from streams.providers.sim.server import running_sim, running_sim_thread, serve_sim, sim_state

__all__ = [
    "FAIL_MARKER",
    "PASS_MARKER",
    "FaultSpec",
    "SimConfig",
    "SimState",
    "create_sim_app",
    "parse_fault_header",
    "running_sim",
    "running_sim_thread",
    "serve_sim",
    "sim_state",
    "solves",
    "task_type_of",
]
