"""Fork awareness: a counter that changes in every child process after ``os.fork``.

State that must not be shared between a parent and a forked child (unused nonces, worker
threads that do not exist in the child, pooled HTTP connections) records the generation it
was made in and is rebuilt when it differs. Unlike a process id, a generation is never reused.
"""

from __future__ import annotations

import os
import threading

__all__ = ["generation", "lock"]

_generation = 0
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # runs in the child before any other thread exists there, so replacing the lock is
    # safe (the parent's may have been held by one of its threads at the fork)
    global _generation, _lock
    _generation += 1
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def generation() -> int:
    """The current fork generation of this process (0 in a process that never forked)."""
    return _generation


def lock() -> threading.Lock:
    """A lock of this process, new in every forked child: guards rebuilding per-process
    state after a fork (a lock of the object being rebuilt may have been copied held)."""
    return _lock
