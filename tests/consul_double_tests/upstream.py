"""A loopback upstream for recursor tests, built on dnslib's server (UDP and TCP, one port)."""

from __future__ import annotations

from dnslib import RCODE, RR, DNSRecord
from dnslib.server import DNSLogger, DNSServer

from tests.consul_double.server import bind_pair


class ZoneResolver:
    """Answers names in `records` (name -> (type, rdata text, ttl)); otherwise `rcode`."""

    def __init__(self, records: dict[str, tuple[str, str, int]], rcode: int = RCODE.NXDOMAIN):
        self.records = {k.lower().rstrip(".") + ".": v for k, v in records.items()}
        self.rcode = rcode
        self.asked: list[str] = []

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower()
        self.asked.append(name)
        found = self.records.get(name)
        if found is None:
            reply.header.rcode = self.rcode
            return reply
        rtype, text, ttl = found
        reply.add_answer(*RR.fromZone(f"{name} {ttl} IN {rtype} {text}"))
        return reply


QUIET = DNSLogger(logf=lambda message: None)


class Upstream:
    """Start with .start(); .address is "127.0.0.1:PORT"; .stop() shuts both servers."""

    def __init__(self, resolver: ZoneResolver) -> None:
        self.resolver = resolver
        for _ in range(20):  # the free pair may be taken between probe and bind: retry
            udp, tcp = bind_pair("127.0.0.1", 0)
            self.port = udp.getsockname()[1]
            udp.close()
            tcp.close()
            try:
                self.servers = [
                    DNSServer(resolver, address="127.0.0.1", port=self.port, logger=QUIET),
                    DNSServer(resolver, address="127.0.0.1", port=self.port, tcp=True,
                              logger=QUIET),
                ]
                break
            except OSError:
                continue
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        for server in self.servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            server.server.server_close()

