"""Templates and shaping: what a client receives, checked by parsing it with dnspython."""

import random

import dns.flags
import dns.message
import dns.rcode
import pytest

from consuldns.dns import shape as answer
from consuldns.dns import wire
from consuldns.dns.template import render
from tests.unit.helpers import SOA_TEXT, query_bytes, reply_bytes

ADDRESSES = [f"192.0.2.{i}" for i in range(1, 6)]


def shape(reply_data: bytes, query_data: bytes, *, limit=0, rng=None, shuffle_srv=False,
          max_udp=1232):
    reply = wire.parse_reply(reply_data)
    query = wire.parse_query(query_data)
    template = render(reply, query.qname, [r.ttl for r in reply.records],
                      shuffle_srv=shuffle_srv)
    return dns.message.from_wire(answer.build(template, template.body, query, limit,
                                              max_udp=max_udp, rng=rng or random.Random(1)))


def addresses(message) -> list[str]:
    return [rdata.address for rrset in message.answer for rdata in rrset
            if rrset.rdtype in (1, 28)]


def test_reply_echoes_client_id_and_case_and_sets_forwarder_flags():
    upstream = reply_bytes("web.service.consul", "A", ADDRESSES[:2],
                           flags=dns.flags.QR | dns.flags.AA)
    message = shape(upstream, query_bytes("WEB.Service.consul", qid=321))
    assert message.id == 321
    assert message.question[0].name.to_text() == "WEB.Service.consul."
    assert message.answer[0].name.to_text() == "WEB.Service.consul."
    assert message.flags & dns.flags.RA and not message.flags & dns.flags.AA
    assert message.flags & dns.flags.RD


def test_ad_is_cleared_unless_the_client_asked_for_dnssec():
    upstream = reply_bytes("a.test", "A", ["192.0.2.1"],
                           flags=dns.flags.QR | dns.flags.RA | dns.flags.AD)
    assert not shape(upstream, query_bytes("a.test")).flags & dns.flags.AD
    assert shape(upstream, query_bytes("a.test", edns=0, want_dnssec=True)).flags & dns.flags.AD


def test_opt_only_when_the_query_had_one():
    upstream = reply_bytes("a.test", "A", ["192.0.2.1"], edns=0)
    assert shape(upstream, query_bytes("a.test")).edns == -1
    with_opt = shape(upstream, query_bytes("a.test", edns=0))
    assert with_opt.edns == 0 and with_opt.payload == 1232


def test_every_order_of_addresses_appears_and_the_set_is_kept():
    upstream = reply_bytes("multi.example.test", "A", ADDRESSES[:3])
    rng = random.Random(7)
    seen = set()
    for _ in range(200):
        got = addresses(shape(upstream, query_bytes("multi.example.test"), rng=rng))
        assert sorted(got) == sorted(ADDRESSES[:3])
        seen.add(tuple(got))
    assert len(seen) == 6


def test_cname_chain_stays_first_while_addresses_move():
    upstream = reply_bytes("www.example.test", "A", ADDRESSES,
                           extra_answers=[("alias.example.test", 60, "CNAME", "www.example.test.")])
    query = query_bytes("alias.example.test")
    data = wire.parse_reply(upstream)
    data.qname = wire.text_to_name("alias.example.test")
    template = render(data, wire.parse_query(query).qname, [r.ttl for r in data.records])
    rng = random.Random(3)
    firsts = set()
    for _ in range(50):
        message = dns.message.from_wire(answer.build(template, template.body,
                                                     wire.parse_query(query), 0, max_udp=1232,
                                                     rng=rng))
        assert message.answer[0].rdtype == 5
        firsts.add(addresses(message)[0])
    assert len(firsts) > 1


def test_srv_targets_survive_shuffling_with_their_glue():
    targets = [f"node{i}.node.dc1.consul." for i in range(4)]
    upstream = reply_bytes(
        "web.service.consul", "SRV", [f"1 1 8080 {t}" for t in targets],
        additional=[(t, 0, "A", f"192.0.2.{i}") for i, t in enumerate(targets)])
    seen = set()
    rng = random.Random(5)
    for _ in range(60):
        message = shape(upstream, query_bytes("web.service.consul", "SRV"), rng=rng,
                        shuffle_srv=True)
        order = tuple(rdata.target.to_text() for rdata in message.answer[0])
        assert sorted(order) == sorted(targets)
        assert {rrset.name.to_text() for rrset in message.additional} == set(targets)
        seen.add(order)
    assert len(seen) > 6


def test_udp_reply_without_edns_fits_512_bytes_with_whole_records_and_tc():
    many = [f"10.0.{i // 250}.{i % 250}" for i in range(40)]
    upstream = reply_bytes("many.example.test", "A", many)
    data = answer.build  # keep the name short below
    reply = wire.parse_reply(upstream)
    query = wire.parse_query(query_bytes("many.example.test"))
    template = render(reply, query.qname, [300] * len(reply.records))
    raw = data(template, template.body, query, answer.udp_limit(query, 1232), max_udp=1232)
    message = dns.message.from_wire(raw)
    assert len(raw) <= 512
    assert message.flags & dns.flags.TC
    assert 20 <= len(addresses(message)) < 40  # as many whole records as fit
    full = dns.message.from_wire(data(template, template.body, query, 0, max_udp=1232))
    assert len(addresses(full)) == 40 and not full.flags & dns.flags.TC


def test_edns_client_size_is_capped_by_our_maximum():
    query = wire.parse_query(query_bytes("a.test", edns=0, payload=4096))
    assert answer.udp_limit(query, 1232) == 1232
    assert answer.udp_limit(wire.parse_query(query_bytes("a.test")), 1232) == 512


def test_missing_additional_records_alone_do_not_set_tc():
    targets = [f"a-rather-long-node-name-{i}.node.dc1.consul." for i in range(8)]
    upstream = reply_bytes("web.service.consul", "SRV", [f"1 1 80 {t}" for t in targets[:2]],
                           additional=[(t, 0, "TXT", '"' + "x" * 100 + '"') for t in targets])
    message = shape(upstream, query_bytes("web.service.consul", "SRV"), limit=512)
    assert len(message.answer[0]) == 2
    assert not message.flags & dns.flags.TC


def test_negative_reply_keeps_rcode_and_soa():
    upstream = reply_bytes("nx.example.test", "A", rcode=3,
                           authority=[("example.test", 300, "SOA", SOA_TEXT)])
    message = shape(upstream, query_bytes("nx.example.test"))
    assert message.rcode() == 3 and message.authority[0].rdtype == 6


@pytest.mark.parametrize("size", [2, 3, 5, 6, 9])
def test_shuffled_runs_are_permutations(size):
    records = [bytes([i]) for i in range(size + 2)]
    out = answer.shuffled(records, ((1, 1 + size),), random.Random(size))
    assert out[0] == records[0] and out[-1] == records[-1]
    assert sorted(out[1:-1]) == sorted(records[1:-1])


def test_arranged_orders_cover_every_order_of_every_run_once():
    records = [bytes([i]) for i in range(7)]
    runs = ((0, 2), (3, 6))  # 2 x 6 orders; record 2 and 6 stay put
    count = answer.order_count(runs)
    orders = {tuple(answer.arranged(records, runs, index)) for index in range(count)}
    assert count == 12 and len(orders) == 12
    assert all(order[2] == records[2] and order[6] == records[6] for order in orders)
    assert answer.order_count(((0, 6),)) == 0  # too many to number: shuffled per reply


def extended_rcode_reply(rcode: int) -> bytes:
    message = dns.message.from_wire(reply_bytes("a.test", "A", ["192.0.2.1"], edns=0))
    message.use_edns(0, 0, 1232)
    message.set_rcode(rcode)  # the upper 8 bits go into the OPT record
    return message.to_wire()


@pytest.mark.parametrize("rcode", [16, 23], ids=["BADVERS", "BADCOOKIE"])
def test_extended_rcode_is_servfail_to_a_client_without_edns(rcode):
    # Without OPT the upper bits are lost: 16 would read NOERROR, 23 YXRRSET (7).
    message = shape(extended_rcode_reply(rcode), query_bytes("a.test"))
    assert message.rcode() == dns.rcode.SERVFAIL
    assert message.edns == -1 and not message.answer
    assert message.question[0].name.to_text() == "a.test."


@pytest.mark.parametrize("rcode", [16, 23], ids=["BADVERS", "BADCOOKIE"])
def test_extended_rcode_reaches_a_client_with_edns_through_opt(rcode):
    message = shape(extended_rcode_reply(rcode), query_bytes("a.test", edns=0))
    assert message.rcode() == rcode and message.edns == 0
