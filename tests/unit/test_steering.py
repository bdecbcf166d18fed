"""The steering program in the real kernel: an SO_REUSEPORT group of sockets on loopback,
datagrams sent at it, and which socket each one reaches."""

from __future__ import annotations

import collections
import logging
import select
import socket

import pytest

from consuldns.dns import wire
from consuldns.serve import steering


@pytest.fixture
def group():
    """Three UDP sockets in one SO_REUSEPORT group on 127.0.0.1, steered by name."""
    sockets: list[socket.socket] = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", sockets[0].getsockname()[1] if sockets else 0))
        sock.setblocking(False)
        sockets.append(sock)
    assert steering.attach(sockets[0], len(sockets))
    yield sockets
    for sock in sockets:
        sock.close()


def reached(group: list[socket.socket], data: bytes) -> int:
    """The index of the socket of the group that receives data (sent from a fresh port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(data, group[0].getsockname())
        ready, _, _ = select.select(group, [], [], 2.0)
    assert len(ready) == 1
    ready[0].recv(4096)
    return group.index(ready[0])


def query(name: str, qid: int = 1, **options) -> bytes:
    return wire.build_query(qid, wire.text_to_name(name), wire.A, wire.CLASS_IN, **options)


def test_a_name_reaches_one_socket_whatever_the_id_case_edns_and_client(group):
    for number in range(30):
        name = f"Host{number}.Service.consul."
        variants = [query(name), query(name.lower(), qid=7), query(name.upper(), qid=9),
                    query(name, qid=11, edns_size=1232, do=True), query(name, rd=False)]
        assert len({reached(group, data) for data in variants}) == 1, name


def test_names_spread_over_every_socket(group):
    spread = collections.Counter(reached(group, query(f"n{number}.spread.test."))
                                 for number in range(150))
    assert sorted(spread) == [0, 1, 2] and min(spread.values()) >= 30  # 50 expected each


def test_a_name_longer_than_what_is_hashed_is_steered_by_its_start(group):
    start = "a" * 63 + "."  # a label of 63 octets and its length: the 64 octets hashed
    first = reached(group, query(start + "one.test."))
    assert all(reached(group, query(start + f"{n}.test.")) == first for n in range(10))


def test_without_a_group_the_kernel_refuses_and_the_log_says_so(caplog):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as alone:
        alone.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: no group to steer
        with caplog.at_level(logging.WARNING, logger="consuldns.listener"):
            assert not steering.attach(alone, 2)
    assert "cannot steer UDP queries by name" in caplog.text
    assert "spreads them by client address and port" in caplog.text
