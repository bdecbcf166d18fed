"""The exceptions of consuldns; each docstring says what the error means."""


class ConsulDNSError(Exception):
    """Base class of every consuldns error."""


class ConfigError(ConsulDNSError):
    """The configuration is invalid; the message names the file, the key and the fix."""


class MalformedPacket(ConsulDNSError):
    """A packet that cannot be read at all: dropped (client side) or distrusted (upstream)."""


class FormatError(ConsulDNSError):
    """A query readable enough to answer but not to serve: answered with its rcode (FORMERR)."""

    def __init__(self, message: str, rcode: int = 1):
        super().__init__(message)
        self.rcode = rcode


class UpstreamError(ConsulDNSError):
    """No server of a group gave a usable answer."""

    def __init__(self, message: str, rcode: int | None = None):
        super().__init__(message)
        self.rcode = rcode


class UpstreamTimeout(UpstreamError):
    """The query's deadline passed before any server answered."""


class OutOfSockets(UpstreamError):
    """This process could not open a socket (EMFILE, ENFILE): no server was asked, so none
    is to blame. The client still gets SERVFAIL or a stale answer."""
