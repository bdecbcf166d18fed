"""LISTEN/REPLY packet I/O: datagrams in and out of a UDP socket, in batches.

Two implementations of one contract. The accelerator, the C extension consuldns._packetio,
moves up to MAX_BATCH datagrams per system call (recvmmsg/sendmmsg) and is built by
`pip install` where a C compiler exists. The fallback below does the same with one
recvfrom/sendto per datagram. The accelerator runs unless it was not built or
CONSULDNS_NO_ACCEL=1; `consuldns --version` says which one does.

- recv_batch(sock, max_count) -> [(data, address), ...]: up to max_count (1..MAX_BATCH)
  waiting datagrams, [] when none wait; data beyond MAX_DATAGRAM bytes is cut off. An error
  before the first datagram raises OSError.
- send_batch(sock, pairs) -> [(index, errno), ...]: sends (bytes, address) pairs and returns
  those not sent: one the kernel refused, with its errno, and, once the send buffer is full
  (EAGAIN), that pair and every later one, not tried. A closed socket raises OSError.

The socket is a non-blocking UDP socket object (IPv4 or IPv6).

An address behaves like recvfrom's tuple: address[0] is the host text, address[1] the port.
The accelerator's Address keeps the kernel's bytes (no text made until asked for, the same
str object for a client seen recently); send_batch takes it back, or a numeric tuple.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import NamedTuple

# The accelerator's limits too (consuldns/_packetio.c; tests/unit/test_packetio.py checks).
MAX_BATCH = 64
MAX_DATAGRAM = 4096  # no legitimate query is longer: cut off, as recvfrom(4096) cuts it
DISABLE_VARIABLE = "CONSULDNS_NO_ACCEL"
# Errors of the socket itself rather than of one datagram: send_batch raises them.
_SOCKET_ERRORS = (errno.EBADF, errno.ENOTSOCK)


class Implementation(NamedTuple):
    """One packet I/O implementation and the line `consuldns --version` prints for it."""

    description: str
    recv_batch: Callable[[socket.socket, int], list]
    send_batch: Callable[[socket.socket, list], list]


def _recv_batch(sock: socket.socket, max_count: int) -> list:
    """recvfrom until the socket is drained or max_count datagrams were read."""
    if not 1 <= max_count <= MAX_BATCH:
        raise ValueError(f"max_count must be 1 to {MAX_BATCH}")
    batch: list = []
    append = batch.append
    receive = sock.recvfrom
    try:
        for _ in range(max_count):
            append(receive(MAX_DATAGRAM))
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        if not batch:
            raise
    return batch


def _send_batch(sock: socket.socket, pairs: list) -> list:
    """sendto per pair; what was not sent, as the accelerator reports it."""
    failures: list = []
    send = sock.sendto
    for index, (reply, address) in enumerate(pairs):
        try:
            send(reply, address)
        except BlockingIOError:
            failures.extend((unsent, errno.EAGAIN) for unsent in range(index, len(pairs)))
            break
        except OSError as exc:
            if exc.errno in _SOCKET_ERRORS:
                raise
            failures.append((index, exc.errno))
    return failures


PURE_PYTHON = Implementation("pure-Python packet I/O (recvfrom/sendto)", _recv_batch,
                             _send_batch)


def accelerator() -> Implementation | None:
    """The compiled implementation, or None where it was not built."""
    try:
        from consuldns import _packetio
    except ImportError:
        return None
    return Implementation("accelerated packet I/O (recvmmsg/sendmmsg)", _packetio.recv_batch,
                          _packetio.send_batch)


def load() -> Implementation:
    """The accelerator unless it is missing or disabled by CONSULDNS_NO_ACCEL=1."""
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return PURE_PYTHON._replace(
            description=f"{PURE_PYTHON.description}; accelerator disabled by {DISABLE_VARIABLE}")
    found = accelerator()
    if found is None:
        return PURE_PYTHON._replace(
            description=f"{PURE_PYTHON.description}; accelerator not built")
    return found


ACTIVE = load()


def describe() -> str:
    """Which packet I/O this process runs, for `consuldns --version` and the startup log."""
    return ACTIVE.description
