"""Readiness: does the Consul agent answer? Asked at start-up and by GET /ready."""

from __future__ import annotations

from consuldns.errors import UpstreamError
from consuldns.upstream.group import Group
from consuldns.upstream.transport import ask_once

READY_TIMEOUT = 1.0


async def agent_ready(agent: Group, zone: str,
                      timeout: float = READY_TIMEOUT) -> tuple[bool, str]:
    """(ready, detail): any reply from one of the agent's servers counts, even an error
    rcode; the agent is asked its transport's probe question (the SOA of its zone)."""
    question = agent.transport.probe_question(zone)
    problems = []
    for server in agent.servers:
        try:
            await ask_once(server, question, timeout)
        except UpstreamError as exc:
            problems.append(f"agent {server.address}: {exc or type(exc).__name__}")
            continue
        return True, f"agent {server.address} answers"
    return False, "; ".join(problems) or "no agent configured"
