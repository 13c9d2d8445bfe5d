"""``progress=True``: a rich progress bar (the optional ``progress`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._run import Progress

__all__ = ["RichBar"]


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class RichBar:
    """Shows done / total, failed, items per second and the ETA of a run on stderr."""

    def __init__(self, label: str) -> None:
        try:
            import rich.progress as rp
        except ImportError:
            raise ImportError(
                "progress=True needs the 'rich' package: pip install 'ollama-async[progress]' "
                "(or pass progress=<callable> to get the counters yourself)",
                name="rich",
            ) from None
        self._rp = rp
        self._label = label
        self._bar: Any = None
        self._task: Any = None

    def start(self, progress: Progress) -> None:
        rp = self._rp
        self._bar = rp.Progress(
            rp.TextColumn("[bold]{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("failed {task.fields[failed]}"),
            rp.TextColumn("{task.fields[rate]:.1f}/s"),
            rp.TextColumn("ETA {task.fields[eta]}"),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self._label, total=progress.total, failed=0, rate=0.0, eta=_fmt_eta(None))

    def update(self, progress: Progress) -> None:
        if self._bar is None:
            return
        self._bar.update(
            self._task, completed=progress.done, total=progress.total, failed=progress.failed,
            rate=progress.rate, eta=_fmt_eta(progress.eta),
        )

    def stop(self, progress: Progress) -> None:
        if self._bar is None:
            return
        self.update(progress)
        self._bar.stop()
        self._bar = None
