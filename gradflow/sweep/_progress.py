"""Progress reporting: a tqdm bar on a terminal, plain lines elsewhere, or nothing."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

MODES = ("auto", "bar", "lines", "none")


class Progress:
    """Reports points done, rate and time left.

    Args:
        mode: ``"auto"`` (a bar when ``stream`` is a terminal, else lines),
            ``"bar"``, ``"lines"`` or ``"none"``.
        stream: where to write (stderr by default).
    """

    def __init__(self, mode: str = "auto", stream: IO[str] | None = None):
        if mode not in MODES:
            raise ValueError(f"progress must be one of {MODES}, got {mode!r}")
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", lambda: False)
            mode = "bar" if isatty() else "lines"
        self.mode = mode
        self._bar: Any = None
        self._total = 0
        self._done = 0
        self._computed = 0
        self._t0 = time.perf_counter()
        self._name = ""

    def announce(self, name: str, size: str) -> None:
        """Say the grid's size (``"4 points x 2 seeds"``) before anything runs."""
        if self.mode != "none":
            self._print(f"{name}: {size}; the time left is shown after the first point")

    def start(self, name: str, total: int, done: int) -> None:
        self._name, self._total, self._done = name, total, done
        self._t0 = time.perf_counter()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=done, unit="point", desc=name, file=self.stream
            )
        elif self.mode == "lines":
            skipped = f", {done} already done" if done else ""
            self._print(f"{name}: {total} points{skipped}")

    def advance(self, pid: str, seconds: float) -> None:
        self._done += 1
        self._computed += 1
        if self.mode == "bar":
            self._bar.update(1)
            self._bar.set_postfix_str(pid[:40], refresh=False)
        elif self.mode == "lines":
            elapsed = time.perf_counter() - self._t0
            rate = self._computed / elapsed if elapsed > 0 else 0.0
            left = (self._total - self._done) / rate if rate > 0 else 0.0
            self._print(
                f"[{self._done}/{self._total}] {pid} ({seconds:.2f} s; "
                f"{rate:.2f} points/s, ~{left:.0f} s left)"
            )

    def close(self, finished: bool = True) -> None:
        """End the report; ``finished=False``: the run stopped early (Ctrl-C, error)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines":
            seconds = time.perf_counter() - self._t0
            if finished:
                self._print(f"{self._name}: done in {seconds:.1f} s")
            else:
                self._print(
                    f"{self._name}: stopped after {self._done} of {self._total} "
                    f"points ({seconds:.1f} s)"
                )

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
