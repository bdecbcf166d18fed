"""POLICY: which clients may use the resolver. Everyone else gets REFUSED, never recursion."""

from __future__ import annotations

import ipaddress

DEFAULT_ALLOW = (
    "127.0.0.0/8", "::1/128",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 shared address space
    "169.254.0.0/16", "fe80::/10",  # link-local
    "fc00::/7",  # unique local
)
_MEMO_LIMIT = 65536


class AccessList:
    """Allowed client networks, with a memo so the per-packet check is one dict lookup."""

    def __init__(self, allow: list[str] | tuple[str, ...] = DEFAULT_ALLOW):
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allow]
        self._memo: dict[str, bool] = {}

    def allows(self, address: str) -> bool:
        verdict = self._memo.get(address)
        if verdict is None:
            verdict = self._check(address)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[address] = verdict
        return verdict

    def _check(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)
