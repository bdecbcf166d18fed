"""`workers = N` as one cache: the kernel steers each UDP query to a worker by its name.

The UDP sockets of the N workers on one address form one SO_REUSEPORT group. A classic BPF
program attached to the group (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5) runs on every datagram
and returns the index of the socket that gets it: here a hash (FNV-1a) of the question name,
case-folded, mod N. The same name therefore always reaches the same worker, whatever the
client, its port or its query ID: one cached copy per name, one exchange per name at a time,
the agent asked as if there were one process.

What the program reads: the packet from the UDP payload on (the DNS message), the name from
offset 12 up to its terminating zero octet, at most NAME_BYTES octets (longer names are
hashed on their start). ASCII letters are folded to lower case; everything else is taken as
it is. A datagram too short to hold a name ends the program with 0: the first socket gets it.

The index is a position in the group, in the order the sockets joined it (a worker that
restarts takes a freed position): which worker owns which names may change then, the
steering stays consistent. While the group holds fewer than N sockets (workers starting),
an index past the end makes the kernel fall back to its hash of the client's address and
port. TCP cannot be steered by content (a connection is placed before any data arrives), so
TCP sockets keep the kernel's default spreading.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

from consuldns import address

log = logging.getLogger("consuldns.listener")

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)
NAME_OFFSET = 12  # the question name follows the 12-octet header
NAME_BYTES = 64  # octets of the name hashed; a name is at most 255
FNV_BASIS, FNV_PRIME = 0x811C9DC5, 0x01000193

# Classic BPF opcodes (linux/bpf_common.h, linux/filter.h).
_LDX_IMM = 0x01  # X = k
_LDB_ABS = 0x30  # A = packet[k]
_JA = 0x05  # pc += k
_JEQ_K, _JGT_K, _JGE_K = 0x15, 0x25, 0x35  # pc += (A op k) ? jt : jf
_OR_K, _RSH_K, _MUL_K, _MOD_K = 0x44, 0x74, 0x24, 0x94  # A = A op k
_XOR_X = 0xAC  # A ^= X
_TAX, _TXA = 0x07, 0x87
_RET_A = 0x16
_INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


def program(workers: int) -> list[tuple[int, int, int, int]]:
    """The steering program for a group of `workers` sockets: (code, jt, jf, k) each."""
    per_byte = 9
    end = 1 + per_byte * NAME_BYTES
    code = [(_LDX_IMM, 0, 0, FNV_BASIS)]  # X holds the hash
    for index in range(NAME_BYTES):
        after = 1 + per_byte * index + 3  # the instruction after this byte's `ja`
        code += [
            (_LDB_ABS, 0, 0, NAME_OFFSET + index),
            (_JEQ_K, 0, 1, 0),  # the root label: the name ends here
            (_JA, 0, 0, end - after),
            (_JGE_K, 0, 2, ord("A")),
            (_JGT_K, 1, 0, ord("Z")),
            (_OR_K, 0, 0, 0x20),  # lower case
            (_XOR_X, 0, 0, 0),
            (_MUL_K, 0, 0, FNV_PRIME),
            (_TAX, 0, 0, 0),
        ]
    code += [
        (_TXA, 0, 0, 0),
        (_RSH_K, 0, 0, 16),
        (_XOR_X, 0, 0, 0),  # the high half folded in: the low bits alone mix poorly
        (_MOD_K, 0, 0, workers),
        (_RET_A, 0, 0, 0),
    ]
    return code


def attach(sock: socket.socket, workers: int) -> bool:
    """Steer the datagrams of sock's SO_REUSEPORT group to its `workers` sockets by name;
    False (and a warning) where the kernel refuses, which leaves its default spreading."""
    code = program(workers)
    instructions = ctypes.create_string_buffer(
        b"".join(_INSTRUCTION.pack(*instruction) for instruction in code))
    fprog = struct.pack("@HP", len(code), ctypes.addressof(instructions))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning("workers: cannot steer UDP queries by name on %s (%s); the kernel spreads "
                    "them by client address and port, so each worker keeps its own copy of "
                    "a name and asks for it itself", _where(sock), exc.strerror or exc)
        return False
    return True


def _where(sock: socket.socket) -> str:
    try:
        return address.show(*sock.getsockname()[:2])
    except OSError:
        return "an unbound socket"
