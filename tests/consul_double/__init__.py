"""A Consul agent DNS double: plays the agent's DNS interface (default 127.0.0.1:8600).

No Consul binary can be installed here, so this package answers DNS the way the agent
does, following ../shared/docs/consul-dns.md (its closing checklist is the scope) and
the agent's code where the page is silent. Two profiles: ``modern`` (1.19.2+, the
"legacy/v1" server of agent/dns.go) and ``0.6.4``.

Use
---
::

    python -m tests.consul_double --listen 127.0.0.1:8600 --catalog catalog.json \\
        [--profile modern|0.6.4] [--control 127.0.0.1:PORT] [--port-file F] [--seed N]

    from tests.consul_double import start_double, start_in_thread
    double = start_double(catalog, "0.6.4", node_ttl="10s")   # a subprocess
    double.address, double.pid, double.control.set_check("critical", service_id="web-1")
    double.stop()                                             # SIGTERM to its PID

Catalog file::

    {"config": {"datacenter": "dc1", "node_ttl": "10s", "service_ttl": {"web*": "5s"},
                "only_passing": false, "recursors": ["127.0.0.1:5353"],
                "prepared_queries": {"web-q": {"service": "web", "ttl": "7s", "tags": ["v1"]}}},
     "nodes": [{"name": "node1", "address": "10.0.0.1", "ipv6": "fd00::1", "datacenter": "dc1",
                "meta": {"rack": "r1"}, "checks": [{"id": "serfHealth", "status": "passing"}]}],
     "services": [{"id": "web-1", "name": "web", "node": "node1", "port": 8080,
                   "tags": ["v1"], "address": "", "weights": {"passing": 1, "warning": 1},
                   "checks": [{"status": "warning"}]}]}

Consul servers (for NS/SOA answers) are the nodes running a service named "consul".

What is modelled
----------------
* UDP and TCP on one port, one handler; an asyncio loop (uvloop when installed).
* Zones: the domain, the alt domain (modern), "arpa."; "." only with recursors. Out of
  zone without recursors: REFUSED (modern, AA=0 RA=0, no OPT) or SERVFAIL (0.6.4).
  DS goes to the parent-most zone, as miekg's ServeMux routes it.
* Name parsing per profile: node, service, tag (dots allowed), RFC 2782 (modern: the
  "service" label is optional for SRV), prepared queries (modern: _q._proto form),
  .addr (modern), .virtual and .connect (modern, from per-service fields), the
  <dc>/<dc>.dc localities (modern) and 0.6.4's "innermost datacenter label wins".
* Answers: A/AAAA/ANY/SRV for services (service address overrides node's; dedup; the
  modern TXT-as-A quirk; .addr SRV targets for service IPs), node A/AAAA/TXT/ANY with
  node-meta TXT (RFC 1464, rfc1035- keys), PTR for node and (modern) service
  addresses, SOA/NS with glue for any in-zone name (modern), NXDOMAIN+SOA, NODATA+SOA,
  node NODATA without SOA, apex rules, AXFR (NOTIMP modern, lookup 0.6.4). 0.6.4 puts
  an SOA in Authority for every SOA query before the lookup runs (so a negative SOA
  query carries it twice), as its handleQuery does.
* Header: ID, RD and CD copied, QR, AA in zone, RA only with recursors, question
  echoed as sent; owner names keep the client's case. miekg's accept rules (modern):
  FORMERR for QDCOUNT != 1 and too many records, NOTIMP for opcodes other than
  QUERY/NOTIFY, responses ignored; 0.6.4: no question -> SERVFAIL.
* TTLs: 0 by default; node_ttl; service_ttl (modern: exact, longest prefix*, 0;
  0.6.4: exact, "*"); prepared-query TTL; SOA min_ttl (modern).
* Health: critical (also node checks and maintenance) excluded; only_passing; modern
  SRV weights from Weights.Passing/Warning.
* Consul's Fisher-Yates shuffle of instances on every query (and of NS servers).
* Trimming, silent unless enable_truncate: modern trimUDPResponse (count cap
  min(udp_answer_limit, 8) without EDNS, sized uncompressed then; client buffer - 8
  with EDNS; at least one answer; Authority dropped first; binary search), syncExtra
  (one Additional RR per remaining SRV target, which also drops meta TXT and the OPT,
  as the code does; keep_opt_when_trimmed keeps the OPT, as Consul 1.10+ does), TCP caps (4096/1024 answers, 65523 bytes), a_record_limit; 0.6.4:
  3 answers and 512 bytes uncompressed, EDNS ignored, TCP untrimmed, optional
  srv_trim_bug (issue #1931: ANSWER 0, full Additional, SOA). miekg's compression
  rules (SRV targets never compressed, case-sensitive) decide sizes.
* EDNS (modern): OPT mirrored with the client's size, version 0, no DO; ECS mirrored
  with scope 0 (prepared queries: the source prefix). 0.6.4 never returns OPT.
* Recursors: the query forwarded unchanged over the client's transport, the reply
  relayed; modern skips replies other than NOERROR/NXDOMAIN; all failed -> SERVFAIL
  RA=1 (OPT echoed in modern); unknown PTR recurses.
* Faults: latency, drop, lost servers (SERVFAIL after a delay, only where the agent
  would need an RPC: modern .addr still answers, PTR turns NXDOMAIN, SOA loses its NS;
  0.6.4 PTR recurses), close_tcp. Unknown datacenter: NXDOMAIN (modern) / SERVFAIL.
* Live catalog: every query reads the current snapshot; changes apply at once.

What is not modelled, and why
-----------------------------
* WAN address translation (translate_wan_addrs), tagged addresses other than
  lan_ipv6, service tagged addresses, peering, namespaces/partitions, sameness groups:
  consuldns only forwards and caches, and nothing in its tests depends on them.
  ".peer" localities answer NXDOMAIN; ingress gateways are always NXDOMAIN.
* Resolving hostname (CNAME) targets outside the zone through the recursors: the
  double returns the CNAME alone (in-zone targets are resolved, 3 levels deep).
  Blocking the answer path on network I/O would slow every query.
* ACLs and tokens, allow_stale/max_stale, use_cache/cache_max_age, RPC retries and
  rpc_hold_timeout timing: there is one in-memory "server", always fresh; lost
  servers are a fault the test sets, with the delay it chooses.
* Prepared-query near sorting, failover and templates: results are shuffled, as
  the servers do without "near".
* recursor_strategy=random, go-sockaddr recursor templates, disable_compression,
  re-packing of relayed replies (they pass through byte for byte).
* Node meta TXT order: Go iterates maps at random; the double keeps catalog order.
  Only consul-network-segment is added to every node (no consul-version).
* An AAAA query for an IPv4-only node: the code reads as if it returned a CNAME to
  the IPv4 literal; consul-dns.md says NOERROR with no records, which the double does.
* 0.6.4's response to QR=1 packets and odd opcodes is not known; it answers them.
* The 1.19.0/1.19.1 rewritten server (a short-lived outlier per consul-dns.md §11).
"""

from .control import Counters, DoubleControl, DoubleControlError
from .process import DoubleProcess, DoubleStartError, start_double, start_in_thread

__all__ = ["Counters", "DoubleControl", "DoubleControlError", "DoubleProcess",
           "DoubleStartError", "start_double", "start_in_thread"]
