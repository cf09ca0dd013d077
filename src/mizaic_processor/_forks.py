"""Fork awareness: a counter that changes in every child process after ``os.fork``.

State that must not be shared between a parent and a forked child (unused nonces, worker
threads that do not exist in the child) records the generation it was made in and is
rebuilt when it differs. Unlike a process id, a generation is never reused.
"""

from __future__ import annotations

import os

__all__ = ["generation"]

_generation = 0


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def generation() -> int:
    """The current fork generation of this process (0 in a process that never forked)."""
    return _generation
