"""Longest label-wise suffix routing."""

import pytest

from consuldns.dns import wire
from consuldns.serve.router import Route, Router

ROUTER = Router([Route("consul.", "agent"), Route("corp.example.", "corp"),
                 Route("dev.corp.example.", "dev"), Route("10.in-addr.arpa.", "agent-rev")],
                Route(".", "default"))


@pytest.mark.parametrize("name,group", [
    ("web.service.consul", "agent"),
    ("WEB.Service.CONSUL", "agent"),
    ("consul", "agent"),
    ("x.notconsul", "default"),
    ("consul.example.com", "default"),
    ("a.dev.corp.example", "dev"),
    ("a.corp.example", "corp"),
    ("4.3.2.10.in-addr.arpa", "agent-rev"),
    ("4.3.2.11.in-addr.arpa", "default"),
    (".", "default"),
])
def test_longest_suffix_wins(name, group):
    assert ROUTER.route(wire.text_to_name(name)).group == group
