"""Parent side of the stable-diffusion.cpp worker: start, talk to, watch and stop it.

:class:`WorkerProcess` runs ``python -m abstractvision.backends._sdcpp.worker`` as a child
process (a plain subprocess, so the caller's ``__main__`` is never re-imported), sends it
length-prefixed messages on stdin and reads replies from stdout on a reader thread. While
a request runs, :meth:`WorkerProcess.call` waits in short slices and turns everything that
can go wrong into a typed error, killing the child whenever its state is unknown:

- the child exits or is killed by a signal -> :class:`EngineCrashedError` (or
  :class:`ModelLoadError` while loading), with the signal and the last lines of its stderr;
- no message (progress or engine log) for ``hang_timeout_s`` -> :class:`EngineCrashedError`;
- the call's deadline passes -> :class:`GenerationTimeoutError`;
- ``cancel.is_set()`` -> :class:`GenerationCancelledError` (stable-diffusion.cpp cannot abort
  a running generation, so the child is stopped and a new one loads on the next call).

:class:`InProcessEngine` offers the same interface without a child (``isolate=False``).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Optional

from ...errors import (
    AbstractVisionError,
    BackendError,
    EngineCrashedError,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ModelLoadError,
    OutOfMemoryError,
)
from ...types import CancelToken, PreviewEvent, ProgressEvent
from .worker import Engine, EngineError, read_message, write_message

__all__ = ["InProcessEngine", "WorkerProcess", "error_from_reply"]

logger = logging.getLogger("abstractvision.backends.sdcpp")

OnMessage = Callable[[dict[str, Any]], None]
_EOF: dict[str, Any] = {"type": "eof"}
_POLL_S = 0.05
_OOM_MARKERS = ("out of memory", "failed to allocate", "cudaMalloc", "alloc_buffer")


def describe_exit(returncode: Optional[int]) -> str:
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def error_from_reply(reply: dict[str, Any], *, loading: bool) -> AbstractVisionError:
    """Map a worker ``error`` message to the library's error classes."""
    message = str(reply.get("message") or "unknown engine error")
    log = [line for line in reply.get("log") or [] if line]
    if log:
        message += ". Engine log: " + " | ".join(log[-6:])
    kind = reply.get("kind")
    if kind == "load" or loading:
        return ModelLoadError(f"stable-diffusion.cpp failed to load the model: {message}")
    if kind == "invalid":
        return InvalidRequestError(f"stable-diffusion.cpp rejected the request: {message}")
    if any(marker.lower() in message.lower() for marker in _OOM_MARKERS):
        return OutOfMemoryError(
            f"stable-diffusion.cpp ran out of memory: {message}. Try a smaller size, offload_to_cpu=True, "
            "vae_tiling or a more quantized model."
        )
    return BackendError(f"stable-diffusion.cpp failed: {message}")


def _package_root() -> str:
    here = os.path.dirname(os.path.abspath(__file__))  # .../abstractvision/backends/_sdcpp
    return os.path.dirname(os.path.dirname(os.path.dirname(here)))


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:
            pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except Exception:
            pass


class WorkerProcess:
    """One worker child process hosting one loaded model."""

    def __init__(self, spec: dict[str, Any], *, env: Optional[dict[str, str]] = None) -> None:
        self.spec = spec
        self.info: dict[str, Any] = {}
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.log_tail: deque[str] = deque(maxlen=20)
        self.received = 0  # messages seen from the worker (0: it never got as far as loading)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        child_env = dict(os.environ if env is None else env)
        root = _package_root()
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH", "")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "abstractvision.backends._sdcpp.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env,
                close_fds=True,
            )
        except OSError as exc:
            raise EngineCrashedError(
                f"Could not start the stable-diffusion.cpp worker process ({sys.executable!r}): {exc}"
            ) from exc
        self._finalizer = weakref.finalize(self, _terminate, self.proc)
        self._threads = [
            threading.Thread(target=self._read_messages, name="sdcpp-worker-reader", daemon=True),
            threading.Thread(target=self._read_stderr, name="sdcpp-worker-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- background readers ---------------------------------------------------------------

    def _read_messages(self) -> None:
        try:
            assert self.proc.stdout is not None
            while True:
                message = read_message(self.proc.stdout)  # type: ignore[arg-type]
                if message is None:
                    break
                self._messages.put(message)
        except Exception as exc:  # a torn frame when the child dies mid-write
            logger.debug("sdcpp worker channel closed: %s", exc)
        finally:
            self._messages.put(_EOF)

    def _read_stderr(self) -> None:
        try:
            assert self.proc.stderr is not None
            for raw in iter(self.proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.stderr_tail.append(line)
                    logger.debug("sdcpp worker: %s", line)
        except Exception:
            pass

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def start(
        self,
        *,
        on_message: OnMessage,
        cancel: Optional[CancelToken] = None,
        deadline: Optional[float] = None,
        hang_timeout_s: Optional[float] = None,
    ) -> dict[str, Any]:
        """Send the model spec and wait until the model is loaded."""
        self._send({"op": "load", "spec": self.spec})
        self.info = self._wait(on_message, cancel, deadline, hang_timeout_s, loading=True)
        return self.info

    def call(
        self,
        request: dict[str, Any],
        *,
        on_message: OnMessage,
        cancel: Optional[CancelToken] = None,
        deadline: Optional[float] = None,
        hang_timeout_s: Optional[float] = None,
    ) -> dict[str, Any]:
        """Run one request and return the worker's ``result`` message."""
        self._send(request)
        return self._wait(on_message, cancel, deadline, hang_timeout_s, loading=False)

    def stop(self, grace_s: float = 2.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``grace_s``."""
        if self.alive:
            try:
                self._send({"op": "exit"})
                self.proc.wait(timeout=grace_s)
            except Exception:
                pass
        self.kill()

    def kill(self) -> None:
        _terminate(self.proc)
        for thread in self._threads:
            thread.join(timeout=2)

    # -- internals ------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            write_message(self.proc.stdin, message)  # type: ignore[arg-type]
        except (OSError, ValueError):
            pass  # the child is gone: the wait loop reports how it ended

    def _crash_error(self, loading: bool) -> AbstractVisionError:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)  # let the stderr reader catch the last lines
        how = describe_exit(self.proc.returncode)
        detail = " | ".join(list(self.stderr_tail)[-8:] + list(self.log_tail)[-4:])
        hint = f" Last output: {detail}" if detail else ""
        self.kill()
        if loading and not self.received:
            return EngineCrashedError(
                f"The stable-diffusion.cpp worker (pid {self.pid}) {how} before it started loading; "
                f"is stable-diffusion-cpp-python importable by {sys.executable!r}?{hint}"
            )
        if loading:
            return ModelLoadError(
                f"The stable-diffusion.cpp worker (pid {self.pid}) {how} while loading the model; "
                f"check that every component file is valid and matches the model family.{hint}"
            )
        return EngineCrashedError(
            f"The stable-diffusion.cpp worker (pid {self.pid}) {how} during generation; "
            f"it will be restarted on the next call.{hint}"
        )

    def _wait(
        self,
        on_message: OnMessage,
        cancel: Optional[CancelToken],
        deadline: Optional[float],
        hang_timeout_s: Optional[float],
        *,
        loading: bool,
    ) -> dict[str, Any]:
        last_seen = time.monotonic()
        settled = False  # True only when the worker is known to be idle and healthy
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelledError(
                        "Generation cancelled; the stable-diffusion.cpp worker was stopped and reloads on the next call."
                    )
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    raise GenerationTimeoutError(
                        "stable-diffusion.cpp did not finish before the deadline (timeout_s); the worker was stopped."
                    )
                if hang_timeout_s is not None and now - last_seen > hang_timeout_s:
                    raise EngineCrashedError(
                        f"stable-diffusion.cpp showed no progress for {hang_timeout_s:g}s "
                        f"({'loading' if loading else 'generating'}); the worker was killed and restarts on the next call."
                    )
                try:
                    message = self._messages.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                last_seen = time.monotonic()
                kind = message.get("type")
                self.received += kind != "eof"
                if kind == "eof":
                    raise self._crash_error(loading)
                if kind in ("ready", "result"):
                    settled = True
                    return message
                if kind == "error":
                    settled = not loading  # a failed load ends the worker; a failed request does not
                    raise error_from_reply(message, loading=loading)
                if kind == "log" and message.get("level") in ("warning", "error"):
                    self.log_tail.append(f"{message.get('level')}: {message.get('text')}")
                on_message(message)
        finally:
            # leaving mid-request for any other reason (timeouts, cancellation, a raising
            # progress callback, KeyboardInterrupt) leaves the worker in an unknown state
            if not settled:
                self.kill()


class InProcessEngine:
    """The engine in the calling process (``isolate=False``): no crash protection.

    Progress and logs arrive synchronously; cancellation and the deadline are checked at
    each step and honoured when the engine returns (sd.cpp cannot abort mid-generation).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.info: dict[str, Any] = {}
        self._on_message: Optional[OnMessage] = None
        self.engine = Engine(spec, self._emit)
        self.pid = os.getpid()
        self.alive = False

    def _emit(self, message: dict[str, Any]) -> None:
        if self._on_message is not None:
            self._on_message(message)

    def _run(
        self, fn: Callable[[], dict[str, Any]], on_message: OnMessage, *, loading: bool
    ) -> dict[str, Any]:
        self._on_message = on_message
        try:
            return fn()
        except EngineError as exc:
            raise error_from_reply(
                {"kind": exc.kind, "message": str(exc), "log": exc.log}, loading=loading
            ) from exc
        finally:
            self._on_message = None

    def start(self, *, on_message: OnMessage, **_: Any) -> dict[str, Any]:
        self.info = self._run(self.engine.load, on_message, loading=True)
        self.alive = True
        return self.info

    def call(
        self,
        request: dict[str, Any],
        *,
        on_message: OnMessage,
        cancel: Optional[CancelToken] = None,
        deadline: Optional[float] = None,
        **_: Any,
    ) -> dict[str, Any]:
        result = self._run(lambda: self.engine.run(request), on_message, loading=False)
        if cancel is not None and cancel.is_set():
            raise GenerationCancelledError("Generation cancelled (honoured when the engine returned).")
        if deadline is not None and time.monotonic() > deadline:
            raise GenerationTimeoutError(
                "stable-diffusion.cpp did not finish before the deadline (timeout_s)."
            )
        return result

    def stop(self, grace_s: float = 0.0) -> None:
        sd, self.engine.sd = self.engine.sd, None
        if sd is not None:
            sd.close()
        self.alive = False

    kill = stop


def progress_event(task: str, message: dict[str, Any]) -> ProgressEvent:
    """A :class:`ProgressEvent` from a worker progress message (steps counted over the whole batch)."""
    phase = message.get("phase") or "step"
    step, steps = message.get("step"), message.get("steps")
    raw = {k: v for k, v in message.items() if k not in ("type", "phase", "step", "steps", "message")}
    if phase == "step" and step and steps:
        images = int(message.get("images") or 1)
        index = int(message.get("image") or 0)
        total = steps * images
        done = index * steps + step
        return ProgressEvent(
            task=task, phase="step", step=done, total_steps=total, progress=min(1.0, done / total), raw=raw
        )
    progress = min(1.0, step / steps) if step is not None and steps else None
    return ProgressEvent(task=task, phase=phase, progress=progress, message=message.get("message"), raw=raw)


_PREVIEW_DECODERS = {"proj": "latent_rgb", "tae": "tiny_autoencoder", "vae": "vae"}


def _preview_method(config: Any) -> str:
    method = str(getattr(config, "preview_method", "auto") or "auto")
    if method == "auto":
        return "tae" if getattr(config, "taesd", None) else "proj"
    return method


def preview_job(config: Any, on_preview: Any, steps: int) -> Optional[dict[str, Any]]:
    """The ``preview`` part of a generate request: the engine's method and the steps to show."""
    from ..._relays import wants_preview

    if on_preview is None:
        return None
    wanted = [s for s in range(1, int(steps) + 1) if wants_preview(on_preview, s, int(steps))]
    return {"method": _preview_method(config), "steps": wanted, "total": int(steps)} if wanted else None


def preview_event(task: str, message: dict[str, Any], config: Any) -> PreviewEvent:
    """A :class:`PreviewEvent` from a worker's ``preview`` message."""
    return PreviewEvent(
        task=task,
        image=message["jpeg"],
        width=int(message.get("width") or 0),
        height=int(message.get("height") or 0),
        step=message.get("step"),
        total_steps=message.get("total"),
        index=int(message.get("image") or 0),
        decoder=_PREVIEW_DECODERS.get(_preview_method(config), "engine"),
    )
