"""packetio: the same assertions against the pure-Python loop and the C accelerator, on real
loopback UDP sockets, IPv4 and IPv6 (the full send buffer in a network namespace)."""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator

import pytest

from consuldns import packetio

HOSTS = ("127.0.0.1", "::1")


def _accelerator() -> packetio.Implementation:
    """The accelerator; CI must have built it (else both runs would test Python only)."""
    found = packetio.accelerator()
    if found is None:
        message = "consuldns._packetio is not built (pip install -e . with gcc, python3-dev)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(params=["python", "accelerated"])
def packet_io(request: pytest.FixtureRequest) -> packetio.Implementation:
    return packetio.PURE_PYTHON if request.param == "python" else _accelerator()


def _udp(host: str, blocking: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    if ":" in host:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, 0))
    if blocking:
        sock.settimeout(2.0)
    else:
        sock.setblocking(False)
    return sock


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(host: str) -> Iterator[socket.socket]:
    """A non-blocking socket as the listener's."""
    sock = _udp(host, blocking=False)
    yield sock
    sock.close()


@pytest.fixture
def client(host: str) -> Iterator[socket.socket]:
    sock = _udp(host, blocking=True)
    yield sock
    sock.close()


def _wait_readable(sock: socket.socket) -> None:
    readable, _, _ = select.select([sock], [], [], 2.0)
    assert readable, "nothing arrived within 2 s"


def _send(client: socket.socket, server: socket.socket, messages: list[bytes]) -> None:
    """Queue messages on the server (loopback delivers them before sendto returns)."""
    for message in messages:
        client.sendto(message, server.getsockname())
    _wait_readable(server)


# ------------------------------------------------------------------ receiving


def test_an_empty_socket_gives_an_empty_batch(packet_io, server):
    assert packet_io.recv_batch(server, packetio.MAX_BATCH) == []


def test_one_call_returns_the_waiting_datagrams_in_order(packet_io, server, client):
    messages = [b"query %d" % i for i in range(10)]
    _send(client, server, messages)
    batch = packet_io.recv_batch(server, packetio.MAX_BATCH)
    assert [data for data, _ in batch] == messages
    assert packet_io.recv_batch(server, packetio.MAX_BATCH) == []


def test_max_count_caps_a_batch(packet_io, server, client):
    _send(client, server, [b"a", b"b", b"c", b"d", b"e"])
    sizes = [len(packet_io.recv_batch(server, 2)) for _ in range(4)]
    assert sizes == [2, 2, 1, 0]


@pytest.mark.parametrize("count", [0, packetio.MAX_BATCH + 1])
def test_max_count_out_of_range_is_refused(packet_io, server, count):
    with pytest.raises(ValueError):
        packet_io.recv_batch(server, count)


def test_an_oversize_datagram_is_cut_at_max_datagram(packet_io, server, client):
    big = bytes(range(256)) * 20  # 5120 bytes
    _send(client, server, [big, b"", b"next"])
    batch = packet_io.recv_batch(server, packetio.MAX_BATCH)
    assert [data for data, _ in batch] == [big[:packetio.MAX_DATAGRAM], b"", b"next"]


def test_an_address_reads_like_the_recvfrom_tuple(packet_io, host, server, client):
    _send(client, server, [b"one", b"two"])
    (_, first), (_, second) = packet_io.recv_batch(server, packetio.MAX_BATCH)
    expected = client.getsockname()
    assert tuple(first) == expected
    assert (first[0], first[1]) == (host, expected[1])
    assert len(first) == (4 if ":" in host else 2)
    assert first == second and hash(first) == hash(second)
    with pytest.raises(IndexError):
        first[len(expected)]


def test_addresses_tell_clients_apart(packet_io, host, server):
    clients = [_udp(host, blocking=True) for _ in range(3)]
    try:
        for sock in clients:
            _send(sock, server, [b"hello"])
        addresses = [address for _, address in packet_io.recv_batch(server, packetio.MAX_BATCH)]
        assert [tuple(a) for a in addresses] == [sock.getsockname() for sock in clients]
        assert len(set(addresses)) == 3
    finally:
        for sock in clients:
            sock.close()


def test_many_client_ips_keep_their_own_text(packet_io, server):
    """More sources than the accelerator remembers host texts for, several times over."""
    if server.family != socket.AF_INET:
        pytest.skip("only 127.0.0.0/8 offers many loopback addresses")
    hosts = [f"127.0.{i // 250}.{1 + i % 250}" for i in range(600)]
    for round_number in range(2):
        for host in hosts:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((host, 0))
                _send(sock, server, [b"hi"])
                ((_, address),) = packet_io.recv_batch(server, packetio.MAX_BATCH)
                assert address[0] == host, round_number


# ------------------------------------------------------------------ sending


def _receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(65535) for _ in range(count)]


def test_replies_go_back_to_the_addresses_received(packet_io, host, server):
    clients = [_udp(host, blocking=True) for _ in range(2)]
    try:
        for index, sock in enumerate(clients):
            _send(sock, server, [b"from %d" % index])
        batch = packet_io.recv_batch(server, packetio.MAX_BATCH)
        assert packet_io.send_batch(server, [(b"reply to " + data, address)
                                      for data, address in batch]) == []
        assert [sock.recv(100) for sock in clients] == [b"reply to from 0", b"reply to from 1"]
    finally:
        for sock in clients:
            sock.close()


def test_a_numeric_tuple_is_an_address_too(packet_io, server, client):
    assert packet_io.send_batch(server, [(b"direct", client.getsockname()[:2])]) == []
    assert client.recv(100) == b"direct"


def test_more_pairs_than_one_batch_all_go_out(packet_io, server, client):
    """send_batch splits a long list into system calls of MAX_BATCH datagrams."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    messages = [b"%d" % i for i in range(packetio.MAX_BATCH * 2 + 3)]
    assert packet_io.send_batch(server, [(m, client.getsockname()) for m in messages]) == []
    assert _receive(client, len(messages)) == messages


def test_a_refused_datagram_is_reported_and_the_rest_sent(packet_io, host, server, client):
    """Port 0 is EINVAL for that datagram alone; nothing leaves loopback."""
    to_client = client.getsockname()
    pairs = [(b"first", to_client), (b"lost", (host, 0)), (b"last", to_client)]
    assert packet_io.send_batch(server, pairs) == [(1, errno.EINVAL)]
    assert _receive(client, 2) == [b"first", b"last"]


def test_a_closed_socket_raises(packet_io, host):
    sock = _udp(host, blocking=False)
    address = sock.getsockname()
    sock.close()
    with pytest.raises(OSError) as received:
        packet_io.recv_batch(sock, 1)
    assert received.value.errno == errno.EBADF
    with pytest.raises(OSError) as sent:
        packet_io.send_batch(sock, [(b"x", address)])
    assert sent.value.errno == errno.EBADF


def test_a_malformed_pair_raises(packet_io, server, client):
    with pytest.raises((TypeError, ValueError)):
        packet_io.send_batch(server, [(b"x", client.getsockname(), "extra")])


# ------------------------------------------------------------------ full send buffer

# In a namespace of our own: a veth pair whose far end has no address, so datagrams to
# 10.9.0.2 / 2001:db8:9::2 wait for a neighbour that never answers, still charged to the
# sending socket. (On loopback a send buffer never fills: lo frees each datagram at once.)
VETH_SETUP = (
    ("ip", "link", "add", "cdnsv0", "type", "veth", "peer", "name", "cdnsv1"),
    ("ip", "link", "set", "cdnsv0", "up"),
    ("ip", "link", "set", "cdnsv1", "up"),
    ("ip", "addr", "add", "10.9.0.1/24", "dev", "cdnsv0"),
    ("ip", "-6", "addr", "add", "2001:db8:9::1/64", "dev", "cdnsv0", "nodad"),
)


def _fill_send_buffer(packet_io: packetio.Implementation, target: tuple[str, int]) -> list:
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the kernel's minimum
        sock.setblocking(False)
        return packet_io.send_batch(sock, [(bytes(1000), target)] * 40)


@pytest.mark.netns
@pytest.mark.parametrize("target", [("10.9.0.2", 53), ("2001:db8:9::2", 53)])
def test_a_full_send_buffer_reports_the_rest_unsent(packet_io, netns, target):
    for argv in VETH_SETUP:
        netns.run(list(argv), check=True)
    failures = netns.call(_fill_send_buffer, packet_io, target)
    first = failures[0][0] if failures else None
    assert first is not None and first > 0, failures  # some went out, then the buffer filled
    assert failures == [(index, errno.EAGAIN) for index in range(first, 40)]


# ------------------------------------------------------------------ memory


def _echo_rounds(packet_io: packetio.Implementation, server: socket.socket, client: socket.socket,
                 rounds: int) -> None:
    for _ in range(rounds):
        _send(client, server, [b"ping"] * 8)
        batch = packet_io.recv_batch(server, packetio.MAX_BATCH)
        for _, address in batch:
            address[0], address[1], repr(address), hash(address)
        assert packet_io.send_batch(server, batch) == []
        _receive(client, len(batch))


def test_memory_stays_flat_over_many_batches(packet_io, server, client):
    """Each round allocates datagrams, addresses and pairs; none may outlive its round."""
    _echo_rounds(packet_io, server, client, 200)  # warm up: caches and free lists fill
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _echo_rounds(packet_io, server, client, 3000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes more after 24000 datagrams"


# ------------------------------------------------------------------ choosing


def test_the_environment_variable_selects_the_pure_python_loop(monkeypatch):
    monkeypatch.setenv(packetio.DISABLE_VARIABLE, "1")
    chosen = packetio.load()
    assert chosen.recv_batch is packetio.PURE_PYTHON.recv_batch
    assert "pure-Python" in chosen.description and packetio.DISABLE_VARIABLE in chosen.description


def test_the_accelerator_has_the_limits_of_the_fallback():
    """MAX_BATCH and MAX_DATAGRAM are written twice, in C and in Python: they must agree."""
    _accelerator()
    from consuldns import _packetio

    assert (_packetio.MAX_BATCH, _packetio.MAX_DATAGRAM) == (packetio.MAX_BATCH,
                                                              packetio.MAX_DATAGRAM)


def test_the_accelerator_runs_when_built(monkeypatch):
    accelerated = _accelerator()
    monkeypatch.delenv(packetio.DISABLE_VARIABLE, raising=False)
    assert packetio.load() == accelerated


@pytest.mark.parametrize("disabled", [False, True])
def test_version_says_which_packet_io_runs(disabled):
    env = {k: v for k, v in os.environ.items() if k != packetio.DISABLE_VARIABLE}
    if disabled:
        env[packetio.DISABLE_VARIABLE] = "1"
    elif packetio.accelerator() is None:
        _accelerator()
    shown = subprocess.run([sys.executable, "-m", "consuldns", "--version"], env=env,
                           capture_output=True, text=True, timeout=30, check=True).stdout
    expected = "pure-Python packet I/O" if disabled else "accelerated packet I/O"
    assert expected in shown.splitlines()[1]
