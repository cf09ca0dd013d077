"""A small progress reporter: a bar on a terminal, silent otherwise.

Long-running work (destruction, key rotation, re-indexing) reports through a callback
``progress(done, total)``; :class:`ProgressBar` is the terminal one the CLI passes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO, cast

from mizaic_processor.errors import InvalidInputError

Progress = Callable[[int, int | None], None]


def no_progress(done: int, total: int | None) -> None:
    """A progress callback that does nothing."""


def check_progress(progress: object) -> Progress:
    """The caller's progress callback (``None`` for none), checked before any work: one
    that cannot be called would fail only after the first items were written, and a
    resubmitted bulk call would then write them twice.

    :raises InvalidInputError: if it is neither callable nor ``None``.
    """
    if progress is None:
        return no_progress
    if not callable(progress):
        raise InvalidInputError("progress must be a callable taking (done, total), or None")
    return cast(Progress, progress)


class ProgressBar:
    """Draws ``label [#####.....] done/total`` on a terminal, at most 10 times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._last = 0.0
        self._enabled = bool(getattr(self._stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int | None) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        if total:
            filled = int(self._width * min(done, total) / total)
            bar = "#" * filled + "." * (self._width - filled)
            self._stream.write(f"\r{self._label} [{bar}] {done}/{total}")
        else:
            self._stream.write(f"\r{self._label} {done}")
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()
