"""Health probes and readiness, in process, against a tiny responder on loopback."""

from __future__ import annotations

import asyncio
import socket

from consuldns.consul.ready import agent_ready
from consuldns.consul.transport import AgentTransport
from consuldns.dns import wire
from consuldns.upstream.group import Group
from consuldns.upstream.health import HealthChecker, probe
from consuldns.upstream.transport import ROOT_NS, Server, Transport
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


class Garbled(Responder):
    """Answers with the query's ID and question, and an answer record that is not there."""

    def datagram_received(self, data: bytes, client) -> None:
        query = wire.parse_query(data)
        self.questions.append((wire.name_to_text(query.qname), query.qtype))
        reply = bytearray(wire.error_reply(data, query, wire.NOERROR))
        reply[6:8] = wire.U16.pack(1)  # ANCOUNT 1, with no record after the question
        self.transport.sendto(bytes(reply), client)


def test_an_unreadable_reply_is_a_problem_for_probes_and_readiness():
    async def scenario():
        transport, garbled = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Garbled(wire.NOERROR), local_addr=("127.0.0.1", 0))
        server = Server("127.0.0.1", transport.get_extra_info("sockname")[1])
        problem = await probe(server, ROOT_NS, 0.5)
        ready = await agent_ready(Group("consul", [server], AgentTransport()), "consul.", 0.5)
        return problem, ready, garbled

    problem, (ready, detail), garbled = run(scenario())
    assert problem is not None and "malformed reply from 127.0.0.1:" in problem
    assert not ready and "malformed reply" in detail
    assert garbled.questions == [(".", wire.NS), ("consul.", wire.SOA)]
