"""A dependency-free progress display: a bar on a terminal, log lines elsewhere.

On a TTY the bar is redrawn in place with ``\\r`` writes; on anything else (CI logs, files, `ray job`
logs) it writes whole lines, at most every ``log_every`` seconds or 10 % of the work, so logs stay short.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "make_progress"]


class Progress:
    """Report ``done``/``failed`` out of ``total`` observations.

    Parameters
    ----------
    total : int
        Number of items.
    stream : file-like, optional
        Where to write; default ``sys.stderr``.
    enabled : bool
        If False nothing is written.
    label : str
        Prefix of each line.
    log_every : float
        Minimum seconds between non-TTY lines (a line is also written at each 10 % step).
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        label: str = "reduce",
        log_every: float = 10.0,
    ) -> None:
        self.total = int(total)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.label = label
        self.log_every = log_every
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._t0 = time.perf_counter()
        self._last_write = -float("inf")
        self._last_decile = -1
        self.done = 0
        self.failed = 0

    def update(self, done: int, failed: int = 0) -> None:
        """Set the counts (``done`` includes ``failed``) and redraw if useful."""
        self.done, self.failed = int(done), int(failed)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_write >= 0.1 or self.done >= self.total:
                self.stream.write("\r" + self._bar(now))
                self.stream.flush()
                self._last_write = now
            return
        decile = (10 * self.done) // max(self.total, 1)
        if decile > self._last_decile or now - self._last_write >= self.log_every:
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()
            self._last_write, self._last_decile = now, decile

    def close(self) -> None:
        """Write the final state (newline-terminated).

        Closed while an observation's error stops the run (``strict``: the reduction re-raises it
        before it counts it), that observation is counted as done and failed, and the line says so.
        """
        if not self.enabled:
            return
        now = time.perf_counter()
        stopped = _stopping_observation()
        if stopped is not None:
            self.done, self.failed = min(self.total, self.done + 1), self.failed + 1
        suffix = f"; stopped: observation {stopped} failed" if stopped is not None else ""
        if self.tty:
            self.stream.write("\r" + self._bar(now) + suffix + "\n")
        elif self._last_decile < 10 or stopped is not None:
            self.stream.write(self._line(now) + suffix + "\n")
        self.stream.flush()

    # -- formatting --------------------------------------------------------------------------
    def _stats(self, now: float) -> tuple[float, float, str]:
        elapsed = now - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate > 0 and self.done < self.total else "-"
        return elapsed, rate, eta

    def _bar(self, now: float, width: int = 30) -> str:
        elapsed, rate, eta = self._stats(now)
        filled = (width * self.done) // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        fail = f" {self.failed} failed" if self.failed else ""
        return f"{self.label} [{bar}] {self.done}/{self.total}{fail} {rate:.2f}/s {elapsed:.0f}s eta {eta}"

    def _line(self, now: float) -> str:
        elapsed, rate, eta = self._stats(now)
        return (
            f"{self.label}: {self.done}/{self.total} observations, {self.failed} failed, "
            f"{rate:.2f} obs/s, elapsed {elapsed:.1f} s, eta {eta}"
        )


def _stopping_observation() -> int | None:
    """The obs id of an `ObservationError` being raised through the caller's ``finally``, else None."""
    from ..errors import ObservationError

    exc = sys.exc_info()[1]
    if isinstance(exc, ObservationError):
        return exc.obs_id if exc.obs_id is not None else -1
    return None


def make_progress(total: int, progress: "bool | TextIO | None") -> Progress | None:
    """A `Progress` on stderr (``True``), on the given stream, or None (``False``/None: no output)."""
    if progress is False or progress is None:
        return None
    return Progress(total, None if progress is True else progress)
