"""Progress on stderr: one redrawn line for model loading, denoising steps and remote jobs.

The renderer is an ``on_progress`` callback (it receives :class:`abstractvision.ProgressEvent`)
and is only switched on for a terminal: piped or redirected stderr stays clean. A small
ticker thread keeps the spinner and the elapsed time moving while an engine is silent (for
example while weights load). Events may arrive from worker threads; drawing is locked.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import IO, Any, Optional

_PHASE_LABELS = {
    "started": "starting",
    "loading": "loading model",
    "queued": "queued",
    "in_progress": "running",
    "step": "generating",
    "encoding": "encoding",
    "completed": "done",
}


def _can_encode(stream: IO[str], text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


class ProgressRenderer:
    """Draws ``label [#####-----] 5/10 steps  1.2s`` on one line of ``stream``.

    Args:
        stream: where to draw (stderr).
        label: shown first on the line (the command name).
        enabled: when ``False`` every method is a no-op (quiet mode, not a terminal).
        tick_s: redraw interval of the ticker thread; ``0`` disables the thread.
    """

    def __init__(self, stream: IO[str], *, label: str, enabled: bool, tick_s: float = 0.1) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.events = 0
        self._lock = threading.RLock()
        self._started = time.monotonic()
        self._phase = "started"
        self._message: Optional[str] = None
        self._fraction: Optional[float] = None
        self._steps: Optional[tuple[int, int]] = None
        self._spin = 0
        self._width = 0
        self._last_draw = 0.0
        fancy = _can_encode(stream, "█░⠋")
        self._fill, self._empty = ("█", "░") if fancy else ("#", "-")
        self._spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if fancy else "|/-\\"
        self._stop = threading.Event()
        self._pending_note: Optional[str] = None
        self._ticker: Optional[threading.Thread] = None
        if enabled and tick_s > 0:
            self._ticker = threading.Thread(
                target=self._tick, args=(tick_s,), name="av-progress", daemon=True
            )
            self._ticker.start()

    # -- callback ---------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        if self._pending_note is not None:
            self._flush_pending_note()
        if not self.enabled:
            return
        with self._lock:
            self.events += 1
            self._phase = str(getattr(event, "phase", "") or self._phase)
            self._message = getattr(event, "message", None) or None
            step, total = getattr(event, "step", None), getattr(event, "total_steps", None)
            progress = getattr(event, "progress", None)
            if step is not None and total:
                self._steps = (int(step), int(total))
                self._fraction = min(max(int(step) / int(total), 0.0), 1.0)
            elif progress is not None:
                self._fraction = min(max(float(progress), 0.0), 1.0)
                if self._phase != "step":
                    self._steps = None
            elif self._phase not in ("step", "completed"):
                self._fraction, self._steps = None, None
            if self._phase == "completed":
                self._fraction = 1.0
            now = time.monotonic()
            # redraw at most ~20 times a second, but never skip the end of a bar
            if now - self._last_draw >= 0.05 or self._fraction in (None, 1.0) or self._phase != "step":
                self._draw(now)

    def note_later(self, text: str) -> None:
        """Queue a note without taking locks or writing (safe inside a signal handler).

        It is printed by the ticker thread, the next progress event, or :meth:`close`.
        """
        self._pending_note = text

    def _flush_pending_note(self) -> None:
        text, self._pending_note = self._pending_note, None
        if text is not None:
            self.note(text)

    def note(self, text: str) -> None:
        """Print a message on its own line (above the bar), then redraw the bar."""
        with self._lock:
            if self.enabled:
                self._clear()
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                return
            if self.enabled and self.events:
                self._draw(time.monotonic())

    def close(self) -> None:
        """Stop the ticker and erase the bar (call before printing results)."""
        self._flush_pending_note()
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=1.0)
        with self._lock:
            if self.enabled:
                self._clear()
                self.enabled = False

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drawing ----------------------------------------------------------------------

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._pending_note is not None:
                self._flush_pending_note()
            with self._lock:
                if self.enabled and self.events and self._phase != "completed":
                    self._spin += 1
                    self._draw(time.monotonic())

    def render_line(self, now: Optional[float] = None) -> str:
        """The text of the progress line (without terminal control characters)."""
        elapsed = (now if now is not None else time.monotonic()) - self._started
        columns = shutil.get_terminal_size((80, 24)).columns
        what = self._message or _PHASE_LABELS.get(self._phase, self._phase.replace("_", " "))
        tail = f"{elapsed:5.1f}s"
        if self._fraction is None:
            spin = self._spinner[self._spin % len(self._spinner)]
            line = f"{self.label} {spin} {what}  {tail}"
        else:
            if self._steps is not None:
                count = f"{self._steps[0]}/{self._steps[1]} steps"
            else:
                count = f"{self._fraction * 100:3.0f}%"
            fixed = len(self.label) + len(count) + len(tail) + 6
            width = max(10, min(30, columns - fixed - 1))
            filled = round(self._fraction * width)
            bar = self._fill * filled + self._empty * (width - filled)
            line = f"{self.label} {bar} {count}  {tail}"
            if self._phase not in ("step", "completed"):
                line += f"  {what}"
        return line[: max(columns - 1, 20)]

    def _draw(self, now: float) -> None:
        line = self.render_line(now)
        pad = " " * max(self._width - len(line), 0)
        try:
            self.stream.write("\r" + line + pad)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False
            return
        self._width = len(line)
        self._last_draw = now

    def _clear(self) -> None:
        if self._width:
            try:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._width = 0
