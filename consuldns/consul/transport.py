"""How the Consul agent's DNS interface is asked.

Consul trims UDP answers silently, without TC (unless the agent sets `enable_truncate`).
consuldns always asks it with EDNS (`consul.edns_size`) and, in `auto` mode, asks again over
TCP when a UDP reply may have been trimmed; `tcp` always uses TCP; `udp` trusts UDP unless TC
is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from consuldns.dns import wire
from consuldns.upstream.transport import Question, Transport

MODES = ("auto", "udp", "tcp")


@dataclass(frozen=True)
class AgentTransport(Transport):
    """The agent's strategy: `mode` is consul.transport, `answer_limit` the agent's
    dns_config.udp_answer_limit."""

    edns_size: int = 4096
    mode: str = "auto"
    answer_limit: int = 3

    @property
    def tcp_only(self) -> bool:  # type: ignore[override]
        return self.mode == "tcp"

    def probe_question(self, zone: str) -> Question:
        """The SOA of the agent's zone: the agent answers it without asking its servers."""
        return Question(wire.text_to_name(zone), wire.SOA)

    def may_be_incomplete(self, reply: wire.Reply, edns: int) -> bool:
        """Auto mode: could the agent have dropped records without setting TC?

        An agent that ignored our EDNS (no OPT in the reply, as 0.6.4 does) trims to
        answer_limit records and 512 bytes; one that honoured it trims to our buffer size. A
        reply at either limit may be incomplete, so it is asked again over TCP, which Consul
        never trims short of 64 KB.
        """
        if self.mode != "auto" or reply.rcode != wire.NOERROR:
            return False
        if not reply.has_opt:
            answers = sum(1 for r in reply.records if r.section == 0)
            return answers >= self.answer_limit or reply.size > 512 - 64
        return reply.size > edns - 128
