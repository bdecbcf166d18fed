"""Abuse (issue 7): not an open resolver, minimal ANY, caps that hold under a flood while a
legitimate client keeps getting answers, idle and slow TCP clients cut off.

Floods are bounded in count and time and go to loopback only.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import subprocess
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.e2e.admin import http, scrape
from tests.e2e.client import addresses, ask, read_frame, tcp_frame
from tests.e2e.fake_upstream import answer_a, wait_until
from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.tools import need


def query_from(server, source: str, name: str, rdtype: str = "A", *,
               tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, port=server.port, source=source, timeout=3)


# -------------------------------------------------------------------- not an open resolver


def test_clients_outside_allow_get_refused_never_recursion(consuldns_server, consul_double,
                                                          fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.99"], ttl=300))
    server = consuldns_server(upstreams=[fake], config='[acl]\nallow = ["127.0.0.2/32"]\n')
    consul_double.control.reset_counters()
    # The allowed client warms the cache; the outsider may not read it (no cache snooping).
    assert addresses(query_from(server, "127.0.0.2", "warm.abuse.test")) == ["192.0.2.99"]
    for name in ("warm.abuse.test", "cold.abuse.test", "web.service.consul"):
        for tcp in (False, True):
            reply = query_from(server, "127.0.0.1", name, tcp=tcp)
            assert reply.rcode() == dns.rcode.REFUSED
            assert reply.answer == [] and reply.authority == [] and reply.additional == []
    assert {r.name for r in fake.received} == {"warm.abuse.test."}
    assert consul_double.control.counters().total == 0  # the agent never saw the outsider
    web = query_from(server, "127.0.0.2", "web.service.consul", tcp=True)
    assert sorted(addresses(web)) == sorted(catalogs.WEB_HEALTHY)


def test_default_acl_answers_loopback(shared_consuldns):
    assert addresses(query_from(shared_consuldns, "127.0.0.7", zone.WWW.name)) == list(
        zone.WWW.values)


# -------------------------------------------------------------------------------- ANY


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_any_gets_a_minimal_answer_without_asking_anyone(consuldns_server, consul_double,
                                                         fakes, tcp):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.1"]))
    server = consuldns_server(upstreams=[fake])
    consul_double.control.reset_counters()
    for name in ("web.service.consul", "any.abuse.test"):
        reply = ask(server, name, "ANY", tcp=tcp, edns=0)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [(r.rdtype, len(r)) for r in reply.answer] == [(13, 1)]  # one HINFO, RFC 8482
        assert reply.answer[0][0].cpu == b"RFC8482"
        assert len(reply.to_wire()) < 100
    assert fake.received == [] and consul_double.control.counters().total == 0


# ---------------------------------------------------------------------------- the caps


def test_inflight_cap_holds_under_a_flood_and_a_legitimate_client_gets_answers(
        consuldns_server, fakes):
    silent = fakes(lambda query, transport: None)  # every miss stays in flight 2 s
    cap = 20
    server = consuldns_server(config=f'[server]\nmax_inflight = {cap}\n'
                                     f'[[zones]]\nname = "flood.test"\n'
                                     f'servers = ["{silent.address}"]\n')
    assert addresses(ask(server, zone.WWW.name)) == list(zone.WWW.values)  # cached now
    legit: list[tuple[float, list[str]]] = []
    stop = threading.Event()

    def legitimate_client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            reply = ask(server, zone.WWW.name, timeout=2)
            legit.append((time.monotonic() - started, addresses(reply)))
            time.sleep(0.02)

    thread = threading.Thread(target=legitimate_client)
    thread.start()
    try:
        sent, replies = udp_flood(server, count=3000, seconds=1.5)
    finally:
        stop.set()
        thread.join()
    assert len(silent.received) <= cap  # never more than the cap waiting upstream
    servfails = sum(1 for r in replies if r[3] & 0x0F == dns.rcode.SERVFAIL)
    assert servfails >= sent - cap - 50  # the rest were turned away at once, not left hanging
    assert len(legit) >= 20
    assert all(found == list(zone.WWW.values) for _, found in legit)
    assert max(elapsed for elapsed, _ in legit) < 1.0  # a starved query would wait 2 s
    # Once the flood's queries have timed out, misses are served again.
    assert wait_until(lambda: addresses(ask(server, zone.MULTI.name)) != [], 4)
    assert ask(server, "db.service.consul").rcode() == dns.rcode.NOERROR


def test_inflight_cap_holds_over_tcp_too(consuldns_server, fakes):
    silent = fakes(lambda query, transport: None)
    cap = 10
    server = consuldns_server(config=f'[server]\nmax_inflight = {cap}\n'
                                     f'[[zones]]\nname = "flood.test"\n'
                                     f'servers = ["{silent.address}"]\n')
    assert addresses(ask(server, zone.WWW.name)) == list(zone.WWW.values)  # cached now
    connections = [socket.create_connection((server.host, server.port)) for _ in range(3)]
    try:
        started = time.monotonic()
        for c, conn in enumerate(connections):
            conn.sendall(b"".join(
                tcp_frame(dns.message.make_query(f"c{c}n{i}.flood.test", "A").to_wire())
                for i in range(30)))
        servfails = 0
        for conn in connections:
            conn.settimeout(1.0)
            for _ in range(30 - cap):
                reply = _read_reply(conn)
                if reply is not None and reply.rcode() == dns.rcode.SERVFAIL:
                    servfails += 1
        turned_away_in = time.monotonic() - started
        assert addresses(ask(server, zone.WWW.name, tcp=True)) == list(zone.WWW.values)
    finally:
        for conn in connections:
            conn.close()
    assert len(silent.received) <= cap
    assert servfails == 3 * (30 - cap)  # whichever connection holds the slots
    assert turned_away_in < 1.5  # at once, not after the 2 s deadline


def _read_reply(conn: socket.socket) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(read_frame(conn))
    except OSError:
        return None


def udp_flood(server, count: int, seconds: float) -> tuple[int, list[bytes]]:
    """`count` queries for distinct names under flood.test. over `seconds`; the replies."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        started = time.monotonic()
        sent = 0
        for i in range(count):
            query = dns.message.make_query(f"n{i}.flood.test", "A")
            try:
                sock.sendto(query.to_wire(), (server.host, server.port))
                sent += 1
            except BlockingIOError:
                pass
            due = started + seconds * (i + 1) / count
            _drain(sock, replies, max(due - time.monotonic(), 0))
        _drain(sock, replies, 0.3)
    return sent, replies


def _drain(sock: socket.socket, replies: list[bytes], wait: float) -> None:
    end = time.monotonic() + wait
    while True:
        readable, _, _ = select.select([sock], [], [], max(end - time.monotonic(), 0))
        if not readable:
            return
        try:
            replies.append(sock.recv(65535))
        except BlockingIOError:
            return


def test_tcp_connection_cap_holds_and_udp_keeps_answering(consuldns_server):
    cap = 10
    server = consuldns_server(config=f"[server]\nmax_tcp_connections = {cap}\n"
                                     "tcp_idle_timeout = 3.0\n")
    held = []
    try:
        for _ in range(40):
            conn = socket.create_connection((server.host, server.port), timeout=2)
            held.append(conn)
        time.sleep(0.2)  # let the server accept them all
        answered = 0
        for conn in held:
            if tcp_exchange(conn, dns.message.make_query(zone.WWW.name, "A")) is not None:
                answered += 1
        assert answered == cap
        for _ in range(10):
            assert addresses(ask(server, zone.WWW.name)) == list(zone.WWW.values)
    finally:
        for conn in held:
            conn.close()
    # The slots come back as soon as the connections are gone.
    assert wait_until(lambda: _tcp_works(server), 3)


def _tcp_works(server) -> bool:
    try:
        return addresses(ask(server, zone.WWW.name, tcp=True, timeout=1)) == list(zone.WWW.values)
    except (OSError, EOFError, dns.exception.DNSException):
        return False


def tcp_exchange(conn: socket.socket, query: dns.message.Message) -> dns.message.Message | None:
    """One query on an open connection; None when the server closed it instead."""
    try:
        conn.sendall(tcp_frame(query.to_wire()))
        return dns.message.from_wire(read_frame(conn))
    except OSError:
        return None


# ---------------------------------------------------------------- idle and slow TCP clients


def closed_after(conn: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes `conn` (reads are discarded), or None past `limit`."""
    started = time.monotonic()
    conn.settimeout(0.1)
    while time.monotonic() - started < limit:
        try:
            if conn.recv(65535) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def test_idle_and_slow_tcp_clients_are_cut_off(consuldns_server):
    server = consuldns_server(config="[server]\ntcp_idle_timeout = 1.0\n")
    silent = socket.create_connection((server.host, server.port))
    # A slow client: a length prefix, then one byte of its query every 0.3 s, forever.
    slow = socket.create_connection((server.host, server.port))
    message = dns.message.make_query(zone.WWW.name, "A").to_wire()
    slow.sendall(struct.pack("!H", len(message)))
    slow_closed: list[float | None] = []

    def trickle() -> None:
        started = time.monotonic()
        for byte in message:
            try:
                slow.send(bytes([byte]))
            except OSError:
                slow_closed.append(time.monotonic() - started)
                return
            time.sleep(0.3)
        slow_closed.append(None)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    busy = socket.create_connection((server.host, server.port))
    assert tcp_exchange(busy, dns.message.make_query(zone.WWW.name, "A")) is not None
    assert 0.7 < closed_after(silent, 3) < 2.0  # idle: server.tcp_idle_timeout
    assert closed_after(busy, 3) < 2.0  # idle after its answer
    trickler.join(timeout=15)
    # Mid-message reads have their own timeout (5 s): the slow client never gets a whole
    # query in, so it never holds a slot for long.
    assert slow_closed and slow_closed[0] is not None and slow_closed[0] < 7.0
    for conn in (silent, slow, busy):
        conn.close()
    assert addresses(ask(server, zone.WWW.name, tcp=True)) == list(zone.WWW.values)


def server_side_connections(server, client_port: int) -> list[str]:
    """The server's end of the TCP connection from `client_port`, with its send queue."""
    out = subprocess.run(["ss", "-tanH", f"( sport = :{server.port} and dport = :{client_port} )"],
                         capture_output=True, text=True, timeout=10, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_client_that_never_reads_its_answers_is_cut_off(consuldns_server):
    """Answers pile up for a client that sends and never reads: past the write limit the
    server drops the connection and its buffer (it must not wait to flush to nobody)."""
    server = consuldns_server()
    assert ask(server, zone.BIG.name, "TXT", tcp=True).rcode() == dns.rcode.NOERROR  # cached
    baseline = reset_peak_rss(server.pid)
    query = tcp_frame(dns.message.make_query(zone.BIG.name, "TXT").to_wire())
    conn = socket.create_connection((server.host, server.port))
    client_port = conn.getsockname()[1]
    conn.settimeout(1.0)
    try:
        for _ in range(20000):  # 20000 x 2 KB answers, never read: 40 MB
            conn.sendall(query)
    except OSError:
        pass  # the server stopped reading, or reset the connection
    assert wait_until(lambda: not [line for line in server_side_connections(server, client_port)
                                   if line.startswith("ESTAB")], 3), \
        server_side_connections(server, client_port)
    conn.close()
    # The answers were never held: memory never rose by more than a few write buffers
    # (256 KB each) over what it was before the flood, where 40 MB of answers would show.
    assert status_kb(server.pid, "VmHWM") <= baseline + 8 * 1024
    assert addresses(ask(server, zone.WWW.name, tcp=True)) == list(zone.WWW.values)


def reset_peak_rss(pid: int) -> int:
    """Start measuring the process's peak memory (VmHWM) from now; its memory now, in KB."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets the peak resident set size to the current one
    return status_kb(pid, "VmRSS")


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# ------------------------------------------------------------ descriptors and the admin port


def test_idle_admin_connections_cannot_take_the_descriptors_dns_needs(consuldns_server,
                                                                     fakes):
    """ulimit -n 256: 400 idle connections to the admin port, then DNS misses over UDP and
    TCP are still answered and the upstream is still up (no EMFILE counted against it)."""
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.77"], ttl=0))
    server = consuldns_server(upstreams=[fake], admin=True,
                              command_prefix=[need("prlimit", "util-linux"), "--nofile=256",
                                              "--"])
    assert open_files_limit(server.pid) == (256, 256)
    idle = []
    try:
        for _ in range(400):
            try:
                idle.append(socket.create_connection((server.host, server.admin_port),
                                                     timeout=2))
            except OSError:
                pass  # refused or reset: what matters is what DNS gets next
        for i in range(30):
            reply = ask(server, f"miss{i}.fd.test", tcp=i % 3 == 0, timeout=3)
            assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())
            assert addresses(reply) == ["192.0.2.77"]
    finally:
        for conn in idle:
            conn.close()
    up = ("consuldns_upstream_up", frozenset({("group", "default"), ("server", fake.address)}))
    assert wait_until(lambda: _scraped(server).get(up) == 1, timeout=5)
    assert "Too many open files" not in server.log_text()


def _scraped(server) -> dict:
    try:
        return scrape(server)
    except (OSError, AssertionError):
        return {}


def test_admin_connections_over_the_cap_are_closed_at_once(consuldns_server):
    server = consuldns_server(admin=True)
    held = [socket.create_connection((server.host, server.admin_port), timeout=2)
            for _ in range(16)]
    try:
        extra = socket.create_connection((server.host, server.admin_port), timeout=2)
        extra.settimeout(1)
        assert extra.recv(1) == b""  # closed without a word
        extra.close()
        started = time.monotonic()
        assert held[0].recv(1) == b""  # an idle connection is closed after 2 s
        assert time.monotonic() - started < 3
    finally:
        for conn in held:
            conn.close()
    assert wait_until(lambda: http(server.admin_url + "/health")[0] == 200)


def open_files_limit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_start_raises_the_open_files_limit_and_warns_when_the_caps_do_not_fit(
        consuldns_server):
    prlimit = need("prlimit", "util-linux")
    roomy = consuldns_server(command_prefix=[prlimit, "--nofile=512:4096", "--"])
    assert open_files_limit(roomy.pid) == (4096, 4096)
    assert "open-files limit raised from 512 to 4096" in roomy.log_text()
    assert "is below what the caps may need" not in roomy.log_text()
    roomy.stop()
    tight = consuldns_server(command_prefix=[prlimit, "--nofile=1024", "--"])
    warnings = [line for line in tight.log_text().splitlines()
                if "open-files limit 1024 is below what the caps may need" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    for part in ("server.max_inflight 1000", "server.max_tcp_connections 200", "LimitNOFILE",
                 "ulimit -n"):
        assert part in warnings[0]
    assert addresses(ask(tight, zone.WWW.name)) == list(zone.WWW.values)


# ------------------------------------------------------------------ browsers kept out


def test_the_admin_port_refuses_what_a_browser_page_could_send(consuldns_server, fakes):
    fake = fakes(lambda query, transport: answer_a(query, ["192.0.2.8"], ttl=300))
    server = consuldns_server(upstreams=[fake], admin=True)
    ask(server, "private.admin.test")
    port = server.admin_port
    cached = server.admin_url + "/cache?name=private.admin.test"
    flush = server.admin_url + "/cache/flush"
    # DNS rebinding: the page's own name, resolved to 127.0.0.1, is the Host.
    assert http(cached, headers={"Host": f"evil.example:{port}"})[0] == 403
    # A cross-site fetch or form carries an Origin header.
    assert http(cached, headers={"Origin": "http://evil.example"})[0] == 403
    status, body = http(flush, "POST", headers={"Origin": "http://evil.example",
                                                "X-Consuldns-Admin": "1"})
    assert status == 403 and "Origin" in body
    # A simple POST (what a form can send) lacks the header mutations need.
    status, body = http(flush, "POST", headers={})
    assert status == 403 and "X-Consuldns-Admin" in body
    assert json.loads(http(cached)[1])["state"] == "fresh"  # nothing was flushed
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert http(cached, headers={"Host": host})[0] == 200, host
    assert http(flush, "POST")[0] == 200  # with the header, as `consuldns cache flush` sends
    assert json.loads(http(cached)[1])["state"] == "miss"
