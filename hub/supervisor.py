"""``rop up``'s supervisor: start the hub's processes, restart the one that dies, stop them all.

Each child runs in a process group of its own (the terminal's Ctrl-C reaches ``rop up``
once, and a child's own children — gunicorn's workers — are stopped with it) and gets
SIGTERM if ``rop up`` itself dies (``PR_SET_PDEATHSIG``). ``rop up`` is the children's
*subreaper* (``PR_SET_CHILD_SUBREAPER``): what a dead child leaves behind (gunicorn workers
whose master was killed, the embedded Redis server once it has daemonized) is re-parented to
it, so it knows when they are gone.

A death is noticed at once: SIGCHLD wakes the loop (``signal.set_wakeup_fd``), which reaps
with ``waitpid``. The dead child's group is sent SIGTERM (SIGKILL after ``remnant_timeout``)
and the child starts again, in its group, once that group is empty and its backoff has
passed: ``backoff_first`` seconds, doubled after each death up to ``backoff_cap``; a child
that had stayed up ``stable_after`` seconds starts over at ``backoff_first``. A child that
dies more than ``max_restarts`` times within ``window`` seconds makes ``rop up`` give up:
it stops everything and exits 1. The others keep serving meanwhile.

SIGINT or SIGTERM stops everything: SIGTERM to every group, SIGKILL to what is left after
``stop_timeout`` seconds (or at once on a second signal).
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)
    except OSError:  # not Linux: no death signal, no subreaper; the rest still works
        pass


def become_subreaper() -> None:
    """Orphaned descendants of this process are re-parented to it (and reaped by it)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _child_setup() -> None:
    """In the child, before exec: a process group of its own, SIGTERM when ``rop up`` dies."""
    os.setpgid(0, 0)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_status(status: int) -> str:
    """A wait status as words: ``exited with status 3``, ``killed by SIGKILL``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


@dataclass
class Policy:
    """When to restart and when to give up (``rop up``'s options set the last two)."""

    #: the first restart's delay (seconds); doubled after each death
    backoff_first: float = 0.5
    #: the longest delay
    backoff_cap: float = 30.0
    #: a child that stayed up this long before dying starts its backoff over
    stable_after: float = 60.0
    #: deaths of one child within ``window`` seconds that are still restarted; one more gives up
    max_restarts: int = 5
    window: float = 60.0
    #: SIGTERM → SIGKILL for what a dead child left behind (gunicorn's workers)
    remnant_timeout: float = 10.0
    #: SIGTERM → SIGKILL when stopping
    stop_timeout: float = 15.0

    def delay(self, failures: int) -> float:
        return min(self.backoff_first * 2 ** max(failures - 1, 0), self.backoff_cap)


@dataclass
class Child:
    """One supervised process: a command (its own process group) or a service started by a
    function that returns its pid (the embedded Redis server, which daemonizes)."""

    name: str
    argv: list[str] | None = None
    start_fn: Callable[[], int] | None = None
    pid: int | None = None
    pgid: int | None = None
    started_at: float = 0.0
    failures: int = 0
    deaths: deque = field(default_factory=deque)
    restart_at: float | None = None
    kill_remnants_at: float | None = None
    died_at: float | None = None
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.pid is not None


def _group_alive(pgid: int | None) -> bool:
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int | None, signum: int) -> None:
    if pgid is None:
        return
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class GaveUp(Exception):
    """A child died too often: everything was stopped."""


class Supervisor:
    """Runs ``children`` until a signal stops it or one of them dies too often.

    :param echo: where the one-line reports go (``rop up``: stderr).
    """

    def __init__(self, children: list[Child], policy: Policy | None = None,
                 echo: Callable[[str], None] = print):
        self.children = children
        self.policy = policy or Policy()
        self.echo = echo
        self.stop_signals = 0
        self.stopping = False
        self.gave_up: str | None = None
        self._wake_r = self._wake_w = -1
        self._old: dict[int, object] = {}
        self._old_wakeup = -1

    # -- signals ---------------------------------------------------------------------------
    def _install(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum, handler in ((signal.SIGCHLD, self._on_child), (signal.SIGINT, self._on_stop),
                                (signal.SIGTERM, self._on_stop)):
            self._old[signum] = signal.signal(signum, handler)
        become_subreaper()

    def _uninstall(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _on_child(self, _signum, _frame) -> None:
        pass  # the wakeup fd wakes the loop; the loop reaps

    def _on_stop(self, _signum, _frame) -> None:
        self.stop_signals += 1

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or ``timeout`` passes."""
        try:
            ready, _, _ = select.select([self._wake_r], [], [], max(timeout, 0.0))
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    # -- children --------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        if child.start_fn is not None:
            child.pid = child.start_fn()
            child.pgid = None  # a daemon in a session of its own: nothing of it in a group of ours
        else:
            proc = subprocess.Popen(child.argv, preexec_fn=_child_setup)  # noqa: PLW1509 - no threads here
            proc.returncode = 0  # reaped by this loop's waitpid, never by Popen (no warning at exit)
            child.pid = child.pgid = proc.pid
        child.started_at = time.monotonic()
        child.restart_at = child.kill_remnants_at = None

    def _reap(self) -> None:
        by_pid = {c.pid: c for c in self.children if c.pid is not None}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = by_pid.pop(pid, None)
            if child is not None:
                self._died(child, status)
            # else: something a dead child left behind, re-parented to us: reaped, nothing more

    def _died(self, child: Child, status: int) -> None:
        now = time.monotonic()
        pid, uptime = child.pid, now - child.started_at
        child.pid = None
        if self.stopping or self.stop_signals:
            return
        policy = self.policy
        if uptime >= policy.stable_after:
            child.failures = 0
        child.failures += 1
        child.deaths.append(now)
        while child.deaths and child.deaths[0] < now - policy.window:
            child.deaths.popleft()
        how = describe_status(status)
        if len(child.deaths) > policy.max_restarts:
            who = f"{child.name}{f' (pid {pid})' if pid else ''}"
            self.gave_up = f"{who} {how}; it died {len(child.deaths)} times within {policy.window:g} s: giving up"
            self.echo(f"rop: {self.gave_up}")
            return
        delay = policy.delay(child.failures)
        child.restart_at, child.died_at = now + delay, now
        child.kill_remnants_at = now + policy.remnant_timeout
        _signal_group(child.pgid, signal.SIGTERM)  # what it leaves behind goes too
        self.echo(f"rop: {child.name}{f' (pid {pid})' if pid else ''} {how} after {uptime:.1f} s; "
                  f"restarting in {delay:g} s")

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.running or child.restart_at is None or now < child.restart_at:
                continue
            if _group_alive(child.pgid):
                if child.kill_remnants_at is not None and now >= child.kill_remnants_at:
                    _signal_group(child.pgid, signal.SIGKILL)
                continue  # started again once the old group is gone (a port it held, for one)
            try:
                self._spawn(child)
            except Exception as exc:  # noqa: BLE001 - could not even start: a death like any other
                self.echo(f"rop: {child.name} could not be started: {exc}")
                child.started_at = now
                self._died(child, 1 << 8)  # "exited with status 1"
                continue
            child.restarts += 1
            self.echo(f"rop: {child.name} restarted (pid {child.pid}), {now - child.died_at:.1f} s after its death")

    def _next_timeout(self) -> float:
        now = time.monotonic()
        due = [t for c in self.children for t in (c.restart_at, c.kill_remnants_at) if t is not None]
        return min([1.0, *(t - now for t in due)])

    # -- the loop --------------------------------------------------------------------------
    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Start every child and supervise them until stopped.

        :raise GaveUp: when a child died too often (everything is stopped by then).
        """
        self._install()
        try:
            for child in self.children:
                if self.stop_signals:
                    break
                if not child.running:  # a service may have been started before (the embedded Redis)
                    self._spawn(child)
            if on_started is not None and not self.stop_signals:
                on_started()
            while not self.stop_signals and self.gave_up is None:
                self._wait(self._next_timeout())
                self._reap()
                if not self.stop_signals and self.gave_up is None:
                    self._restart_due()
        finally:
            self.stop()
            self._uninstall()
        if self.gave_up is not None:
            raise GaveUp(self.gave_up)

    def stop(self) -> None:
        """SIGTERM every child's group; SIGKILL what is left after ``stop_timeout`` (or at a
        second signal); return once every group is empty. Services (``start_fn``) are the
        caller's to stop."""
        self.stopping = True
        groups = [c.pgid for c in self.children if c.pgid is not None]
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        signals_at_start = self.stop_signals
        deadline = time.monotonic() + self.policy.stop_timeout
        killed = False
        while True:
            self._reap()
            alive = [g for g in groups if _group_alive(g)]
            if not alive:
                break
            if not killed and (time.monotonic() >= deadline or self.stop_signals > max(signals_at_start, 1)):
                for pgid in alive:
                    _signal_group(pgid, signal.SIGKILL)
                killed = True
            self._wait(0.1)
        for child in self.children:
            if child.pgid is not None:
                child.pid = None
