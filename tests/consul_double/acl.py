"""ACL tokens as the HTTP API applies them: which token a request carries, what it may read.

A token is a list of service-name prefixes it may read (service_prefix rules with
policy read; "" reads all). Node read is granted to every token. With acl_tokens unset,
ACLs are disabled and tokens are ignored, as in Consul.
"""

from __future__ import annotations

from dataclasses import dataclass

from .http_config import HttpConfig
from .http_wire import Request

ANONYMOUS = "anonymous"  # the built-in anonymous token's secret
ACL_NOT_FOUND = "ACL not found"  # acl.ErrNotFound


class AclNotFound(Exception):
    """The request's token is not in the token table: 403."""


@dataclass(frozen=True)
class Reader:
    """What one resolved token may read; anonymous results hide the filtered header."""

    prefixes: tuple[str, ...] | None  # None: ACLs disabled, everything readable
    anonymous: bool = False

    def can_read(self, service: str) -> bool:
        return self.prefixes is None or any(service.startswith(p) for p in self.prefixes)


def request_token(request: Request) -> str:
    """?token=, then X-Consul-Token, then Authorization: Bearer (agent/http.go parseToken)."""
    token = request.param("token")
    if token:
        return token
    token = request.header("x-consul-token")
    if token:
        return token
    scheme, _, value = request.header("authorization").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def resolve(config: HttpConfig, request: Request) -> Reader:
    """The Reader for a request; no token means the agent's default token, then anonymous."""
    tokens = config.acl_tokens
    if tokens is None:
        return Reader(None)
    secret = request_token(request) or config.acl_default_token or ANONYMOUS
    if secret in tokens:
        return Reader(tuple(tokens[secret]), anonymous=secret == ANONYMOUS)
    if secret == ANONYMOUS:
        return Reader((), anonymous=True)  # default policy deny: reads nothing
    raise AclNotFound(ACL_NOT_FOUND)
