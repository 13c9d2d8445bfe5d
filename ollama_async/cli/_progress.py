"""Progress reporting for long jobs: a live rich bar on a terminal, one-line logs otherwise.

The bar shows done/total, failures, items/s, tokens/s (generate and chat) and the ETA. Rates
count only this session's work, so a resumed run does not look faster than it is, while
done/total includes what the checkpoint already held. With ``--quiet``, or when stderr is not a
terminal (CI logs, ``2> file``), a one-line summary is printed every ``log_interval`` seconds
instead (0 = none); a final summary line is always printed.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["JobProgress", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class JobProgress:
    """Counts and displays one job's progress; safe to call on every finished item."""

    def __init__(
        self,
        label: str,
        *,
        total: int | None,
        done_before: int = 0,
        quiet: bool = False,
        log_interval: float = 10.0,
        tokens: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done_before = done_before
        self.ok = 0
        self.failed = 0
        self.tokens = 0
        self._show_tokens = tokens
        self._stream = stream or sys.stderr
        self._log_interval = log_interval
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar: Any = None
        self._task: Any = None
        if not quiet and self._stream.isatty():
            self._bar = self._make_bar()

    # -- numbers ------------------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Items finished so far (ok or failed), including those from the checkpoint."""
        return self.done_before + self.ok + self.failed

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self._started, 1e-9)

    @property
    def rate(self) -> float:
        """Items per second in this session."""
        return (self.ok + self.failed) / self.elapsed

    @property
    def token_rate(self) -> float:
        """Generated tokens per second in this session (sum of ``eval_count``)."""
        return self.tokens / self.elapsed

    @property
    def eta(self) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    def summary(self) -> str:
        """One line: done/total, failures, rates and ETA."""
        total = "?" if self.total is None else str(self.total)
        parts = [f"{self.label}: {self.done}/{total} done", f"{self.failed} failed", f"{self.rate:.1f} items/s"]
        if self._show_tokens:
            parts.append(f"{self.token_rate:.1f} tokens/s")
        parts.append(f"elapsed {format_duration(self.elapsed)}")
        if self.total is not None and self.done < self.total:
            parts.append(f"eta {format_duration(self.eta)}")
        return ", ".join(parts)

    # -- updates ------------------------------------------------------------------------------

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def update(self, *, ok: int = 0, failed: int = 0, tokens: int = 0) -> None:
        self.ok += ok
        self.failed += failed
        self.tokens += tokens
        self.tick()

    def tick(self) -> None:
        """Refresh the bar, or print a log line when ``log_interval`` has passed."""
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=self.done,
                failed=self.failed,
                rate=self._rates(),
                eta=format_duration(self.eta),
            )
        elif self._log_interval > 0:
            now = time.monotonic()
            if now - self._last_log >= self._log_interval:
                self._last_log = now
                self.log(self.summary())

    def log(self, message: str) -> None:
        """Print a message above the bar (or plainly)."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self._stream, flush=True)

    def close(self, *, summary: bool = True) -> None:
        """Stop the bar (it stays on screen) and print the final summary, if anything was done."""
        if self._bar is not None:
            self.tick()
            self._bar.stop()
            self._bar = None
        if summary and (self.ok or self.failed):
            print(self.summary(), file=self._stream, flush=True)

    def _rates(self) -> str:
        text = f"{self.rate:.1f} it/s"
        if self._show_tokens:
            text += f" {self.token_rate:.0f} tok/s"
        return text

    def _make_bar(self) -> Any:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        except ImportError:  # rich is optional: fall back to log lines
            return None
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("eta {task.fields[eta]}"),
            console=Console(file=self._stream),
            transient=False,
        )
        self._task = bar.add_task(
            self.label, total=self.total, completed=self.done_before, failed=0, rate="", eta="?"
        )
        bar.start()
        return bar
