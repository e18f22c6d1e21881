"""Forking a process that has other threads computing with BLAS, without hanging them.

OpenBLAS stops its worker threads when the process forks (a ``pthread_atfork`` handler),
and a product that another thread is running on those workers at that moment waits for
them forever. digitnet forks worker processes (the split engine's helper, the augmentation
workers, the report's figure renderers) from the thread that trains; in the live lab the
web server's threads compute at the same time (the page's previews, gradient checks, a
saved run's report). So every fork goes through :data:`FORK_GATE`:

* code that computes in a thread while another thread may fork holds
  ``FORK_GATE.computing()`` (any number of threads at once);
* a fork holds ``FORK_GATE.forking()``: it waits until no other thread is computing, and
  threads that want to start computing wait until it is done.

Where only one thread runs (``digitnet train``) the gate costs an uncontended lock.
Both are re-entrant in a thread, and a thread that computes may fork (its own computing
does not make it wait; two threads doing so at once would wait for each other, so where
several threads fork, they fork outside their computing sections, as the lab's does).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ForkGate:
    """Many threads may compute at once; a fork waits until none does and goes first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._computing = 0  # sections held, all threads together
        self._forks_due = 0  # forks waiting or under way
        self._forker: int | None = None  # the thread forking now
        self._mine = threading.local()  # this thread's computing sections

    def _own(self) -> int:
        return getattr(self._mine, "count", 0)

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Hold while computing (BLAS) in a thread other than the one that may fork."""
        me = threading.get_ident()
        with self._cond:
            # a thread already inside goes on (a fork waits for it anyway), as does the forker
            while self._forks_due and self._own() == 0 and self._forker != me:
                self._cond.wait()
            self._computing += 1
            self._mine.count = self._own() + 1
        try:
            yield
        finally:
            with self._cond:
                self._computing -= 1
                self._mine.count -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def forking(self) -> Iterator[None]:
        """Hold while forking: no other thread computes meanwhile."""
        me = threading.get_ident()
        with self._cond:
            if self._forker == me:  # a fork within a fork of this thread
                outer = True
            else:
                outer = False
                self._forks_due += 1
                while self._forker is not None or self._computing - self._own() > 0:
                    self._cond.wait()
                self._forker = me
        try:
            yield
        finally:
            if not outer:
                with self._cond:
                    self._forker = None
                    self._forks_due -= 1
                    self._cond.notify_all()


FORK_GATE = ForkGate()
"""The process's gate: every fork digitnet makes goes through it (see the module text)."""
