"""A stand-in inference engine for tests and demos: no GPU, the pinned releases' metric names
(copied by hand in upstream_metrics.yaml, independent of the engine modules).

`python -m kubellm.simulator --engine vllm --port 8001 --latency 0.2 --error-rate 0.1`
serves OpenAI-shaped completions; `python -m kubellm.simulator.load` drives bounded load.
"""

from kubellm.simulator.server import SimulatorConfig, create_app, start

__all__ = ["SimulatorConfig", "create_app", "start"]
