"""The handler's rules, in process: a fake upstream group, a fake clock, no sockets.

Each rule costs milliseconds here; tests/e2e shows the same behaviour through real servers.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import random
import tracemalloc

import dns.flags
import dns.message
import dns.rcode

from consuldns.dns import wire
from consuldns.errors import UpstreamError, UpstreamTimeout
from consuldns.serve.cache import Cache, CachePolicy
from consuldns.serve.handler import Handler, Options
from consuldns.serve.router import Route, Router
from consuldns.upstream.transport import Question
from tests.unit.fakes import Clock, FakeGroup, run
from tests.unit.helpers import SOA_TEXT, query_bytes, reply_bytes

WEB = "web.service.consul."
WEB_A = reply_bytes(WEB, "A", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], ttl=0)
WWW = "www.example.test."
WWW_A = reply_bytes(WWW, "A", ["192.0.2.1"], ttl=300)


class Setup:
    """A handler routing consul. to `agent` and everything else to `upstream`."""

    def __init__(self, *, consul_policy: CachePolicy | None = None,
                 default_policy: CachePolicy | None = None, reverse: bool = False, **options):
        consul_policy = consul_policy or CachePolicy()
        default_policy = default_policy or CachePolicy()
        self.clock = Clock()
        self.agent = FakeGroup("consul", {WEB.lower(): WEB_A})
        self.upstream = FakeGroup("default", {WWW: WWW_A})
        routes = [Route("consul.", self.agent, consul_policy, is_agent=True, timeout=2.0)]
        if reverse:
            routes.append(Route("10.in-addr.arpa.", self.agent, consul_policy,
                                fallback=self.upstream, is_agent=True, timeout=4.5))
        router = Router(routes, Route(".", self.upstream, default_policy, timeout=4.5))
        self.handler = Handler(Cache(100, now=self.clock), Options(router, **options),
                               rng=random.Random(1), now=self.clock)

    async def ask(self, name: str, rdtype: str = "A", *, tcp: bool = False, qid: int = 1,
                  client: tuple[str, int] = ("127.0.0.1", 5000)) -> dns.message.Message | None:
        """One query through answer_now, and resolve when it needs upstream."""
        data = query_bytes(name, rdtype, qid=qid)
        result = self.handler.answer_now(data, tcp)
        if result.__class__ is bytes:
            return dns.message.from_wire(result) if result else None
        answered = asyncio.get_running_loop().create_future()
        self.handler.resolve(data, result, tcp, client, answered.set_result)
        raw = await answered
        return dns.message.from_wire(raw) if raw else None

    def answered_at_once(self, name: str, rdtype: str = "A") -> bool:
        return self.handler.answer_now(query_bytes(name, rdtype), False).__class__ is bytes


def addresses(message: dns.message.Message) -> set[str]:
    return {rdata.to_text() for rrset in message.answer for rdata in rrset}


def ttls(message: dns.message.Message) -> list[int]:
    return [rrset.ttl for rrset in message.answer]


# ------------------------------------------------------------------ cache


def test_a_miss_is_stored_and_the_next_query_is_a_hit_with_its_ttl_counted_down():
    async def scenario():
        setup = Setup()
        first = await setup.ask(WWW)
        setup.clock.advance(100)
        second = await setup.ask(WWW, qid=2)
        return setup, first, second

    setup, first, second = run(scenario())
    assert ttls(first) == [300] and ttls(second) == [200]
    assert second.id == 2 and setup.upstream.names_asked() == [WWW]
    assert setup.handler.stats.cache_hits == 1


def test_ttl_zero_consul_answers_are_asked_again_every_time():
    async def scenario():
        setup = Setup()
        for qid in range(3):
            await setup.ask(WEB, qid=qid)
        return setup

    assert run(scenario()).agent.names_asked() == [WEB.lower()] * 3


def test_min_ttl_of_the_consul_zone_keeps_ttl_zero_answers_for_that_long():
    async def scenario():
        setup = Setup(consul_policy=CachePolicy(min_ttl=5))
        first = await setup.ask(WEB)
        setup.clock.advance(4.5)
        fresh = setup.answered_at_once(WEB)
        setup.clock.advance(1)
        expired = setup.answered_at_once(WEB)
        return first, fresh, expired

    first, fresh, expired = run(scenario())
    assert ttls(first) == [5]  # clients see the clamped TTL
    assert fresh and not expired


def test_negative_answers_live_min_of_soa_ttl_and_minimum():
    async def scenario():
        setup = Setup()
        # SOA TTL 300, MINIMUM 60: RFC 2308 §5 says the smaller, 60.
        setup.upstream.replies["nx.example.test."] = reply_bytes(
            "nx.example.test", "A", rcode=dns.rcode.NXDOMAIN,
            authority=[("example.test", 300, "SOA", SOA_TEXT)])
        await setup.ask("nx.example.test")
        setup.clock.advance(59)
        cached = setup.answered_at_once("nx.example.test")
        setup.clock.advance(2)
        return cached, setup.answered_at_once("nx.example.test")

    assert run(scenario()) == (True, False)


# ------------------------------------------------------------------ coalescing


def test_identical_misses_share_one_exchange_over_udp_and_tcp():
    async def scenario():
        setup = Setup()
        setup.agent.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(setup.ask(WEB, tcp=i % 2 == 1, qid=i))
                   for i in range(10)]
        await asyncio.sleep(0)
        setup.agent.gate.set()
        return setup, await asyncio.gather(*waiting)

    setup, replies = run(scenario())
    assert len(setup.agent.asked) == 1
    assert [r.id for r in replies] == list(range(10))
    assert all(addresses(r) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"} for r in replies)
    assert setup.handler.stats.coalesced == 9


def test_over_max_inflight_exchanges_a_new_miss_gets_servfail_at_once():
    async def scenario():
        setup = Setup(max_inflight=1)
        setup.upstream.gate = asyncio.Event()
        held = asyncio.ensure_future(setup.ask(WWW))
        await asyncio.sleep(0)
        refused = await setup.ask("other.example.test")
        setup.upstream.gate.set()
        return setup, refused, await held

    setup, refused, held = run(scenario())
    assert refused.rcode() == dns.rcode.SERVFAIL and held.rcode() == dns.rcode.NOERROR
    assert setup.handler.stats.overload == 1
    assert setup.upstream.names_asked() == [WWW]


def test_one_client_network_holds_at_most_three_quarters_of_the_exchanges():
    async def scenario():
        setup = Setup(max_inflight=4)
        setup.upstream.gate = asyncio.Event()
        names = [f"n{i}.example.test." for i in range(4)]
        for name in names:
            setup.upstream.replies[name] = reply_bytes(name, "A", ["192.0.2.1"])
        flood = [asyncio.ensure_future(setup.ask(name, client=("10.0.0.9", 53000)))
                 for name in names]
        await asyncio.sleep(0)
        same_network = flood[3].done() and flood[3].result().rcode()
        other = asyncio.ensure_future(setup.ask(WWW, client=("10.0.1.9", 53000)))
        await asyncio.sleep(0)
        setup.upstream.gate.set()
        return same_network, await other, setup

    same_network, other, setup = run(scenario())
    assert same_network == dns.rcode.SERVFAIL  # the 4th of 10.0.0.0/24: over its share
    assert other.rcode() == dns.rcode.NOERROR  # 10.0.1.0/24 still gets the 4th exchange
    assert len(setup.upstream.asked) == 4


def test_turned_away_queries_get_their_stale_answer_when_there_is_one():
    async def scenario():
        setup = Setup(max_inflight=1)
        await setup.ask(WEB)  # TTL 0: expired at once, servable stale
        setup.upstream.gate = asyncio.Event()
        held = asyncio.ensure_future(setup.ask(WWW))
        await asyncio.sleep(0)
        stale = await setup.ask(WEB)
        setup.upstream.gate.set()
        await held
        return stale

    stale = run(scenario())
    assert addresses(stale) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"} and set(ttls(stale)) == {30}


def test_a_late_answer_is_cached_for_the_retry_unless_a_fresh_one_is():
    async def scenario():
        setup = Setup()
        route = setup.handler.options.router.route(wire.text_to_name(WWW))
        query = wire.parse_query(query_bytes(WWW))
        late = await setup.upstream.resolve(Question(query.qname, wire.A), 0)
        setup.handler.fetcher._late(query, route, late)
        cached = setup.answered_at_once(WWW)
        setup.upstream.replies[WWW] = reply_bytes(WWW, "A", ["192.0.2.99"], ttl=300)
        newer = await setup.upstream.resolve(Question(query.qname, wire.A), 0)
        setup.handler.fetcher._late(query, route, newer)
        return cached, await setup.ask(WWW), setup.handler.stats.late_answers

    cached, reply, late_answers = run(scenario())
    assert cached and addresses(reply) == {"192.0.2.1"} and late_answers == 1


HOT = "hot.service.consul."
HOT_ADDRESSES = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]


def test_followers_of_one_exchange_each_get_a_uniformly_random_order():
    # The replies of one exchange are assembled once per order and then only patched: each
    # waiter must still draw its order afresh. 1440 replies over the 24 orders of 4 records;
    # chi-square with 23 degrees of freedom stays under 49.7 but once in a thousand.
    async def scenario():
        setup = Setup()
        setup.agent.replies[HOT] = reply_bytes(HOT, "A", HOT_ADDRESSES, ttl=0)
        replies = []
        for _ in range(3):
            setup.agent.gate = asyncio.Event()
            waiting = [asyncio.ensure_future(setup.ask(HOT, qid=qid)) for qid in range(480)]
            await asyncio.sleep(0)
            setup.agent.gate.set()
            replies += await asyncio.gather(*waiting)
        return setup, replies

    setup, replies = run(scenario())
    assert len(setup.agent.asked) == 3
    assert all(reply.id == qid for reply, qid in zip(replies, list(range(480)) * 3))
    orders = collections.Counter(tuple(r.to_text() for r in reply.answer[0])
                                 for reply in replies)
    assert len(orders) == 24 and all(sorted(order) == HOT_ADDRESSES for order in orders)
    expected = len(replies) / 24
    assert sum((seen - expected) ** 2 / expected for seen in orders.values()) < 49.7


def test_followers_of_one_exchange_get_replies_shaped_for_their_own_query():
    many = [f"10.0.2.{i}" for i in range(1, 41)]  # 40 records: over 512 bytes, under 1232

    async def scenario():
        setup = Setup()
        setup.agent.replies[HOT] = reply_bytes(HOT, "A", many, ttl=0)
        setup.agent.gate = asyncio.Event()
        queries = [(query_bytes("hot.service.consul.", qid=1), False),
                   (query_bytes("HOT.Service.consul.", qid=2), False),
                   (query_bytes("hot.service.consul.", qid=3, edns=0, want_dnssec=True), False),
                   (query_bytes("hot.service.consul.", qid=4), True)]
        waiting = []
        for data, tcp in queries:
            answered = asyncio.get_running_loop().create_future()
            setup.handler.resolve(data, setup.handler.answer_now(data, tcp), tcp,
                                  ("127.0.0.1", 5000), answered.set_result)
            waiting.append(answered)
        setup.agent.gate.set()
        return [dns.message.from_wire(raw) for raw in await asyncio.gather(*waiting)]

    plain, spelled, edns, tcp = run(scenario())
    assert [m.id for m in (plain, spelled, edns, tcp)] == [1, 2, 3, 4]
    assert plain.question[0].name.to_text() == "hot.service.consul."
    assert spelled.question[0].name.to_text() == "HOT.Service.consul."
    assert plain.flags & dns.flags.TC and plain.edns == -1  # 512 bytes without EDNS
    assert not edns.flags & dns.flags.TC and edns.edns == 0 and edns.ednsflags & dns.flags.DO
    assert len(edns.answer[0]) == 40 and len(tcp.answer[0]) == 40
    assert not tcp.flags & dns.flags.TC


# ------------------------------------------------------------------ failures and stale


def test_a_failing_agent_gives_servfail_never_nxdomain():
    async def scenario():
        setup = Setup()
        setup.agent.replies[WEB.lower()] = UpstreamTimeout("silent")
        return await setup.ask(WEB)

    assert run(scenario()).rcode() == dns.rcode.SERVFAIL


def test_stale_answer_with_ttl_30_when_the_agent_fails_then_at_once_with_one_refresh():
    async def scenario():
        setup = Setup()
        await setup.ask(WEB)
        setup.clock.advance(60)
        setup.agent.replies[WEB.lower()] = UpstreamTimeout("silent")
        stale = await setup.ask(WEB)
        asked = len(setup.agent.asked)
        setup.agent.gate = asyncio.Event()  # the background refresh hangs
        at_once = [setup.answered_at_once(WEB) for _ in range(5)]
        await asyncio.sleep(0)
        refreshes = len(setup.agent.asked) - asked
        setup.agent.gate.set()
        return stale, at_once, refreshes

    stale, at_once, refreshes = run(scenario())
    assert stale.rcode() == dns.rcode.NOERROR and set(ttls(stale)) == {30}
    assert all(at_once) and refreshes == 1


def test_nxdomain_is_never_served_stale():
    async def scenario():
        setup = Setup(consul_policy=CachePolicy(neg_min_ttl=5))
        gone = "gone.service.consul."
        setup.agent.replies[gone] = reply_bytes(gone, "A", rcode=dns.rcode.NXDOMAIN,
                                                authority=[("consul", 0, "SOA", SOA_TEXT)])
        first = await setup.ask(gone)
        setup.clock.advance(10)
        setup.agent.replies[gone] = UpstreamTimeout("silent")
        return first, await setup.ask(gone)

    first, after = run(scenario())
    assert first.rcode() == dns.rcode.NXDOMAIN and after.rcode() == dns.rcode.SERVFAIL


def test_nodata_is_served_stale():
    async def scenario():
        setup = Setup()
        setup.agent.replies[WEB.lower()] = reply_bytes(
            WEB, "AAAA", authority=[("consul", 0, "SOA", SOA_TEXT)])
        await setup.ask(WEB, "AAAA")
        setup.clock.advance(1)
        setup.agent.replies[WEB.lower()] = UpstreamTimeout("silent")
        return await setup.ask(WEB, "AAAA")

    stale = run(scenario())
    assert stale.rcode() == dns.rcode.NOERROR and not stale.answer
    assert stale.authority  # the SOA, with the stale TTL


def test_servfail_from_upstream_is_remembered_servfail_ttl_seconds():
    async def scenario():
        setup = Setup(default_policy=CachePolicy(servfail_ttl=2))
        setup.upstream.replies["bad.example.test."] = UpstreamError("SERVFAIL", wire.SERVFAIL)
        await setup.ask("bad.example.test")
        remembered = setup.answered_at_once("bad.example.test")
        setup.clock.advance(2.5)
        return remembered, setup.answered_at_once("bad.example.test")

    assert run(scenario()) == (True, False)


def test_an_internal_error_becomes_servfail():
    async def scenario():
        setup = Setup()
        setup.upstream.replies[WWW] = RuntimeError("bug")
        return await setup.ask(WWW)

    assert run(scenario()).rcode() == dns.rcode.SERVFAIL


# ------------------------------------------------------------------ routes and deadlines


def test_each_query_gets_one_deadline_its_route_sets():
    async def scenario():
        setup = Setup()
        await setup.ask(WWW)
        await setup.ask(WEB)
        return setup

    setup = run(scenario())
    assert setup.upstream.deadlines == [setup.clock.time + 4.5]
    assert setup.agent.deadlines == [setup.clock.time + 2.0]


def test_reverse_zones_fall_back_to_the_default_upstreams_on_nxdomain():
    async def scenario():
        setup = Setup(reverse=True)
        name = "1.0.0.10.in-addr.arpa."
        setup.agent.replies[name] = reply_bytes(name, "PTR", rcode=dns.rcode.NXDOMAIN,
                                                authority=[("consul", 0, "SOA", SOA_TEXT)])
        setup.upstream.replies[name] = reply_bytes(name, "PTR", ["host.example.test."])
        return setup, await setup.ask(name, "PTR")

    setup, reply = run(scenario())
    assert addresses(reply) == {"host.example.test."}
    assert len(setup.agent.asked) == 1 and len(setup.upstream.asked) == 1


# ------------------------------------------------------------------ shaping on the fast path


def test_cache_hits_shuffle_addresses():
    async def scenario():
        setup = Setup(consul_policy=CachePolicy(min_ttl=60))
        await setup.ask(WEB)
        orders = set()
        for qid in range(50):
            reply = await setup.ask(WEB, qid=qid)
            orders.add(tuple(rdata.to_text() for rdata in reply.answer[0]))
        return orders

    assert len(run(scenario())) > 1


def test_refused_for_clients_outside_the_acl_is_counted():
    setup = Setup()
    reply = dns.message.from_wire(setup.handler.refused(query_bytes(WWW)))
    assert reply.rcode() == dns.rcode.REFUSED and setup.handler.stats.refused == 1
    assert setup.handler.refused(b"\x00") == b""  # unreadable: dropped


def test_answer_records_outside_the_question_chain_are_dropped_before_caching():
    poisoned = reply_bytes(WWW, "A", ["192.0.2.1"],
                           extra_answers=[("victim.example.", 300, "A", "203.0.113.66")])

    async def scenario():
        setup = Setup()
        setup.upstream.replies[WWW] = poisoned
        return [await setup.ask(WWW, qid=qid) for qid in (1, 2)]  # a miss, then a hit

    for reply in run(scenario()):
        assert [rrset.name.to_text() for rrset in reply.answer] == [WWW]
        assert addresses(reply) == {"192.0.2.1"}


def test_large_replies_are_not_kept_in_the_memo_of_repeated_queries():
    """Queries seen before keep their last reply, but only a small one: 4 096 remembered
    64 KB TCP replies would hold 256 MB outside the cache's byte budget."""
    big = [f'"{i:03d}{"x" * 240}"' for i in range(60)]  # ~15 KB of TXT records
    names = [f"n{i}.big.test." for i in range(30)]
    setup = Setup()
    for name in names:
        setup.upstream.replies[name] = reply_bytes(name, "TXT", big)

    async def scenario():
        for name in names:
            await setup.ask(name, "TXT", tcp=True)  # misses: cached
        gc.collect()
        tracemalloc.start()
        for qid in (2, 3):  # the second time the query bytes are known
            for name in names:
                reply = await setup.ask(name, "TXT", tcp=True, qid=qid)
                assert len(reply.answer[0]) == 60
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return held

    assert run(scenario()) < 150_000  # 30 replies kept: 450 KB
