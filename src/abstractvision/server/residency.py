"""Which served models hold their weights now, and who loads next (``--max-loaded``).

Engines load lazily: the first job for a model loads it (a ``loading`` progress stage of
that job), unless the server preloads. With ``max_loaded`` set, at most that many models that
hold weights stay loaded; to load another, the least recently used *idle* one is unloaded
through its backend's real ``unload()``. A job whose model cannot get room yet waits (in
arrival order, so a busy model cannot starve another) until a loaded model finishes its call.
Remote backends (no weights in this process) never count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Optional

from ..backends.base_backend import VisionBackend
from ..errors import AbstractVisionError, ModelLoadError
from ..types import ProgressEvent

__all__ = ["Residency", "ResidencyState", "holds_weights"]

logger = logging.getLogger("abstractvision.server")

Notify = Callable[[ProgressEvent], None]


def holds_weights(backend: Any) -> bool:
    """Whether ``backend`` keeps a model in this process (it implements ``unload``)."""
    if getattr(backend, "name", None) == "openai":
        return False
    unload = getattr(type(backend), "unload", None)
    return callable(unload) and unload is not VisionBackend.unload


class ResidencyState:
    """One served model's residency: loaded or not, calls running, load/unload counts."""

    def __init__(self, name: str, backend: Any) -> None:
        self.name = name
        self.backend = backend
        self.holds_weights = holds_weights(backend)
        self.loaded = False
        self.loading = False
        self.unloading = False
        self.active = 0
        self.last_used = 0.0
        self.loads = 0
        self.unloads = 0

    @property
    def occupies(self) -> bool:
        """Counts against ``max_loaded`` (loaded, or being loaded)."""
        return self.holds_weights and (self.loaded or self.loading)

    def view(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded if self.holds_weights else None,
            "loads": self.loads,
            "unloads": self.unloads,
            "running": self.active,
        }


class Residency:
    """The load/unload policy shared by every served model of one server."""

    def __init__(self, max_loaded: Optional[int] = None) -> None:
        if max_loaded is not None and (
            not isinstance(max_loaded, int) or isinstance(max_loaded, bool) or max_loaded < 1
        ):
            raise ValueError(f"max_loaded must be a positive integer or None, got {max_loaded!r}.")
        self.max_loaded = max_loaded
        self.states: dict[str, ResidencyState] = {}
        self._waiting: collections.deque[object] = collections.deque()
        self._changed: Optional[asyncio.Condition] = None

    def add(self, name: str, backend: Any) -> ResidencyState:
        state = ResidencyState(name, backend)
        self.states[name] = state
        return state

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _has_room(self) -> bool:
        used = sum(1 for s in self.states.values() if s.occupies)
        return self.max_loaded is None or used < self.max_loaded

    def _victim(self, wanted: ResidencyState) -> Optional[ResidencyState]:
        idle = [
            s
            for s in self.states.values()
            if s is not wanted and s.holds_weights and s.loaded and not s.loading and s.active == 0
        ]
        return min(idle, key=lambda s: s.last_used) if idle else None

    def _can_start(self, state: ResidencyState) -> bool:
        if state.unloading or state.loading:
            return False
        return state.loaded or self._has_room() or self._victim(state) is not None

    @contextlib.asynccontextmanager
    async def hold(self, name: str, notify: Optional[Notify] = None, task: str = "") -> AsyncIterator[None]:
        """Keep model ``name`` loaded while the block runs (making room and loading it first)."""
        state = self.states[name]
        if not state.holds_weights:
            state.active += 1
            try:
                yield
            finally:
                state.active -= 1
                state.last_used = time.monotonic()
            return
        cond = self._condition()
        ticket = object()
        victims: list[ResidencyState] = []
        must_load = False
        async with cond:
            self._waiting.append(ticket)
            try:
                await cond.wait_for(lambda: self._waiting[0] is ticket and self._can_start(state))
                if not state.loaded:
                    while not self._has_room():
                        victim = self._victim(state)
                        assert victim is not None  # _can_start saw one
                        victim.loaded, victim.unloading = False, True
                        victims.append(victim)
                    state.loading = must_load = True
                state.active += 1
            finally:
                self._waiting.remove(ticket)
                cond.notify_all()
        try:
            # loads and unloads run outside the lock: other models' jobs keep finishing meanwhile
            for victim in victims:
                await self._unload(victim, notify, task, state.name)
                async with cond:
                    victim.unloading = False
                    cond.notify_all()
            if must_load:
                try:
                    await self._load(state, notify, task)
                finally:
                    async with cond:
                        state.loading = False
                        cond.notify_all()
            yield
        finally:
            async with cond:
                state.active -= 1
                state.last_used = time.monotonic()
                cond.notify_all()

    async def _load(self, state: ResidencyState, notify: Optional[Notify], task: str) -> None:
        if notify is not None:
            notify(ProgressEvent(task=task, phase="loading", message=f"loading {state.name}"))
        started = time.perf_counter()
        try:
            await asyncio.to_thread(state.backend.preload)
        except AbstractVisionError:
            raise
        except Exception as exc:  # a backend's own failure: still a load failure for the client
            raise ModelLoadError(f"Loading {state.name} failed: {type(exc).__name__}: {exc}") from exc
        state.loaded = True
        state.loads += 1
        seconds = time.perf_counter() - started
        if notify is not None:
            notify(
                ProgressEvent(
                    task=task,
                    phase="loading",
                    progress=1.0,
                    message=f"loaded {state.name} in {seconds:.2f}s",
                    raw={"model": state.name, "load_s": round(seconds, 6)},
                )
            )

    async def _unload(
        self, state: ResidencyState, notify: Optional[Notify], task: str, for_name: str
    ) -> None:
        if notify is not None:
            notify(
                ProgressEvent(
                    task=task,
                    phase="loading",
                    message=f"unloading {state.name} to make room for {for_name}",
                    raw={"unloading": state.name},
                )
            )
        try:
            await asyncio.to_thread(state.backend.unload)
        except Exception:  # dropped from our books either way; the next load starts clean
            logger.exception("unloading %s failed", state.name)
        state.unloads += 1

    async def preload(self) -> None:
        """Load models now, in serving order, while there is room (``--preload``)."""
        for state in list(self.states.values()):
            if state.holds_weights and not state.loaded and self._has_room():
                async with self.hold(state.name):
                    pass
