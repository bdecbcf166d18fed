"""Semantic checks of Settings: what the types alone do not catch.

Each section has its own small checker; every problem becomes one line
`FILE: KEY: what is wrong or expected`, and all problems are reported at once. The agent's
HTTP API is checked as the watch will reach it, with the CONSUL_HTTP_* environment variables
that fill in what the settings leave empty.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pwd
import ssl
from collections.abc import Callable

from consuldns import address
from consuldns.address import Address
from consuldns.consul.http import endpoint
from consuldns.consul.transport import MODES as AGENT_TRANSPORTS
from consuldns.ops import settings as known
from consuldns.ops.settings import ConsulSettings, Settings, ZoneCacheSettings, fqdn
from consuldns.upstream.transport import parse_server

Report = Callable[[str, str], None]
MIN_CACHE_BYTES = 1024 * 1024


def problems_of(settings: Settings) -> list[str]:
    """Every problem of settings, one line each, prefixed with the settings' source."""
    problems: list[str] = []

    def report(key: str, message: str) -> None:
        problems.append(f"{settings.source}: {key}: {message}")

    for checker in (_check_server, _check_consul, _check_watch, _check_upstream, _check_zones,
                    _check_loops, _check_cache, _check_acl, _check_log, _check_admin):
        checker(settings, report)
    return problems


def _parses(parser: Callable[[str], object], text: str) -> bool:
    return _parse_problem(parser, text) is None


def _parse_problem(parser: Callable[[str], object], text: str) -> str | None:
    """What is wrong with text, in the parser's own words (address.py says how to write it)."""
    try:
        parser(text)
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


def _server_problem(text: str, default_port: int = 53) -> str | None:
    return _parse_problem(lambda t: parse_server(t, default_port), text)


def _check_server(settings: Settings, report: Report) -> None:
    server = settings.server
    if not server.listen:
        report("server.listen", "needs at least one address like '127.0.0.1:53'")
    seen: dict[Address, str] = {}
    for i, text in enumerate(server.listen):
        try:
            listen = address.parse_listen(text)
        except ValueError as exc:
            report(f"server.listen[{i}]", str(exc))
            continue
        if listen in seen:
            report("server.listen", f"lists the same address twice ({seen[listen]!r} and "
                   f"{text!r}); keep one")
        else:
            seen[listen] = text
    if not 1 <= server.workers <= 64:
        report("server.workers", "must be between 1 and 64")
    if server.user and server.user != "root" and not _user_exists(server.user):
        report("server.user", f"no user {server.user!r} on this host")
    if not 512 <= server.max_udp_size <= 65535:
        report("server.max_udp_size", "must be between 512 and 65535 (1232 avoids IP "
               "fragmentation)")
    for key in ("max_inflight", "max_tcp_connections", "tcp_idle_timeout"):
        if getattr(server, key) <= 0:
            report(f"server.{key}", "must be positive")
    if server.rate_limit < 0:
        report("server.rate_limit", "must be 0 (off) or queries per second per client")
    if server.rate_burst < 0:
        report("server.rate_burst", "must be 0 (same as rate_limit) or a number of queries")


def _check_deadline(key: str, seconds: float, report: Report) -> None:
    if not 0.1 <= seconds <= 30:
        report(key, "must be between 0.1 and 30 seconds (how long one client query may wait "
               "for this route's servers)")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _check_consul(settings: Settings, report: Report) -> None:
    consul = settings.consul
    _check_deadline("consul.timeout", consul.timeout, report)
    problem = _server_problem(consul.address, 8600)
    if problem:
        report("consul.address", problem)
    if not is_domain(consul.domain):
        report("consul.domain", "must be a domain name such as 'consul'")
    if consul.alt_domain and not is_domain(consul.alt_domain):
        report("consul.alt_domain", "must be a domain name or empty")
    if consul.transport not in AGENT_TRANSPORTS:
        report("consul.transport", f"must be one of {', '.join(AGENT_TRANSPORTS)}")
    if not 1 <= consul.udp_answer_limit <= 8:
        report("consul.udp_answer_limit", "must match the agent's dns_config.udp_answer_limit "
               "(1 to 8, default 3)")
    if not 512 <= consul.edns_size <= 65535:
        report("consul.edns_size", "must be between 512 and 65535")
    for i, zone in enumerate(consul.reverse_zones):
        if not (is_domain(zone) and fqdn(zone).endswith(".arpa.")):
            report(f"consul.reverse_zones[{i}]", f"{zone!r} is not a reverse zone like "
                   "'10.in-addr.arpa'")


def _check_watch(settings: Settings, report: Report) -> None:
    consul = settings.consul
    if consul.watch not in known.WATCH_MODES:
        report("consul.watch", f"must be one of {', '.join(known.WATCH_MODES)}")
    if consul.watch != "off":
        _check_http(consul, report)
    if not 1 <= consul.max_watches <= 150:
        report("consul.max_watches", "must be between 1 and 150 (each watch holds one of the "
               "agent's 200 HTTP connections per client address, shared with other tools)")
    for key, path in (("consul.tls.ca_file", consul.tls.ca_file),
                      ("consul.tls.cert_file", consul.tls.cert_file),
                      ("consul.tls.key_file", consul.tls.key_file)):
        if path and not os.access(path, os.R_OK):
            report(key, f"cannot read {path!r}: give its path, readable by consuldns")
    _check_tls(consul.tls, report)


def _check_http(consul: ConsulSettings, report: Report) -> None:
    """The agent's HTTP API as the watch will reach it (consul/http.endpoint, reading the
    environment): first its address, then the token file, each named by where it came from."""
    tls = dataclasses.asdict(consul.tls)
    without_token_file = {name: value for name, value in os.environ.items()
                          if name != "CONSUL_HTTP_TOKEN_FILE"}
    try:
        endpoint(consul.http, "", tls, environ=without_token_file)
    except ValueError as exc:
        report(_key_or_variable("consul.http", consul.http, "CONSUL_HTTP_ADDR"),
               f"{exc}; write HOST:PORT, http(s)://HOST:PORT, unix:///PATH or \"off\"")
        return
    try:  # the address is good: what fails now is the token file
        endpoint(consul.http, consul.token_file, tls)
    except ValueError as exc:
        report(_key_or_variable("consul.token_file", consul.token_file,
                                "CONSUL_HTTP_TOKEN_FILE"),
               f"{exc}; give its path, readable by consuldns")


def _key_or_variable(key: str, value: str, variable: str) -> str:
    """The setting's key, naming the environment variable that stood in for it if one did."""
    if value or not os.environ.get(variable):
        return key
    return f"{key} (from ${variable})"


def _check_tls(tls, report: Report) -> None:
    """The CA and client certificate files load as TLS would load them."""
    if tls.key_file and not tls.cert_file:
        report("consul.tls.key_file", "goes with cert_file (the client certificate)")
    if not (tls.ca_file or tls.cert_file):
        return  # nothing to load: the system's CA bundle alone costs ~16 ms
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (ssl.SSLError, OSError) as exc:
        report("consul.tls", f"the certificate files do not load ({exc}); give PEM files: "
               "ca_file the CA, cert_file the client certificate (with its key, or the key "
               "in key_file)")


def _check_upstream(settings: Settings, report: Report) -> None:
    upstream = settings.upstream
    for i, text in enumerate(upstream.servers):
        problem = _server_problem(text)
        if problem:
            report(f"upstream.servers[{i}]", problem)
    _check_deadline("upstream.timeout", upstream.timeout, report)
    if upstream.policy not in known.POLICIES:
        report("upstream.policy", f"must be one of {', '.join(known.POLICIES)}")
    if not 512 <= upstream.edns_size <= 65535:
        report("upstream.edns_size", "must be between 512 and 65535")
    if upstream.max_fails < 1:
        report("upstream.max_fails", "must be at least 1")
    if not 0.05 <= upstream.health_interval <= 60:
        report("upstream.health_interval", "must be between 0.05 and 60 seconds")


def _check_zones(settings: Settings, report: Report) -> None:
    taken = _agent_zones(settings)
    seen: set[str] = set()
    for i, zone in enumerate(settings.zones):
        key = f"zones[{i}]"
        if not is_domain(zone.name):
            report(f"{key}.name", "must be a domain name such as 'corp.example'")
        elif fqdn(zone.name) in taken:
            report(f"{key}.name", f"{zone.name!r} already goes to the Consul agent "
                   "([consul] domain, alt_domain or reverse_zones)")
        elif fqdn(zone.name) in seen:
            report(f"{key}.name", f"{zone.name!r} is listed twice")
        seen.add(fqdn(zone.name))
        if not zone.servers:
            report(f"{key}.servers", "needs at least one server, e.g. ['10.0.0.53']")
        for j, text in enumerate(zone.servers):
            problem = _server_problem(text)
            if problem:
                report(f"{key}.servers[{j}]", problem)
        if zone.policy not in known.POLICIES:
            report(f"{key}.policy", f"must be one of {', '.join(known.POLICIES)}")
        if zone.timeout:
            _check_deadline(f"{key}.timeout", zone.timeout, report)


def _check_loops(settings: Settings, report: Report) -> None:
    """A server that is consuldns itself: every query sent there would come back to it (and
    fail after the route's deadline)."""
    own = _listen_addresses(settings)
    for key, text, default_port in _servers_asked(settings):
        server = _address_or_none(text, default_port)  # None: reported as unreadable already
        taken = next((listen for listen in own
                      if server and address.reaches(server, listen)), None)
        if taken is not None:
            report(key, f"{text!r} is consuldns itself (server.listen "
                   f"{address.show(*taken)!r}): queries sent there would loop back; give the "
                   "server consuldns should forward to")


def _address_or_none(text: str, default_port: int | None = None) -> Address | None:
    try:
        return address.parse(text, default_port)
    except ValueError:
        return None


def _listen_addresses(settings: Settings) -> list[Address]:
    """server.listen parsed (address.parse_listen), leaving out what _check_server reports."""
    parsed = []
    for text in settings.server.listen:
        try:
            parsed.append(address.parse_listen(text))
        except ValueError:
            continue
    return parsed


def _servers_asked(settings: Settings) -> list[tuple[str, str, int]]:
    """(key, address text, default port) of every server consuldns forwards to."""
    servers = [("consul.address", settings.consul.address, 8600)]
    servers += [(f"upstream.servers[{i}]", text, 53)
                for i, text in enumerate(settings.upstream.servers)]
    servers += [(f"zones[{i}].servers[{j}]", text, 53)
                for i, zone in enumerate(settings.zones) for j, text in enumerate(zone.servers)]
    return servers


def _agent_zones(settings: Settings) -> set[str]:
    consul = settings.consul
    names = [consul.domain, consul.alt_domain, *consul.reverse_zones]
    return {fqdn(name) for name in names if name}


def is_domain(text: str) -> bool:
    """A name of 1-63 character labels without spaces ('consul', 'corp.example.')."""
    labels = text.strip().rstrip(".").split(".")
    return bool(text.strip()) and all(0 < len(label) < 64 and " " not in label
                                      for label in labels)


def _check_cache(settings: Settings, report: Report) -> None:
    cache = settings.cache
    if cache.size < 0:
        report("cache.size", "must be 0 (off) or a number of entries")
    if cache.max_bytes < MIN_CACHE_BYTES:
        report("cache.max_bytes", f"must be at least {MIN_CACHE_BYTES} (1 MiB); the default "
               "is 67108864 (64 MiB). To turn the cache off set cache.size = 0")
    _check_zone_cache("cache.consul", cache.consul, report)
    _check_zone_cache("cache.default", cache.default, report)
    zone_names = {fqdn(zone.name) for zone in settings.zones}
    keys: dict[str, str] = {}  # fqdn -> the first key naming that zone
    for name, zone_cache in cache.zones.items():
        key = f'cache.zones."{name}"'
        if fqdn(name) in keys:
            report(key, f"names the same zone as cache.zones.\"{keys[fqdn(name)]}\" (names "
                   "are compared without case and trailing dot); keep one of them")
        elif fqdn(name) not in zone_names:
            hint = (" (the Consul domain's cache is [cache.consul])"
                    if fqdn(name) in _agent_zones(settings) else "")
            report(key, f"no [[zones]] entry named {name!r}{hint}")
        keys.setdefault(fqdn(name), name)
        _check_zone_cache(key, zone_cache, report)


def _check_zone_cache(key: str, zone_cache: ZoneCacheSettings, report: Report) -> None:
    for name in ("watch_ttl", "watch_settle"):
        if key != "cache.consul" and getattr(zone_cache, name) != getattr(
                ZoneCacheSettings(), name):
            report(f"{key}.{name}", "only answers of the Consul agent are watched: set it in "
                   "[cache.consul]")
    for name in ("min_ttl", "max_ttl", "neg_min_ttl", "neg_max_ttl", "servfail_ttl",
                 "stale_window", "stale_ttl", "watch_ttl", "watch_settle"):
        if getattr(zone_cache, name) < 0:
            report(f"{key}.{name}", "must not be negative")
    if zone_cache.min_ttl > zone_cache.max_ttl:
        report(f"{key}.min_ttl", f"is above max_ttl ({zone_cache.min_ttl} > "
               f"{zone_cache.max_ttl})")
    if zone_cache.neg_min_ttl > zone_cache.neg_max_ttl:
        report(f"{key}.neg_min_ttl", "is above neg_max_ttl")
    if zone_cache.servfail_ttl > 300:
        report(f"{key}.servfail_ttl", "at most 300 seconds (a few is best)")


def _check_acl(settings: Settings, report: Report) -> None:
    for i, net in enumerate(settings.acl.allow):
        if not _parses(lambda t: ipaddress.ip_network(t, strict=False), net):
            report(f"acl.allow[{i}]", f"{net!r} is not a network like '10.0.0.0/8'")


def _check_log(settings: Settings, report: Report) -> None:
    if settings.log.level not in known.LOG_LEVELS:
        report("log.level", f"must be one of {', '.join(known.LOG_LEVELS)}")
    if settings.log.format not in known.LOG_FORMATS:
        report("log.format", f"must be one of {', '.join(known.LOG_FORMATS)}")


def _check_admin(settings: Settings, report: Report) -> None:
    listen = settings.admin.listen
    if listen in known.ADMIN_OFF:
        return
    try:
        admin = address.parse_listen(listen)
    except ValueError as exc:
        report("admin.listen", f"{exc}; or 'off' to disable the admin listener")
        return
    taken = next((dns for dns in _listen_addresses(settings) if address.overlaps(admin, dns)),
                 None)
    if taken == admin:
        report("admin.listen", f"{listen!r} is also a DNS listen address; pick another port")
    elif taken is not None:
        report("admin.listen", f"{listen!r} and the DNS listen address "
               f"{address.show(*taken)!r} take the same port (a wildcard address takes it on "
               "every address of its family); pick another port")
