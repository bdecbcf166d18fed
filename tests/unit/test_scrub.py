"""Scrubbing the answer section: only the question's name, its CNAME/DNAME chain and their
RRSIGs reach clients (issue 13, wire correctness)."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import dns.rrset

from consuldns.dns import wire
from consuldns.dns.scrub import scrub_answer
from tests.unit.helpers import SOA_TEXT

RRSIG_TAIL = "8 3 300 20300101000000 20200101000000 2143 example.test. AAAA"

Records = list[tuple[str, str, str]]


def reply(qname: str, qtype: str, answer: Records, authority: Records = (),
          additional: Records = ()) -> wire.Reply:
    """A parsed upstream reply; each record is (owner, type, rdata text), kept in order."""
    message = dns.message.make_response(dns.message.make_query(qname, qtype))
    for section, records in ((message.answer, answer), (message.authority, authority),
                             (message.additional, additional)):
        for owner, rdtype, text in records:
            section.append(dns.rrset.from_text(owner, 300, "IN", rdtype, text))
    return wire.parse_reply(message.to_wire())


def kept(scrubbed: wire.Reply, section: int = 0) -> list[tuple[str, str]]:
    """(owner as sent, type) of each record left in a section."""
    return [(wire.name_to_text(r.owner), dns.rdatatype.to_text(r.rtype))
            for r in scrubbed.section(section)]


def test_an_answer_record_for_another_name_is_dropped():
    upstream = reply("www.example.test.", "A", [
        ("www.example.test.", "A", "192.0.2.1"),
        ("victim.example.", "A", "203.0.113.66"),
    ])
    assert kept(scrub_answer(upstream)) == [("www.example.test.", "A")]


def test_names_compare_case_insensitively():
    upstream = reply("www.example.test.", "A", [
        ("www.example.test.", "CNAME", "edge.cdn.test."),
        ("edge.cdn.test.", "A", "192.0.2.7"),
    ])
    # dnspython compresses names case-insensitively (and so loses case): set it by hand.
    upstream.qname = wire.text_to_name("WWW.Example.TEST")
    upstream.records[0].rdata = wire.text_to_name("EDGE.cdn.TEST")
    assert len(kept(scrub_answer(upstream))) == 2


def test_a_cname_chain_is_kept_in_any_order_and_only_it():
    upstream = reply("www.example.test.", "A", [
        ("edge.cdn.test.", "A", "192.0.2.7"),
        ("alias.example.test.", "CNAME", "edge.cdn.test."),
        ("other.cdn.test.", "A", "203.0.113.66"),
        ("www.example.test.", "CNAME", "alias.example.test."),
    ])
    assert kept(scrub_answer(upstream)) == [
        ("edge.cdn.test.", "A"), ("alias.example.test.", "CNAME"),
        ("www.example.test.", "CNAME")]


def test_a_cname_loop_ends():
    upstream = reply("a.example.test.", "A", [
        ("a.example.test.", "CNAME", "b.example.test."),
        ("b.example.test.", "CNAME", "a.example.test."),
    ])
    assert len(kept(scrub_answer(upstream))) == 2


def test_rrsigs_of_the_chain_are_kept_and_others_dropped():
    upstream = reply("www.example.test.", "A", [
        ("www.example.test.", "A", "192.0.2.1"),
        ("www.example.test.", "RRSIG", f"A {RRSIG_TAIL}"),
        ("victim.example.", "RRSIG", f"A {RRSIG_TAIL}"),
    ])
    assert kept(scrub_answer(upstream)) == [("www.example.test.", "A"),
                                            ("www.example.test.", "RRSIG")]


def test_a_dname_above_the_name_its_synthesised_cname_and_target_are_kept():
    upstream = reply("www.old.example.", "A", [
        ("old.example.", "DNAME", "new.example."),
        ("old.example.", "RRSIG", f"DNAME {RRSIG_TAIL}"),
        ("old.example.", "A", "203.0.113.66"),  # the DNAME's owner is no chain name
        ("old.example.", "RRSIG", f"A {RRSIG_TAIL}"),
        ("www.old.example.", "CNAME", "www.new.example."),
        ("www.new.example.", "A", "192.0.2.9"),
    ])
    assert kept(scrub_answer(upstream)) == [
        ("old.example.", "DNAME"), ("old.example.", "RRSIG"), ("www.old.example.", "CNAME"),
        ("www.new.example.", "A")]


def test_a_dname_applies_at_label_boundaries_only():
    # The name's last labels are `ex\005ample.test.`: its octets end like `ample.test.`.
    upstream = reply("www.ex\\005ample.test.", "A", [
        ("ample.test.", "DNAME", "evil.test."),
        ("www.ex\\005evil.test.", "A", "203.0.113.66"),
        ("www.ex\\005ample.test.", "A", "192.0.2.1"),
    ])
    assert kept(scrub_answer(upstream)) == [("www.ex\\005ample.test.", "A")]


def test_a_dname_for_a_name_below_a_cname_target_is_followed():
    upstream = reply("www.example.test.", "A", [
        ("www.example.test.", "CNAME", "www.old.example."),
        ("old.example.", "DNAME", "new.example."),
        ("www.old.example.", "CNAME", "www.new.example."),
        ("www.new.example.", "A", "192.0.2.9"),
    ])
    assert len(kept(scrub_answer(upstream))) == 4


def test_authority_and_additional_are_not_scrubbed():
    upstream = reply("web.service.consul.", "SRV", [
        ("web.service.consul.", "SRV", "1 1 8080 node-a.node.dc1.consul."),
        ("web.service.consul.", "SRV", "1 1 8080 node-b.node.dc1.consul."),
    ], authority=[("consul.", "SOA", SOA_TEXT)], additional=[
        ("node-a.node.dc1.consul.", "A", "10.0.0.1"),
        ("node-a.node.dc1.consul.", "TXT", '"consul-network-segment="'),
        ("node-b.node.dc1.consul.", "A", "10.0.0.2"),
    ])
    scrubbed = scrub_answer(upstream)
    assert scrubbed is upstream  # nothing to drop: the same reply
    assert len(kept(scrubbed, 1)) == 1 and len(kept(scrubbed, 2)) == 3


def test_a_cname_to_an_external_name_keeps_its_addresses():
    # Consul answers a service registered with an external hostname this way.
    upstream = reply("db.service.consul.", "A", [
        ("db.service.consul.", "CNAME", "db.example.com."),
        ("db.example.com.", "A", "192.0.2.20"),
        ("db.example.com.", "A", "192.0.2.21"),
    ])
    assert len(kept(scrub_answer(upstream))) == 3


def test_a_dname_after_its_synthesised_cname_is_kept():
    upstream = reply("www.old.example.", "A", [
        ("www.old.example.", "CNAME", "www.new.example."),
        ("www.new.example.", "A", "192.0.2.9"),
        ("old.example.", "DNAME", "new.example."),
    ])
    assert len(kept(scrub_answer(upstream))) == 3
