"""HOST:PORT: the one parser and formatter of addresses, for flags, config keys and logs.

Hosts are IP addresses, never names: consuldns must not depend on DNS to find the servers
it forwards DNS to. IPv6 addresses are written in brackets when a port follows: `[::1]:53`.
"""

from __future__ import annotations

import ipaddress
import socket

Address = tuple[str, int]


def parse(text: str, default_port: int | None = None) -> Address:
    """`HOST:PORT` or `[V6]:PORT` into (host, port); a bare HOST (or V6) takes default_port
    when there is one. ValueError says what is wrong and how to write it instead."""
    text = text.strip()
    host, port_text = _split(text)
    if port_text is None:
        if default_port is None:
            raise ValueError(_no_port(text, host))
        port = default_port
    else:
        port = _port(text, port_text)
    _check_ip(text, host, show("127.0.0.1", port) if port_text else "127.0.0.1")
    return host, port


def _no_port(text: str, host: str) -> str:
    if _is_ip(host):
        return f"{text!r} has no port: add one, e.g. '{show(host, 53)}'"
    return (f"{text!r} has no port and is not an IP address (names are not resolved here): "
            "write e.g. '127.0.0.1:53'")


def _split(text: str) -> tuple[str, str | None]:
    """(host, port text or None) of HOST:PORT, [V6]:PORT, [V6], HOST or a bare V6."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT, e.g. '[::1]:53'")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        return text, None  # a bare IPv6 address: a port needs brackets
    host, sep, port_text = text.partition(":")
    return host, port_text if sep else None


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit():
        raise ValueError(f"{text!r}: the port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range (0-65535)")
    return port


def _check_ip(text: str, host: str, example: str) -> None:
    if not _is_ip(host):
        where = f"{text!r}: {host!r}" if host != text else repr(text)
        raise ValueError(f"{where} is not an IP address (names are not resolved here: write "
                         f"the address, e.g. '{example}')")


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(family_of(host), host)
    except OSError:
        return False
    return True


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def show(host: str, port: int) -> str:
    """`host:port`, IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical(address: Address) -> Address:
    """The host as the kernel writes it back (getsockname), so addresses compare equal."""
    host, port = address
    family = family_of(host)
    return socket.inet_ntop(family, socket.inet_pton(family, host)), port


def parse_listen(text: str) -> Address:
    """A listen address (HOST:PORT, the port required), canonical: two spellings of one
    address ('127.0.0.1:05353', '127.0.0.1:5353') parse to equal tuples."""
    return canonical(parse(text))


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: (however written): a socket bound there takes every address of its
    family."""
    return ipaddress.ip_address(host).is_unspecified


def overlaps(one: Address, other: Address) -> bool:
    """Do the two listen addresses take the same port: the same address, or a wildcard and
    any address of its family? Two TCP listeners on such addresses cannot both be bound."""
    if one[1] != other[1] or family_of(one[0]) != family_of(other[0]):
        return False
    return canonical(one) == canonical(other) or is_wildcard(one[0]) or is_wildcard(other[0])


def reaches(server: Address, listen: Address) -> bool:
    """Would a query sent to `server` arrive at a socket bound to `listen`? A wildcard listen
    address (0.0.0.0, ::) takes the loopback and unspecified addresses of its family too."""
    if server[1] != listen[1] or family_of(server[0]) != family_of(listen[0]):
        return False
    host, bound = ipaddress.ip_address(server[0]), ipaddress.ip_address(listen[0])
    return host == bound or (bound.is_unspecified and (host.is_loopback or host.is_unspecified))
