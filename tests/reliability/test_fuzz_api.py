"""Property-based fuzzing of the public Python API.

The property, everywhere: a call either returns a valid result or raises an
:class:`~abstractvision.errors.AbstractVisionError` with a useful message (naming the
parameter when there is one), never another exception type and never a hang; the artifact
store never shows a partial file (``.tmp-*``), a sidecar without its blob, or an artifact
written for a request that was rejected.

Runs through the real managers (sync and async) over the fake backend of ``tests/fakes.py``
and a fresh :class:`LocalAssetStore` per example. ``test_manager_calls`` drives every task
method under three plans: all arguments valid (must succeed), exactly one hostile (the typed
error must name it) and everything hostile at random. Crafted image files (truncated, bombs,
CMYK, 16-bit, animated...) are tried in every input role. The store, the registry, the
settings resolver and angle parsing are fuzzed directly. ``ABSTRACTVISION_FUZZ=long``
multiplies the example count (see ``docs/reliability.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from abstractvision import (
    AsyncVisionManager,
    GeneratedAsset,
    LocalAssetStore,
    VisionManager,
    VisionModelCapabilitiesRegistry,
    _angles,
    _params,
    config,
    is_artifact_ref,
    make_media_ref,
)
from abstractvision.errors import AbstractVisionError, InvalidRequestError
from abstractvision.types import TASKS, LoRAAdapterSpec
from abstractvision.types import GeneratedAsset as _Asset
from fakes import FakeBackend, png_bytes
from reliability import _corpus
from reliability._support import STATS, fuzz_settings

_PROMPT_MAX = _params.PARAMS["prompt"]["max_length"]

pytestmark = pytest.mark.timeout(600)  # a whole property; each call must also finish in EXAMPLE_LIMIT_S
EXAMPLE_LIMIT_S = 60.0

# -- the backend under the managers -------------------------------------------------------

_MAX_OUT = 24  # px: outputs stay tiny whatever size was asked for, so valid huge sizes stay fast


class FuzzBackend(FakeBackend):
    """The fake backend with outputs clamped to a few pixels / frames (contract unchanged)."""

    def _image(
        self, task: str, request: Any, seed: Optional[int], w: Optional[int] = None, h: Optional[int] = None
    ) -> GeneratedAsset:
        width = min(w or request.width or 8, _MAX_OUT)
        height = min(h or request.height or 8, _MAX_OUT)
        return super()._image(task, request, seed, width, height)

    def _video(self, task: str, request: Any) -> GeneratedAsset:
        import dataclasses

        small = dataclasses.replace(
            request,
            width=min(request.width or 8, _MAX_OUT),
            height=min(request.height or 8, _MAX_OUT),
            num_frames=min(request.num_frames or 3, 4),
        )
        return super()._video(task, small)


# -- value strategies ---------------------------------------------------------------------

HUGE = 10**400


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


class _NotAnEvent:
    is_set = True  # not callable


WEIRD_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    2**64,
    HUGE,
    -HUGE,
    0.0,
    -0.0,
    0.5,
    1e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    "",
    " ",
    "512",
    "nan",
    "\x00",
    b"",
    b"512",
    [],
    [512],
    (),
    {},
    {"a": 1},
    set(),
    1 + 2j,
    Decimal("1.5"),
    Fraction(1, 3),
    _Opaque(),
    object,
    int,
    threading.Event,  # the class, not an instance
    _NotAnEvent(),
    ...,
]

weird = st.one_of(
    st.sampled_from(WEIRD_SCALARS),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.complex_numbers(max_magnitude=10),
)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid three times out of four: calls with several parameters still reach the backend,
    the finishing code and the store often enough, while every parameter is attacked too.

    (Each side is wrapped with ``map`` so hypothesis does not flatten nested ``one_of``
    branches, which would dilute the weights.)
    """
    valid, hostile = valid.map(_same), hostile.map(_same)
    return st.one_of(valid, valid, valid, hostile)


def _same(value: Any) -> Any:
    return value


def int_param(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return mostly(st.integers(lo, hi), st.one_of(st.integers(-3, hi * 2), weird))


def float_param(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return mostly(st.floats(lo, hi), st.one_of(st.integers(-2, int(hi) + 2), st.floats(), weird))


_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_controls = st.characters(max_codepoint=0x1F)

PROMPTS = st.one_of(
    st.text(max_size=60),
    st.just(""),
    st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2028\u3000", max_size=8),
    st.text(alphabet=_controls, min_size=1, max_size=8),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=5), st.text(max_size=5)),
    st.builds(lambda a, s: a + s, st.text(min_size=1, max_size=5), _surrogates),
    st.sampled_from(["a \U0001f600 emoji", "Z̷̢͓a̸l̶g̵o", "\u202eright-to-left", "名前", "\ufeffbom"]),
    st.sampled_from([_PROMPT_MAX - 1, _PROMPT_MAX, 1_000_001]).map(
        lambda n: "x" * n
    ),
    weird,
)

VALID_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=60
).filter(str.strip)
PROMPT_MIX = mostly(VALID_TEXT, PROMPTS)

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_nested_key = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.tuples(st.integers(0, 2)), st.none())
_nested = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_nested_key, inner, max_size=3), st.tuples(inner)
    ),
    max_leaves=8,
)
EXTRA = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=10), _nested, max_size=4),
    st.dictionaries(st.one_of(st.integers(), st.none(), st.tuples(st.integers())), st.integers(), max_size=2),
    weird,
)

LORAS = st.one_of(
    st.none(),
    st.text(max_size=10),
    st.builds(LoRAAdapterSpec, source=st.one_of(st.text(max_size=6), weird), scale=weird),
    st.lists(
        st.one_of(
            st.text(max_size=6),
            st.dictionaries(
                st.one_of(
                    st.sampled_from(["source", "scale", "weight_name", "adapter_name"]),
                    st.text(max_size=4),
                    st.integers(),
                ),
                weird,
                max_size=4,
            ),
            weird,
        ),
        max_size=3,
    ),
    weird,
)

_collected: list[Any] = []


def _raising_callback(event: Any) -> None:
    raise ZeroDivisionError("a broken progress callback")


CALLBACKS = st.one_of(
    st.none(),
    st.just(_collected.append),
    st.just(lambda event: None),
    st.sampled_from([int, print, lambda: None, _raising_callback, threading.Event]),  # callable, but wrong
    weird,
)


def _event(is_set: bool) -> threading.Event:
    ev = threading.Event()
    if is_set:
        ev.set()
    return ev


CANCELS = st.one_of(st.none(), st.builds(_event, st.booleans()), weird)


@dataclass(frozen=True)
class Marker:
    """An input that needs the example's directory or store (made real by :func:`materialize`)."""

    kind: str  # path | pathlike | missing_path | directory | stored_ref | missing_ref
    name: str = "png_rgb"


def _mutate(name: str, flips: list[tuple[int, int]], cut: Optional[int]) -> bytes:
    data = bytearray(_corpus.data(name))
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


def _pil(mode: str, size: tuple[int, int]) -> Any:
    from PIL import Image

    return Image.new(mode, size)


def _data_url(payload: bytes, valid: bool) -> str:
    import base64

    text = base64.b64encode(payload).decode()
    return f"data:image/png;base64,{text}" if valid else f"data:image/png;base64,{text[:-3]}!!"


_corpus_names = sorted(_corpus.corpus())
_valid_names = _corpus.valid_names()
IMAGE_INPUTS = st.one_of(
    st.sampled_from(_corpus_names).map(_corpus.data),
    st.builds(
        _mutate,
        st.sampled_from(_valid_names),
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
        st.one_of(st.none(), st.integers(0, 400)),
    ),
    st.binary(max_size=200),
    st.binary(max_size=64).map(lambda b: _corpus.PNG_SIG + b),
    st.binary(max_size=64).map(lambda b: b"\xff\xd8\xff" + b),
    st.sampled_from(_valid_names).map(lambda n: bytearray(_corpus.data(n))),
    st.sampled_from(_valid_names).map(lambda n: memoryview(_corpus.data(n))),
    st.builds(
        _pil,
        st.sampled_from(["RGB", "RGBA", "L", "LA", "1", "P", "I;16", "I", "F", "CMYK", "YCbCr", "HSV"]),
        st.tuples(st.integers(1, 24), st.integers(1, 24)),
    ),
    st.builds(_data_url, st.sampled_from(_valid_names).map(_corpus.data), st.booleans()),
    st.sampled_from(["data:image/png,notbase64", "data:", "data:;base64,", ""]),
    st.builds(Marker, st.sampled_from(["path", "pathlike", "stored_ref"]), st.sampled_from(_corpus_names)),
    st.builds(Marker, st.sampled_from(["missing_path", "directory", "missing_ref"])),
    st.fixed_dictionaries(
        {
            "$artifact": st.one_of(
                st.text(max_size=70), st.sampled_from(["../../etc/passwd", "0" * 64 + "\n"]), weird
            )
        }
    ),
    weird,
)
MASKS = st.one_of(
    st.none(),
    st.builds(
        lambda mode, size: _corpus.encode(_pil(mode, size), "PNG"),
        st.sampled_from(["L", "1", "RGB", "RGBA", "LA", "P", "I;16"]),
        st.tuples(st.integers(1, 32), st.integers(1, 32)),
    ),
    IMAGE_INPUTS,
)


def materialize(value: Any, workdir: Path, store: Optional[LocalAssetStore]) -> Any:
    """Turn :class:`Marker` placeholders into real paths / refs (recursively in lists)."""
    if isinstance(value, list):
        return [materialize(v, workdir, store) for v in value]
    if not isinstance(value, Marker):
        return value
    data = _corpus.data(value.name)
    if value.kind == "stored_ref_or_bytes":  # a valid input whatever the example's store
        return materialize(Marker("stored_ref" if store is not None else "bytes", value.name), workdir, store)
    if value.kind == "bytes":
        return data
    if value.kind in ("path", "pathlike"):
        path = workdir / f"input-{value.name}.bin"
        path.write_bytes(data)
        return path if value.kind == "pathlike" else str(path)
    if value.kind == "missing_path":
        return str(workdir / "does-not-exist.png")
    if value.kind == "directory":
        return str(workdir)
    if value.kind == "stored_ref":
        if store is None:
            return {"$artifact": hashlib.sha256(data).hexdigest()}
        return store.store_bytes(data or b"\x00", content_type="image/png")
    if value.kind == "matching_mask":  # sized by the test from its image (16x16 by default)
        return _corpus.encode(_pil("L", (16, 16)), "PNG")
    if value.kind == "missing_ref":
        return {"$artifact": hashlib.sha256(b"never stored").hexdigest()}
    raise AssertionError(value)


# -- the property -------------------------------------------------------------------------


def _param_named(exc: AbstractVisionError) -> None:
    message = str(exc).lower()
    assert message.strip(), f"{type(exc).__name__} has an empty message"
    param = getattr(exc, "param", None)
    if param:
        root = re.split(r"[\[.]", param)[0].lower()
        spoken = root.replace("_", " ")
        assert any(form in message for form in (root, spoken, root.rstrip("s"), spoken.rstrip("s"))), (
            f"{type(exc).__name__}(param={param!r}) does not name the parameter: {message!r}"
        )


def store_is_consistent(store: LocalAssetStore) -> set[str]:
    """No temporary file, every listed artifact has a blob that verifies; returns the ids."""
    leftovers = [p for p in store.base_dir.rglob(".tmp-*")]
    assert not leftovers, f"partial files left in the store: {leftovers}"
    ids = set()
    for meta in store.list():
        aid = meta["artifact_id"]
        assert hashlib.sha256(store.load_bytes(aid)).hexdigest() == aid
        ids.add(aid)
    return ids


def check_output(out: Any, store: Optional[LocalAssetStore]) -> None:
    items = out if isinstance(out, list) else [out]
    for item in items:
        if store is not None:
            assert is_artifact_ref(item), item
            json.dumps(item)
            data = store.load_bytes(item)
            assert hashlib.sha256(data).hexdigest() == item["$artifact"]
        else:
            assert isinstance(item, _Asset), type(item)
            assert isinstance(item.data, bytes) and item.data
            assert isinstance(item.mime_type, str) and "/" in item.mime_type
            json.dumps(item.metadata, default=str)


def expect_typed(prop: str, call: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``call``; return ``(True, result)`` or ``(False, error)`` for a typed error.

    Any other exception propagates and fails the property.
    """
    try:
        result = call()
    except AbstractVisionError as exc:
        _param_named(exc)
        STATS.outcome(prop, type(exc).__name__)
        if currently_in_test_context():
            note(f"typed error: {type(exc).__name__}: {str(exc)[:200]}")
        return False, exc
    STATS.outcome(prop, "result")
    return True, result


class Example:
    """A fresh directory and store for one example; cleaned up afterwards."""

    def __init__(self, use_store: bool) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="av-fuzz-"))
        self.store = LocalAssetStore(self.workdir / "store") if use_store else None

    def __enter__(self) -> Example:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self, prop: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        before = store_is_consistent(self.store) if self.store is not None else set()
        started = time.perf_counter()
        ok, value = expect_typed(prop, call)
        elapsed = time.perf_counter() - started
        STATS.slowest(prop, elapsed)
        assert elapsed < EXAMPLE_LIMIT_S, f"one call took {elapsed:.1f} s (a hang?)"
        if ok:
            check_output(value, self.store)
        if self.store is not None:
            after = store_is_consistent(self.store)
            if not ok and isinstance(value, InvalidRequestError):
                assert after == before, "a rejected request left artifacts in the store"
        return ok, value


def _method_params(method: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(method).parameters)


_ALL_METHOD_PARAMS = set().union(
    *(_method_params(getattr(VisionManager, m)) for m in dir(VisionManager) if not m.startswith("_"))
)
UNKNOWN_KWARGS = st.dictionaries(
    st.one_of(
        st.sampled_from(
            ["num_inference_steps", "cfg_scale", "frames", "mask_image", "size", "n", "count", "loras"]
        ),
        st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    ).filter(lambda k: k not in _ALL_METHOD_PARAMS or k in ("n", "count")),
    weird,
    max_size=2,
)

NO_UNKNOWN_MOSTLY = mostly(st.just({}), UNKNOWN_KWARGS)


def _matching_mask(image: Any) -> bytes:
    """An L-mode mask of the image's size (16x16 when the image does not decode)."""
    from PIL import Image

    size = (16, 16)
    if isinstance(image, (bytes, bytearray, memoryview)):
        with contextlib.suppress(Exception):
            size = Image.open(io.BytesIO(bytes(image))).size
    elif isinstance(image, Image.Image):
        size = image.size
    return _corpus.encode(_pil("L", size), "PNG")


_REGISTRY = VisionModelCapabilitiesRegistry()
_T2I_MODELS = _REGISTRY.list_models(task="text_to_image")
_MODEL_NAMES = _REGISTRY.list_models()
_PARAM_NAMES = sorted({p for m in _MODEL_NAMES for t in _REGISTRY.get(m).tasks.values() for p in t.params})
MODEL_IDS = st.one_of(
    st.sampled_from(_MODEL_NAMES),
    st.sampled_from(_MODEL_NAMES).map(lambda m: f"  {m.upper()} "),
    st.text(max_size=30),
    st.just("x" * 100_000),
    weird,
)


_valid_lora = st.builds(
    LoRAAdapterSpec, source=VALID_TEXT, scale=st.floats(-10, 10), weight_name=st.none() | VALID_TEXT
)
COMMON = {
    "negative_prompt": PROMPT_MIX,
    "width": int_param(1, 512),
    "height": int_param(1, 512),
    "steps": int_param(1, 30),
    "guidance_scale": float_param(0, 30),
    "seed": int_param(0, 2**32),
    "lora_adapters": mostly(st.lists(_valid_lora, max_size=2), LORAS),
    "extra": mostly(st.dictionaries(st.text(max_size=10), _nested, max_size=4), EXTRA),
    "on_progress": mostly(st.sampled_from([None, _collected.append, lambda event: None]), CALLBACKS),
    "cancel": mostly(st.builds(threading.Event), CANCELS),
}


def _optional(**strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=strategies)


# -- managers -----------------------------------------------------------------------------


@fuzz_settings()
@given(
    prompt=PROMPT_MIX,
    params=_optional(**COMMON),
    unknown=NO_UNKNOWN_MOSTLY,
    use_store=st.booleans(),
    model_id=st.one_of(st.none(), st.sampled_from(_T2I_MODELS)),
)
def test_generate_image_with_registry_gating(prompt, params, unknown, use_store, model_id):
    """With ``model_id`` set, the registry's constraints (min/max/multiple_of/enum) join in."""
    with Example(use_store) as ex:
        vm = VisionManager(backend=FuzzBackend(), store=ex.store, model_id=model_id, registry=_REGISTRY)
        prop = "registry_gated.generate_image" if model_id else "ungated.generate_image"
        ex.run(prop, lambda: vm.generate_image(prompt, **params, **unknown))


ANGLE_VALUES = st.one_of(
    st.sampled_from(sorted(_angles.NAMED_ANGLES)),
    st.sampled_from(["Front", " back-left ", "three quarter", "az=30,el=10", "30:20", "45_-30", "az-90"]),
    st.floats(),
    st.integers(),
    st.sampled_from([HUGE, -HUGE, 1e308, -1e-300]),
    st.builds(lambda a, e: f"{a},{e}", st.floats(-1e6, 1e6), st.floats(-200, 200)),
    st.fixed_dictionaries(
        {"azimuth": st.one_of(st.floats(), weird)}, optional={"elevation": st.one_of(st.floats(), weird)}
    ),
    st.dictionaries(st.text(max_size=9), weird, max_size=3),
    st.text(max_size=12),
    weird,
)

_valid_image = st.one_of(
    st.sampled_from(_valid_names).map(_corpus.data),
    st.builds(
        Marker, st.sampled_from(["path", "pathlike", "stored_ref_or_bytes"]), st.sampled_from(_valid_names)
    ),
)


def _ints(lo: int, hi: int) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    return st.integers(lo, hi), st.one_of(
        st.integers(-3, hi * 2), st.sampled_from([0, -1, 2**63, HUGE]), weird
    )


def _floats(lo: float, hi: float) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    return st.floats(lo, hi), st.one_of(st.floats(), st.integers(-2, int(hi) + 2), weird)


#: parameter -> (valid values, hostile values)
PARAMS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "prompt": (VALID_TEXT, PROMPTS),
    "negative_prompt": (st.none() | VALID_TEXT, PROMPTS),
    "image": (_valid_image, IMAGE_INPUTS),
    "mask": (st.none() | st.just(Marker("matching_mask")), MASKS),
    "reference_image": (st.none() | _valid_image, IMAGE_INPUTS),
    "reference_images": (
        st.none() | st.lists(_valid_image, max_size=2),
        st.one_of(st.lists(IMAGE_INPUTS, min_size=1, max_size=2), IMAGE_INPUTS),
    ),
    "width": _ints(1, 512),
    "height": _ints(1, 512),
    "steps": _ints(1, 30),
    "seed": _ints(0, 2**32),
    "num_frames": _ints(1, 16),
    "fps": _ints(1, 60),
    "guidance_scale": _floats(0, 30),
    "strength": (st.floats(0.01, 1), st.one_of(st.just(0.0), st.floats(), weird)),
    "scale": _floats(1, 16),
    "count": _ints(1, 4),
    "n": (st.none(), st.one_of(st.integers(-1, 70), weird)),
    "seeds": (
        st.none(),
        st.one_of(st.lists(st.one_of(st.integers(0, 2**32), st.integers(), weird), max_size=5), weird),
    ),
    "extra": (st.none() | st.dictionaries(st.text(max_size=10), _nested, max_size=4), EXTRA),
    "lora_adapters": (st.none() | st.lists(_valid_lora, max_size=2), LORAS),
    "on_progress": (st.sampled_from([None, _collected.append, lambda event: None]), CALLBACKS),
    "cancel": (st.none() | st.builds(threading.Event), CANCELS),
    "angles": (
        st.lists(
            st.one_of(st.sampled_from(sorted(_angles.NAMED_ANGLES)), st.floats(-720, 720)),
            min_size=1,
            max_size=5,
        ),
        st.one_of(
            st.lists(ANGLE_VALUES, max_size=6),
            ANGLE_VALUES,
            st.lists(st.just("front"), min_size=37, max_size=40),
        ),
    ),
    "strategy": (st.sampled_from([None, "native", "orchestrated"]), weird),
    "contact_sheet": (st.booleans(), weird),
}

_IMAGE_COMMON = ["negative_prompt", "width", "height", "steps", "guidance_scale", "seed", "lora_adapters"]
_RUNTIME = ["extra", "on_progress", "cancel"]
_BATCH = ["count", "n", "seeds"]
#: method -> (positional parameters, optional keyword parameters)
METHODS: dict[str, tuple[list[str], list[str]]] = {
    "generate_image": (["prompt"], _IMAGE_COMMON + _RUNTIME),
    "generate_image_batch": (["prompt"], _BATCH + _IMAGE_COMMON + _RUNTIME),
    "edit_image": (["prompt", "image"], ["mask", "reference_images", "strength", *_IMAGE_COMMON, *_RUNTIME]),
    "edit_image_batch": (
        ["prompt", "image"],
        [*_BATCH, "mask", "reference_images", "strength", *_IMAGE_COMMON, *_RUNTIME],
    ),
    "upscale_image": (
        ["image"],
        ["prompt", "negative_prompt", "scale", "steps", "guidance_scale", "seed", *_RUNTIME],
    ),
    "generate_video": (["prompt"], [*_IMAGE_COMMON, "num_frames", "fps", *_RUNTIME]),
    "generate_video_batch": (["prompt"], [*_BATCH, *_IMAGE_COMMON, "num_frames", "fps", *_RUNTIME]),
    "image_to_video": (["image"], ["prompt", *_IMAGE_COMMON, "num_frames", "fps", *_RUNTIME]),
    "image_to_video_batch": (["image"], ["prompt", *_BATCH, *_IMAGE_COMMON, "num_frames", "fps", *_RUNTIME]),
    "generate_angles": (
        ["prompt"],
        [
            "reference_image",
            "angles",
            "negative_prompt",
            "width",
            "height",
            "steps",
            "guidance_scale",
            "strength",
            "seed",
            "strategy",
            "contact_sheet",
            *_RUNTIME,
        ],
    ),
}
PLANS = ["valid", "one_bad", "hostile"]
_ALIASES = [
    "num_inference_steps",
    "cfg_scale",
    "frames",
    "mask_image",
    "size",
    "n",
    "count",
    "loras",
    "init_image",
]


def _unknown_keywords(method: str) -> st.SearchStrategy[dict[str, Any]]:
    declared = set(inspect.signature(getattr(VisionManager, method)).parameters)
    name = st.one_of(st.sampled_from(_ALIASES), st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True))
    return st.dictionaries(name.filter(lambda k: k not in declared), weird, min_size=1, max_size=2)


_UNKNOWN_FOR = {method: _unknown_keywords(method) for method in METHODS}


@fuzz_settings(scale=10)
@given(
    method=st.sampled_from(sorted(METHODS)),
    plan=st.sampled_from(PLANS),
    surface=st.sampled_from(["sync", "async"]),
    use_store=st.booleans(),
    data=st.data(),
)
def test_manager_calls(method, plan, surface, use_store, data):
    """Every task method, sync and async, under three plans:

    - ``valid``: every parameter valid; the call must return a valid result.
    - ``one_bad``: one parameter (or an unknown keyword) hostile; a typed error must name it.
    - ``hostile``: each parameter hostile one time in four.
    """
    positional, optional = METHODS[method]
    present = data.draw(
        st.lists(st.sampled_from(optional), unique=True, max_size=len(optional)), label="present"
    )
    names = [*positional, *present]
    bad = data.draw(st.sampled_from([*names, "<unknown>"]), label="bad") if plan == "one_bad" else None
    values: dict[str, Any] = {}
    for name in names:
        valid, hostile = PARAMS[name]
        if plan == "valid" or (plan == "one_bad" and name != bad):
            strategy = valid
        elif plan == "one_bad":
            strategy = hostile
        else:
            strategy = mostly(valid, hostile)
        values[name] = data.draw(strategy, label=name)
    unknown: dict[str, Any] = {}
    if bad == "<unknown>" or (plan == "hostile" and data.draw(st.integers(0, 3), label="add unknown") == 0):
        unknown = data.draw(_UNKNOWN_FOR[method], label="unknown")
    image = values.get("image")
    image_bytes = _corpus.data(image.name) if isinstance(image, Marker) else image
    with Example(use_store) as ex:
        for name in names:
            if values[name] == Marker("matching_mask"):
                values[name] = _matching_mask(image_bytes)
            else:
                values[name] = materialize(values[name], ex.workdir, ex.store)
        args = [values[name] for name in positional]
        kwargs = {name: values[name] for name in present} | unknown
        if surface == "sync":
            vm: Any = VisionManager(backend=FuzzBackend(), store=ex.store)
            call = lambda: getattr(vm, method)(*args, **kwargs)  # noqa: E731
        else:
            avm = AsyncVisionManager(backend=FuzzBackend(), store=ex.store)
            call = lambda: asyncio.run(asyncio.wait_for(getattr(avm, method)(*args, **kwargs), 60))  # noqa: E731
        prop = f"{'async.' if surface == 'async' else ''}{method}"
        ok, value = ex.run(prop, call)
        STATS.outcome(f"plan.{plan}", "result" if ok else type(value).__name__)
        if plan == "valid":
            assert ok, f"valid arguments were refused: {value!r}"
        if plan == "one_bad" and not ok and getattr(value, "param", None):
            culprit = re.split(r"[\[.]", value.param)[0]
            expected = {bad, *unknown}
            if bad == "n":
                expected.add("count")  # the batch methods validate n under the name 'count'
            if bad == "image":
                expected.add("mask")  # a hostile but decodable image of another size than the mask
            assert culprit in expected, f"the error names {value.param!r}, the bad parameter was {bad!r}"


@fuzz_settings()
@given(
    backend=mostly(st.sampled_from(["fuzz", "text-only", None]), weird),
    store=mostly(st.sampled_from([None, "local"]), weird),
    model_id=mostly(st.one_of(st.none(), st.sampled_from(_T2I_MODELS)), MODEL_IDS),
    registry=mostly(st.sampled_from([None, "packaged"]), weird),
    asynchronous=st.booleans(),
)
def test_manager_construction(backend, store, model_id, registry, asynchronous):
    """Managers built from odd arguments: a typed error at construction or on the first call."""
    from fakes import TextOnlyBackend

    with Example(store == "local") as ex:
        kwargs = {
            "backend": {"fuzz": FuzzBackend, "text-only": TextOnlyBackend}.get(backend, lambda: backend)()
            if isinstance(backend, str)
            else backend,
            "store": ex.store if store == "local" else store,
            "model_id": model_id,
            "registry": _REGISTRY if registry == "packaged" else registry,
        }
        cls = AsyncVisionManager if asynchronous else VisionManager
        ok, vm = expect_typed("manager.__init__", lambda: cls(**kwargs))
        if not ok:
            return
        call = (
            (lambda: asyncio.run(vm.generate_image("a")))
            if asynchronous
            else (lambda: vm.generate_image("a"))
        )
        ex.run("manager.first_call", call)
        expect_typed(
            "manager.list_provider_models", lambda: vm.list_provider_models() if not asynchronous else []
        )


@pytest.mark.parametrize("name", sorted(_corpus.corpus()))
@pytest.mark.parametrize("role", ["image", "mask", "upscale", "async_image"])
def test_crafted_image_inputs(name, role, tmp_path):
    """Every crafted input, in every role: accepted when decodable, InvalidRequestError when not."""
    data, expected = _corpus.corpus()[name]
    store = LocalAssetStore(tmp_path / "store")
    vm = VisionManager(backend=FuzzBackend(), store=store)
    if role == "image":
        call = lambda: vm.edit_image("edit", data)  # noqa: E731
    elif role == "mask":
        from PIL import Image

        size = Image.open(io.BytesIO(data)).size if expected == "ok" else (16, 16)
        call = lambda: vm.edit_image("inpaint", png_bytes(*size), mask=data)  # noqa: E731
    elif role == "upscale":
        call = lambda: vm.upscale_image(data, scale=2)  # noqa: E731
    else:
        avm = AsyncVisionManager(backend=FuzzBackend(), store=store)
        call = lambda: asyncio.run(avm.image_to_video(data, "move"))  # noqa: E731
    ok, value = expect_typed(f"crafted_inputs.{role}", call)
    STATS.figure("crafted_inputs", **{name: "accepted" if ok else type(value).__name__})
    if expected == "ok":
        assert ok, f"{name} should be accepted as {role}: {value}"
        check_output(value, store)
    elif expected == "invalid":
        assert not ok and isinstance(value, InvalidRequestError), f"{name} as {role}: {value!r}"
        assert value.param in ("image", "mask")
    store_is_consistent(store)
    assert len(store.list()) == (1 if ok else 0)


def test_mask_of_the_wrong_size_names_both_sizes(tmp_path):
    vm = VisionManager(backend=FuzzBackend())
    with pytest.raises(InvalidRequestError, match=r"mask is 8x8 but image is 16x16") as info:
        vm.edit_image("inpaint", png_bytes(16, 16), mask=png_bytes(8, 8, color=255, mode="L"))
    assert info.value.param == "mask"


# -- the artifact store -------------------------------------------------------------------

TRAVERSAL_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "",
    "0" * 64 + "\n",
    "0" * 64 + "\r\n",
    "0" * 63 + "/",
    "0" * 64 + "/../x",
    "00/../../" + "0" * 55,
    "..\\..\\" + "0" * 58,
    "%2e%2e%2f" + "0" * 55,
    "0" * 64 + ".json",
    "A" * 64,
    "0" * 65,
    " " + "0" * 63,
]

STORE_IDS = st.one_of(
    st.sampled_from(TRAVERSAL_IDS),
    st.integers(0, 7).map(lambda i: ("known", i)),
    st.binary(max_size=4).map(lambda b: hashlib.sha256(b).hexdigest()),
    st.text(max_size=70),
    st.text(alphabet="0123456789abcdef./\\\n", min_size=60, max_size=70),
    weird,
)
MIMES = st.one_of(
    st.sampled_from(
        ["image/png", "image/jpeg", "video/mp4", "text/plain", "application/octet-stream", "a/b"]
    ),
    st.text(max_size=20),
    weird,
)
_text_or_weird = st.one_of(st.none(), st.text(max_size=20), weird)
STORE_OPS = st.one_of(
    st.tuples(
        st.just("store"),
        st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"same", b"same"]), weird),
        _optional(
            content_type=MIMES,
            filename=st.one_of(
                st.sampled_from(["../../evil.png", "/etc/passwd", "..", "a\x00b", "C:\\x.png"]),
                _text_or_weird,
            ),
            metadata=st.one_of(
                st.none(), st.dictionaries(st.text(max_size=6), _nested, max_size=3), EXTRA, weird
            ),
            tags=st.one_of(
                st.none(),
                st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), weird, max_size=3),
                weird,
            ),
            run_id=_text_or_weird,
            artifact_id=st.one_of(st.none(), STORE_IDS),
        ),
    ),
    st.tuples(
        st.sampled_from(["load_bytes", "get_metadata", "exists", "delete", "get_content_path"]), STORE_IDS
    ),
    st.tuples(st.just("ref"), STORE_IDS),
    st.tuples(
        st.just("list"),
        _optional(
            tags=st.one_of(st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2), weird),
            content_type=st.one_of(st.sampled_from(["image/", "video/", ""]), weird),
            limit=st.one_of(st.integers(-3, 10), weird),
        ),
    ),
    st.tuples(st.just("cleanup_temporary_files"), st.one_of(st.floats(), st.integers(), weird)),
)


@fuzz_settings(suppress_health_check=list(HealthCheck))
@given(ops=st.lists(STORE_OPS, min_size=1, max_size=10))
def test_local_asset_store_operations(ops):
    """Random operations and ids (path traversal attempts included) never escape or corrupt the store."""
    root = Path(tempfile.mkdtemp(prefix="av-store-fuzz-"))
    try:
        store = LocalAssetStore(root / "store")
        stored: dict[str, bytes] = {}
        known: list[str] = []

        def resolve(aid: Any) -> Any:
            if isinstance(aid, tuple) and aid[:1] == ("known",):
                return known[aid[1] % len(known)] if known else "0" * 64
            return aid

        for op in ops:
            name = op[0]
            if name == "store":
                content, kwargs = op[1], dict(op[2])
                if "artifact_id" in kwargs:
                    kwargs["artifact_id"] = resolve(kwargs["artifact_id"])
                ok, ref = expect_typed(
                    "store.store_bytes",
                    lambda content=content, kwargs=kwargs: store.store_bytes(content, **kwargs),
                )
                if ok:
                    assert is_artifact_ref(ref)
                    json.dumps(ref)
                    stored[ref["$artifact"]] = bytes(content)
                    known.append(ref["$artifact"])
            elif name == "list":
                ok, out = expect_typed("store.list", lambda op=op: store.list(**op[1]))
                if ok:
                    assert isinstance(out, list) and all(isinstance(m, dict) for m in out)
            elif name == "cleanup_temporary_files":
                expect_typed("store.cleanup", lambda op=op: store.cleanup_temporary_files(older_than_s=op[1]))
            else:
                aid = resolve(op[1])
                if name == "ref":
                    name, aid = "load_bytes", {"$artifact": aid}
                ok, out = expect_typed(f"store.{name}", lambda name=name, aid=aid: getattr(store, name)(aid))
                if ok and name == "load_bytes":
                    key = aid["$artifact"] if isinstance(aid, dict) else aid
                    assert out == stored[key]
                if ok and name == "delete" and out:
                    key = aid["$artifact"] if isinstance(aid, dict) else aid
                    stored.pop(key, None)
                if ok and name == "get_content_path":
                    assert Path(out).resolve().is_relative_to(store.base_dir)
        # nothing was written outside the store, nothing partial inside, nothing lost
        assert sorted(p.name for p in root.iterdir()) == ["store"]
        ids = store_is_consistent(store)
        assert set(stored) <= ids, f"lost artifacts: {set(stored) - ids}"
        for aid, content in stored.items():
            assert store.load_bytes(aid) == content
    finally:
        shutil.rmtree(root, ignore_errors=True)


@fuzz_settings(scale=0.5)
@given(
    base=st.one_of(
        st.text(alphabet="abc\x00", min_size=1, max_size=6).map(lambda s: ("tmp", s)),
        st.just(("file", "")),
        weird,
    )
)
def test_local_asset_store_base_dir(base):
    """Odd base directories: a store inside the given place, or a typed error (relative paths
    resolve against the working directory, here the example's own directory)."""
    root = Path(tempfile.mkdtemp(prefix="av-base-fuzz-")).resolve()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        if isinstance(base, tuple) and base[:1] == ("tmp",):
            value: Any = str(root / base[1])
        elif isinstance(base, tuple) and base[:1] == ("file",):
            value = root / "a-file"
            value.write_bytes(b"x")
        elif base is None:
            return  # None means "the default directory": covered elsewhere
        elif isinstance(base, str) and (
            os.path.isabs(base) or base.lstrip().startswith("~") or ".." in Path(base).parts
        ):
            return  # would create directories outside this example's directory (that works, by design)
        else:
            value = base
        ok, store = expect_typed("store.__init__", lambda: LocalAssetStore(value))
        if ok:
            assert store.base_dir.is_dir() and store.base_dir.is_relative_to(root)
            assert store.base_dir != root, "an empty base_dir silently became the working directory"
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)


@fuzz_settings(scale=0.5)
@given(
    artifact_id=st.one_of(st.text(max_size=10), weird),
    fields=_optional(
        content_type=_text_or_weird,
        filename=_text_or_weird,
        sha256=_text_or_weird,
        size_bytes=weird,
        metadata=st.one_of(EXTRA, weird),
    ),
    value=st.one_of(weird, st.dictionaries(st.sampled_from(["$artifact", "x"]), weird, max_size=2)),
)
def test_refs(artifact_id, fields, value):
    assert isinstance(is_artifact_ref(value), bool)
    ok, ref = expect_typed("make_media_ref", lambda: make_media_ref(artifact_id, **fields))
    if ok:
        assert is_artifact_ref(ref)
        json.dumps(ref)


# -- the registry, the settings resolver, angle parsing -----------------------------------

TASK_NAMES = st.one_of(st.sampled_from(TASKS), st.text(max_size=15), weird)
REG_PARAMS = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from(_PARAM_NAMES), st.text(max_size=8)),
        st.one_of(st.integers(-5, 5000), st.floats(), st.sampled_from(["euler", "1024x1024", "hd"]), weird),
        max_size=5,
    ),
    weird,
)


@fuzz_settings()
@given(
    model=MODEL_IDS,
    task=TASK_NAMES,
    params=REG_PARAMS,
    backend=st.one_of(st.none(), st.text(max_size=8), weird),
)
def test_registry_lookups(model, task, params, backend):
    reg = _REGISTRY
    assert isinstance(model in reg, bool)
    ok, supported = expect_typed("registry.supports", lambda: reg.supports(model, task))
    assert ok and isinstance(supported, bool), "supports() must answer, never raise"
    for name, call in [
        ("resolve", lambda: reg.resolve(model)),
        ("get", lambda: reg.get(model)),
        ("require_support", lambda: reg.require_support(model, task)),
        ("multi_view_strategy", lambda: reg.multi_view_strategy(model)),
        ("defaults", lambda: reg.defaults(model, task)),
        ("param_constraints", lambda: reg.param_constraints(model, task)),
        ("validate_params", lambda: reg.validate_params(model, task, params)),
        ("list_models", lambda: reg.list_models(task=task, backend=backend)),
        ("get_task", lambda: reg.get_task(task)),
        ("to_dict", lambda: reg.to_dict(model)),
    ]:
        ok, out = expect_typed(f"registry.{name}", call)
        if ok and name == "to_dict":
            json.dumps(out)


_SETTING_KEYS = [
    "backend",
    "model",
    "base_url",
    "api_key",
    "device",
    "dtype",
    "allow_download",
    "timeout_s",
    "store_dir",
]
SETTING_VALUES = st.one_of(
    st.sampled_from(
        [
            "openai",
            "diffusers",
            "sdcpp",
            "hf",
            "sd.cpp",
            "OpenAI ",
            "cuda",
            "true",
            "no",
            "30",
            "-1",
            "nan",
            "inf",
            "1e999",
        ]
    ),
    st.text(max_size=10),
    st.floats(),
    weird,
)
EXPLICIT = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from([*_SETTING_KEYS, "options", "config"]), st.text(max_size=6), st.integers()),
        st.one_of(
            SETTING_VALUES, st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), weird, max_size=2)
        ),
        max_size=5,
    ),
    weird,
)
ENV = st.dictionaries(
    st.one_of(
        st.sampled_from([f"ABSTRACTVISION_{k.upper()}" for k in _SETTING_KEYS]),
        st.from_regex(r"ABSTRACTVISION_OPT_[A-Z_]{1,8}", fullmatch=True),
    ),
    st.one_of(st.text(max_size=10), st.sampled_from(["[1, 2]", "{bad", "[" * 5000, "1e999", "true", "nan"])),
    max_size=4,
)
CONFIG_FILES = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["c.json", "c.toml", "c.txt"]),
        st.one_of(
            st.binary(max_size=60),
            st.builds(
                lambda d: json.dumps(d, default=str).encode(),
                st.dictionaries(
                    st.one_of(st.sampled_from([*_SETTING_KEYS, "options"]), st.text(max_size=5)),
                    st.one_of(
                        SETTING_VALUES.filter(lambda v: isinstance(v, (str, int, float, bool, type(None)))),
                        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                    ),
                    max_size=4,
                ),
            ),
            st.sampled_from([b'backend = "sdcpp"\n[options]\nx = 1\n', b"[[[", b'timeout_s = "soon"']),
        ),
    ),
    st.just(("missing", b"")),
    st.just(("directory", b"")),
)


@fuzz_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(explicit=EXPLICIT, env=ENV, config_file=CONFIG_FILES, via=st.sampled_from(["arg", "explicit", "env"]))
def test_resolve_settings(explicit, env, config_file, via, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no user config file can leak in
    explicit = dict(explicit) if isinstance(explicit, dict) else explicit
    env = dict(env)
    path: Optional[str] = None
    if config_file is not None:
        kind, content = config_file
        if kind == "missing":
            path = str(tmp_path / "missing.json")
        elif kind == "directory":
            path = str(tmp_path)
        else:
            target = tmp_path / kind
            target.write_bytes(content)
            path = str(target)
    kwargs: dict[str, Any] = {"env": env}
    if path is not None:
        if via == "arg":
            kwargs["config_path"] = path
        elif via == "env":
            env["ABSTRACTVISION_CONFIG"] = path
        elif isinstance(explicit, dict):
            explicit["config"] = path
    ok, settings = expect_typed(
        "config.resolve_settings", lambda: config.resolve_settings(explicit, **kwargs)
    )
    if ok:
        assert settings.backend is None or settings.backend in config.BACKENDS
        assert settings.allow_download in (None, True, False)
        assert settings.timeout_s is None or (math.isfinite(settings.timeout_s) and settings.timeout_s > 0)
        for key in ("model", "base_url", "api_key", "device", "dtype", "store_dir"):
            value = getattr(settings, key)
            assert value is None or isinstance(value, str), (key, value)
        json.dumps(settings.redacted(), default=str)


@fuzz_settings()
@given(value=st.one_of(ANGLE_VALUES, st.lists(ANGLE_VALUES, max_size=4)))
def test_parse_angle(value):
    def check(view: Any) -> None:
        assert isinstance(view, _angles.AngleView) and view.label
        assert math.isfinite(view.azimuth) and 0 <= view.azimuth < 360, view
        assert math.isfinite(view.elevation) and -90 <= view.elevation <= 90, view
        assert view.phrase()

    ok, view = expect_typed("angles.parse_angle", lambda: _angles.parse_angle(value))
    if ok:
        check(view)
    ok, views = expect_typed("angles.parse_angles", lambda: _angles.parse_angles(value))
    if ok:
        assert isinstance(views, tuple) and views
        for v in views:
            check(v)
