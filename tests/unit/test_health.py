"""Health probes and readiness, in process, against a tiny responder on loopback."""

from __future__ import annotations

import asyncio
import socket

from consuldns.consul.ready import agent_ready
from consuldns.consul.transport import AgentTransport
from consuldns.dns import wire
from consuldns.upstream.group import Group
from consuldns.upstream.health import HealthChecker
from consuldns.upstream.transport import Server, Transport
from tests.unit.fakes import run


class Responder(asyncio.DatagramProtocol):
    """Answers every query on 127.0.0.1 with `rcode` and records the questions."""

    def __init__(self, rcode: int):
        self.rcode = rcode
        self.questions: list[tuple[str, int]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client) -> None:
        query = wire.parse_query(data)
        self.questions.append((wire.name_to_text(query.qname), query.qtype))
        self.transport.sendto(wire.error_reply(data, query, self.rcode), client)


async def responder(rcode: int) -> tuple[Responder, Server]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(rcode), local_addr=("127.0.0.1", 0))
    return protocol, Server("127.0.0.1", transport.get_extra_info("sockname")[1])


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def probe_once(group: Group, zone: str) -> None:
    checker = HealthChecker(lambda: [(group, zone)], 0.05)
    checker.probe_down_servers()
    checker.probe_down_servers()  # a server already being probed is not probed twice
    await asyncio.sleep(0.2)
    checker.stop()


def test_a_down_server_that_answers_a_probe_is_back_in_rotation():
    async def scenario():
        live, server = await responder(wire.NOERROR)
        server.down_since, server.failures = 1.0, 3
        await probe_once(Group("default", [server], Transport()), ".")
        return live, server

    live, server = run(scenario())
    assert server.down_since is None and server.failures == 0
    assert live.questions == [(".", wire.NS)]  # one probe: the root NS


def test_a_down_server_answering_servfail_stays_down_and_servers_up_are_not_probed():
    async def scenario():
        failing, down = await responder(wire.SERVFAIL)
        healthy, up = await responder(wire.NOERROR)
        down.down_since = 1.0
        await probe_once(Group("default", [down, up], Transport()), ".")
        return failing, healthy, down

    failing, healthy, down = run(scenario())
    assert down.down_since == 1.0 and len(failing.questions) == 1 and healthy.questions == []


def test_the_agent_is_probed_with_the_soa_of_its_zone():
    async def scenario():
        agent, server = await responder(wire.NOERROR)
        server.down_since = 1.0
        await probe_once(Group("consul", [server], AgentTransport()), "consul.")
        return agent

    assert run(scenario()).questions == [("consul.", wire.SOA)]


def test_ready_when_the_agent_answers_even_an_error_and_not_when_nothing_listens():
    async def scenario():
        _, server = await responder(wire.REFUSED)
        answering = await agent_ready(Group("consul", [server]), "consul.", 0.5)
        silent = await agent_ready(Group("consul", [Server("127.0.0.1", closed_port())]),
                                   "consul.", 0.5)
        return answering, silent

    (ready, detail), (not_ready, why) = run(scenario())
    assert ready and "answers" in detail
    assert not not_ready and "agent 127.0.0.1:" in why
