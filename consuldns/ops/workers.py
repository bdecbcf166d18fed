"""`workers = N`: N serving processes on the same addresses, spread by SO_REUSEPORT.

The supervisor forks the workers before any event loop exists; each worker runs the normal
single-process server (its own sockets bound with SO_REUSEPORT, its own cache, coalescing and
stale logic). The kernel steers each UDP query to a worker by its name (serve/steering.py),
so a name lives in one worker's cache; TCP connections go by the client's address and port.
The supervisor forwards SIGTERM, SIGINT and SIGHUP to every worker, restarts a worker that
dies while serving, and exits with the workers' status once they have all stopped. A worker
that fails while starting (a port already taken, say) stops the whole server: restarting it
would fail the same way.

Operators see one server: each worker gets a slot number (a replacement takes the slot of
the worker it replaces) and the private directory the supervisor made for them all (owned by
the user the workers drop to; removed when the supervisor exits). Every worker serves the
admin endpoints on its own unix socket there; the worker in slot 0 also owns the public admin
port and answers it for all of them (ops/fleet.py).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("consuldns.workers")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPPING = (signal.SIGTERM, signal.SIGINT)
STARTUP_GRACE = 2.0  # a worker dying sooner than this after its start failed to start
RESTART_WINDOW = 60.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Worker:
    """Who a worker is: its slot among `count`, and the directory of their private sockets."""

    slot: int
    count: int
    directory: Path

    def socket_path(self, slot: int) -> Path:
        """The unix socket on which the worker in `slot` serves the admin endpoints."""
        return self.directory / f"worker-{slot}.sock"


class Supervisor:
    """Forks, watches and stops the workers; one instance per serving process tree."""

    def __init__(self, count: int, serve_one: Callable[[Worker], int],
                 owner: tuple[int, int] | None = None):
        self.count = count
        self.serve_one = serve_one
        self.owner = owner  # (uid, gid) the workers switch to, to own their directory
        self.directory = Path(".")
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
        self.stopping = False
        self.restarts: list[float] = []
        self.status = 0

    def run(self) -> int:
        previous = {signum: signal.signal(signum, self._forward) for signum in FORWARDED}
        self.directory = Path(tempfile.mkdtemp(prefix="consuldns-workers-"))
        try:
            if self.owner is not None:
                os.chown(self.directory, *self.owner)
            for slot in range(self.count):
                self._spawn(slot)
            log.info("supervising %d workers (pids %s); their admin sockets are in %s",
                     self.count, " ".join(str(pid) for pid in self.children), self.directory)
            while self.children:
                pid, wait_status = os.wait()  # PEP 475: retried after a signal handler ran
                self._reap(pid, os.waitstatus_to_exitcode(wait_status))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.status

    # ------------------------------------------------------------ workers

    def _spawn(self, slot: int) -> None:
        """Fork one worker; signals stay blocked until each side has its handlers."""
        parent = os.getpid()
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_worker(parent, Worker(slot, self.count, self.directory))
            self.children[pid] = (slot, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)

    def _become_worker(self, parent: int, worker: Worker) -> None:
        """Run the server in this forked child; never returns."""
        code = 1
        try:
            for signum in STOPPING:
                signal.signal(signum, signal.SIG_DFL)
            # Until the server installs its own SIGHUP handler, a reload signal is ignored
            # rather than fatal.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _die_with_parent(parent)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            code = self.serve_one(worker)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d (slot %d) failed", os.getpid(), worker.slot)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self, pid: int, code: int) -> None:
        slot, started = self.children.pop(pid, (None, 0.0))
        if slot is None:
            return
        if self.stopping:
            self.status = max(self.status, code, 0)
            return
        if time.monotonic() - started < STARTUP_GRACE:
            log.error("worker %d exited with %d while starting; stopping", pid, code)
            self.status = code if code > 0 else 1
            self._stop_all()
            return
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
        if len(self.restarts) > 3 * self.count:
            log.error("workers keep dying (%d restarts in %.0f s); stopping",
                      len(self.restarts), RESTART_WINDOW)
            self.status = 1
            self._stop_all()
            return
        log.warning("worker %d exited with %d; starting another", pid, code)
        self._spawn(slot)

    # ------------------------------------------------------------ signals

    def _forward(self, signum: int, _frame) -> None:
        if signum in STOPPING:
            self.stopping = True
        for pid in list(self.children):
            _signal(pid, signum)

    def _stop_all(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies, so no worker outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)


def supervise(count: int, serve_one: Callable[[Worker], int],
              owner: tuple[int, int] | None = None) -> int:
    """Run serve_one in `count` forked workers until they stop; the exit code. `owner` is the
    (uid, gid) the workers will run as, when they drop root."""
    return Supervisor(count, serve_one, owner).run()
