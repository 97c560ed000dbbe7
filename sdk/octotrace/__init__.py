"""octotrace: traces, token costs and budget guards for multi-agent LLM workflows.

import octotrace
octotrace.init(endpoint="http://127.0.0.1:8000", api_key="otk_...")

@octotrace.agent
def planner(task): ...
"""

from __future__ import annotations

from octotrace._budget import BudgetExceeded
from octotrace._outcome import set_success
from octotrace._setup import init, shutdown
from octotrace._spans import agent, step, tool, workflow
from octotrace.instrumentation.openai import instrument_openai, uninstrument_openai

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "agent",
    "init",
    "instrument_openai",
    "set_success",
    "shutdown",
    "step",
    "tool",
    "uninstrument_openai",
    "workflow",
]
