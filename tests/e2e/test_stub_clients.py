"""dig, kdig and Node.js (c-ares) as clients of `consuldns serve` (issue 7: real clients).

Three stub resolver families: BIND's (dig), Knot's (kdig, TCP connection reuse with
+keepopen) and c-ares (Node's dns.Resolver), each with its own idea of EDNS, truncation and
TCP fallback. `--log-queries` shows which transport each query really used.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.harness import catalogs
from tests.harness import upstream as zone
from tests.harness.tools import need


def run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def query_lines(server, name: str) -> list[dict[str, str]]:
    """The query log lines of `server` for `name`, as key=value dicts."""
    lines = []
    for line in server.log_text().splitlines():
        if "consuldns.queries" in line and f"name={name}" in line:
            lines.append(dict(re.findall(r"(\w+)=(\S+)", line)))
    return lines


SHARED_CONSULDNS_ARGS = ["--log-queries"]  # for the module's shared_consuldns


@pytest.fixture
def server(shared_consuldns):
    """The module's consuldns, cache and log emptied (query_lines reads what this test did);
    its log is opened for appending, so it carries on at the new end."""
    shared_consuldns.proc_handle.log_path.write_text("")
    return shared_consuldns


# ------------------------------------------------------------------------------ dig


def dig(server, *args: str) -> subprocess.CompletedProcess:
    need("dig", "bind9-dnsutils")
    return run(["dig", "-p", str(server.port), f"@{server.host}", "+time=3", "+tries=1",
                *args])


def test_dig_udp_tcp_and_truncation_fallback(server):
    out = dig(server, "+short", "web.service.consul")
    assert sorted(out.stdout.split()) == sorted(catalogs.WEB_HEALTHY)
    out = dig(server, "+short", "+tcp", "db.service.consul")
    assert out.stdout.split() == [catalogs.DB_ADDRESS]
    # Without EDNS the 40 records do not fit in 512 bytes: dig sees TC and retries over TCP.
    out = dig(server, "+noedns", zone.MANY.name)
    assert "Truncated, retrying in TCP mode" in out.stdout
    assert sorted(re.findall(r"IN[ \t]+A[ \t]+(\S+)", out.stdout)) == sorted(zone.MANY.values)
    # With EDNS 1232 a 2 KB TXT is truncated too; dig falls back the same way.
    out = dig(server, "+bufsize=1232", zone.BIG.name, "TXT")
    assert "Truncated, retrying in TCP mode" in out.stdout and "status: NOERROR" in out.stdout
    assert [line["transport"] for line in query_lines(server, zone.BIG.name)] == ["udp", "tcp"]


def test_dig_rcodes_and_flags(server):
    nx = dig(server, "nope.service.consul")
    assert "status: NXDOMAIN" in nx.stdout
    assert re.search(r"flags: qr rd ra;", nx.stdout)  # AA cleared, no AD/CD/Z
    nodata = dig(server, "web.service.consul", "AAAA")
    assert "status: NOERROR" in nodata.stdout and "ANSWER: 0," in nodata.stdout
    chaos = dig(server, "version.bind", "TXT", "CH")
    assert "status: REFUSED" in chaos.stdout
    any_reply = dig(server, zone.WWW.name, "ANY")
    assert "HINFO" in any_reply.stdout and "RFC8482" in any_reply.stdout
    dnssec = dig(server, "+dnssec", zone.WWW.name)
    assert "status: NOERROR" in dnssec.stdout and "; EDNS: version: 0, flags: do;" in dnssec.stdout


# ----------------------------------------------------------------------------- kdig


def tcp_connections_closed(port: int) -> int:
    """Connections to or from `port` in TIME-WAIT: one per closed TCP connection. Waits
    (2 s at most) until no connection is still closing, such as the harness's readiness
    probe, which would otherwise reach TIME-WAIT later and count as one of the test's."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and _closing(port):
        time.sleep(0.02)
    out = run(["ss", "-tanH", "state", "time-wait", f"( dport = :{port} or sport = :{port} )"])
    return len([line for line in out.stdout.splitlines() if line.strip()])


def _closing(port: int) -> bool:
    out = run(["ss", "-tanH", "state", "connected", "exclude", "established",
               "exclude", "time-wait", f"( dport = :{port} or sport = :{port} )"])
    return any(line.strip() for line in out.stdout.splitlines())


def test_kdig_keepopen_reuses_one_tcp_connection(server):
    need("kdig", "knot-dnsutils")
    names = ["web.service.consul", zone.WWW.name, zone.MANY.name, zone.NX_NAME,
             "db.service.consul", zone.ALIAS.name]
    before = tcp_connections_closed(server.port)
    argv = ["kdig", "-p", str(server.port), f"@{server.host}", "+tcp", "+keepopen",
            "+timeout=3", "+retry=0"]
    for name in names:
        argv += [name, "A"]
    out = run(argv)
    assert out.returncode == 0, out.stderr
    blocks = out.stdout.split(";; ->>HEADER<<-")[1:]
    assert len(blocks) == len(names)
    statuses = [re.search(r"status: (\w+)", block).group(1) for block in blocks]
    assert statuses == ["NOERROR", "NOERROR", "NOERROR", "NXDOMAIN", "NOERROR", "NOERROR"]
    assert "ANSWER: 40;" in blocks[2]  # over TCP the whole answer, no TC
    assert all("(TCP)" in block for block in blocks)
    ports = set(re.findall(r";; From \S+@(\d+)\(TCP\)", out.stdout))
    assert ports == {str(server.port)}
    assert tcp_connections_closed(server.port) - before == 1  # one connection for all six
    # Without +keepopen kdig opens one connection per query: the check above can fail.
    argv.remove("+keepopen")
    run(argv)
    assert tcp_connections_closed(server.port) - before == 1 + len(names)


def test_kdig_udp_truncation_and_edns(server):
    need("kdig", "knot-dnsutils")
    base = ["kdig", "-p", str(server.port), f"@{server.host}", "+timeout=3", "+retry=0"]
    out = run([*base, "+noedns", "+ignore", zone.MANY.name])
    assert re.search(r"Flags: qr tc rd ra;", out.stdout)
    kept = re.findall(r"\tA\t(\S+)", out.stdout)
    assert 10 <= len(kept) < 40 and set(kept) <= set(zone.MANY.values)  # whole records
    out = run([*base, "+edns=0", "+bufsize=1232", zone.MANY.name])
    assert "ANSWER: 40;" in out.stdout and "tc" not in out.stdout.split("Flags:")[1][:20]
    out = run([*base, "+edns=1", zone.WWW.name])
    assert "status: BADVERS" in out.stdout


# ------------------------------------------------------------------ Node.js (c-ares)

CARES_SCRIPT = r"""
const dns = require('node:dns');
const resolver = new dns.promises.Resolver({timeout: 3000, tries: 1});
resolver.setServers([process.argv[1]]);
const jobs = {
  a: () => resolver.resolve4('web.service.consul', {ttl: true}),
  aaaa: () => resolver.resolve6('web.service.consul'),
  nx: () => resolver.resolve4('nope.service.consul'),
  srv: () => resolver.resolveSrv('web.service.consul'),
  many: () => resolver.resolve4('many.example.test'),
  txt: () => resolver.resolveTxt('big.example.test'),
  cname: () => resolver.resolveCname('alias.example.test'),
  dual6: () => resolver.resolve6('dual.example.test'),
  mx: () => resolver.resolveMx('example.test'),
};
(async () => {
  const out = {};
  for (const [key, job] of Object.entries(jobs)) {
    const started = Date.now();
    try { out[key] = {ok: await job()}; } catch (error) { out[key] = {error: error.code}; }
    out[key].ms = Date.now() - started;
  }
  console.log(JSON.stringify(out));
})();
"""


def test_node_cares_resolver(server):
    need("node", "nodejs")
    out = run(["node", "-e", CARES_SCRIPT, server.address])
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert sorted(r["address"] for r in got["a"]["ok"]) == sorted(catalogs.WEB_HEALTHY)
    assert {r["ttl"] for r in got["a"]["ok"]} == {0}  # the agent's TTL 0, passed through
    assert got["aaaa"]["error"] == "ENODATA"  # NOERROR/empty, not an error rcode
    assert got["nx"]["error"] == "ENOTFOUND"
    assert sorted(r["port"] for r in got["srv"]["ok"]) == [catalogs.WEB_PORT] * 4
    assert sorted(got["many"]["ok"]) == sorted(zone.MANY.values)  # TC, then TCP
    assert len("".join(got["txt"]["ok"][0])) == 2000
    assert got["cname"]["ok"] == [zone.ALIAS2.name.rstrip(".")]
    assert got["dual6"]["ok"] == list(zone.DUAL_AAAA.values)
    assert sorted(r["exchange"] for r in got["mx"]["ok"]) == ["mx1.example.test",
                                                              "mx2.example.test"]
    assert all(result["ms"] < 3000 for result in got.values())  # none waited for its timeout
    # 2 KB of TXT fits no UDP reply whatever c-ares advertises: TC over UDP, then TCP.
    big = query_lines(server, zone.BIG.name)
    assert [line["transport"] for line in big] == ["udp", "tcp"]
    many = query_lines(server, zone.MANY.name)
    if int(many[0]["answers"]) < 40:  # without EDNS (c-ares before 1.22): TC, then TCP
        assert [line["transport"] for line in many] == ["udp", "tcp"]
        assert many[1]["answers"] == "40"
