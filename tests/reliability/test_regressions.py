"""Regression tests for the bugs the reliability suites found (one test per bug).

Each test names the bug; the fix is in the commit that added the test.
"""

from __future__ import annotations

import pytest

from abstractvision import VisionManager
from abstractvision.errors import InvalidRequestError
from fakes import FakeBackend


@pytest.fixture
def vm() -> VisionManager:
    return VisionManager(backend=FakeBackend())


@pytest.mark.parametrize("value", [10**400, -(10**400)])
@pytest.mark.parametrize("name", ["guidance_scale", "strength"])
def test_float_params_given_ints_too_large_for_a_float(vm, name, value):
    """Bug: check_float called float() on huge ints and leaked OverflowError."""
    call = vm.edit_image if name == "strength" else vm.generate_image
    args = ("a", b"unused") if name == "strength" else ("a",)
    with pytest.raises(InvalidRequestError, match=f"'{name}' must be a finite number") as info:
        call(*args, **{name: value})
    assert info.value.param == name


@pytest.mark.parametrize(
    "adapters",
    [
        [{"source": "x", 1: 2, "a": 3}],  # keys of mixed types: sorted() raised TypeError
        [{"scale": 1.0}],
        [42],
        [{"source": "  "}],
        b"lora.safetensors",  # bytes are a Sequence of ints
    ],
)
def test_lora_adapter_errors_are_typed_and_name_the_parameter(vm, adapters):
    """Bug: a LoRA dict with keys of mixed types leaked TypeError; messages did not name the parameter."""
    with pytest.raises(InvalidRequestError, match="lora_adapters") as info:
        vm.generate_image("a", lora_adapters=adapters)
    assert info.value.param == "lora_adapters"


def test_cancel_given_the_event_class_instead_of_an_instance(vm):
    """Bug: cancel=threading.Event (the class) passed validation, then is_set() raised TypeError."""
    import threading

    with pytest.raises(InvalidRequestError, match=r"'cancel' must be an instance") as info:
        vm.generate_image("a", cancel=threading.Event)
    assert info.value.param == "cancel"


@pytest.mark.parametrize("name", ["prompt", "negative_prompt"])
def test_prompts_with_lone_surrogates(name):
    """Bug: a prompt with a lone surrogate ('\\ud800') passed validation and crashed with
    UnicodeEncodeError while the PNG text chunks were written (or inside the backend)."""
    from fakes import TextOnlyBackend

    vm = VisionManager(backend=TextOnlyBackend())
    kwargs = {"negative_prompt": "bad \udc80 text"} if name == "negative_prompt" else {}
    prompt = "a cat \ud83d" if name == "prompt" else "a cat"
    with pytest.raises(InvalidRequestError, match="lone surrogate") as info:
        vm.generate_image(prompt, **kwargs)
    assert info.value.param == name


def test_png_text_chunks_survive_text_that_is_not_utf8_encodable():
    """Bug: embed_png_text() raised UnicodeEncodeError on metadata text with lone surrogates."""
    from abstractvision._media import embed_png_text, read_png_text
    from fakes import png_bytes

    data = embed_png_text(png_bytes(), {"prompt": "x\ud800y"})
    assert read_png_text(data)["prompt"] == "x?y"


def _cyclic() -> dict:
    loop: dict = {"name": "loop"}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    "extra",
    [
        {"k": {1: "a", "b": 2}},  # mixed key types: json.dumps(sort_keys=True) raised TypeError
        {"k": {(1, 2): 3}},  # tuple keys: json.dumps raised TypeError even without sort_keys
        {"k": _cyclic()},  # a cycle: json.dumps raised ValueError
    ],
)
@pytest.mark.parametrize("with_store", [False, True])
def test_extra_values_that_json_cannot_encode_as_is(extra, with_store, tmp_path):
    """Bug: provenance metadata (PNG text chunks, store sidecar) crashed on extra values
    with non-string keys or cycles, after the backend had already run; the asset's own
    metadata kept them, so json.dumps(asset.metadata) (CLI --json, plugin) still crashed."""
    import json

    from abstractvision import LocalAssetStore

    store = LocalAssetStore(tmp_path / "store") if with_store else None
    out = VisionManager(backend=FakeBackend(), store=store).generate_image("a", extra=extra)
    if with_store:
        json.dumps(out)
        assert store.get_metadata(out)["metadata"]["parameters"]["extra"]["k"]
    else:  # the metadata of the asset itself is JSON-safe too (CLI --json, the plugin dump it)
        json.dumps(out.metadata)
        assert out.metadata["parameters"]["extra"]["k"]


def test_store_metadata_with_tuple_keys(tmp_path):
    """Bug: LocalAssetStore.store_bytes(metadata={(1, 2): ...}) leaked TypeError."""
    from abstractvision import LocalAssetStore

    store = LocalAssetStore(tmp_path)
    ref = store.store_bytes(b"x", content_type="text/plain", metadata={(1, 2): 1, 3: "c", None: 0})
    assert ref["metadata"] == {"(1, 2)": 1, "3": "c", "null": 0}


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), {"azimuth": 10**400}, {"azimuth": 0, "elevation": 10**400}]
)
def test_angles_given_ints_too_large_for_a_float(value):
    """Bug: parse_angle() leaked OverflowError for huge ints (plain or in a dict)."""
    from abstractvision._angles import parse_angle

    with pytest.raises(InvalidRequestError, match=r"finite|invalid angle") as info:
        parse_angle(value)
    assert info.value.param == "angles"


@pytest.mark.parametrize(("value", "label"), [(-1e-300, "front"), (-1e-14, "front"), (30.0, "az30_el0")])
def test_angles_normalise_to_zero_through_359(value, label):
    """Bug: a tiny negative azimuth became 360.0 (outside [0, 360), labelled 'az360_el0')."""
    from abstractvision._angles import parse_angle

    view = parse_angle(value)
    assert 0 <= view.azimuth < 360 and view.label == label
    assert parse_angle({"azimuth": 30, "elevation": -0.0}).label == "az30_el0"


def test_angles_given_bytes(vm):
    """Bug: angles=b'ab' was read as the list of numbers [97, 98] (bytes are a Sequence)."""
    with pytest.raises(InvalidRequestError, match="list of angles") as info:
        vm.generate_angles("a", angles=b"ab")
    assert info.value.param == "angles"


@pytest.mark.parametrize("suffix", ["\n"])
def test_store_ids_with_a_trailing_newline_are_invalid(tmp_path, suffix):
    """Bug: the id regex used '$', which also matches before a final newline, so
    '<64 hex>\\n' passed validation and named a file '<id>\\n.json' inside the store."""
    from abstractvision import LocalAssetStore

    store = LocalAssetStore(tmp_path)
    ref = store.store_bytes(b"x", content_type="text/plain")
    for op in (store.load_bytes, store.get_metadata, store.exists, store.delete, store.get_content_path):
        with pytest.raises(InvalidRequestError, match="Invalid artifact id"):
            op(ref["$artifact"] + suffix)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tags": "task"}, "tags"),
        ({"tags": ["task"]}, "tags"),
        ({"content_type": 5}, "content_type"),
        ({"content_type": True}, "content_type"),
        ({"limit": "3"}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 2.5}, "limit"),
    ],
)
def test_store_list_arguments_of_the_wrong_type(tmp_path, kwargs, param):
    """Bug: LocalAssetStore.list() leaked AttributeError/TypeError for tags/content_type/limit
    of the wrong type (and limit=-1 silently dropped the oldest entry)."""
    from abstractvision import LocalAssetStore

    store = LocalAssetStore(tmp_path)
    store.store_bytes(b"x", content_type="text/plain", tags={"task": "t"})
    with pytest.raises(InvalidRequestError) as info:
        store.list(**kwargs)
    assert info.value.param == param


@pytest.mark.parametrize("value", ["1h", None, float("nan"), -1, True])
def test_store_cleanup_age_of_the_wrong_type(tmp_path, value):
    """Bug: cleanup_temporary_files(older_than_s='1h') leaked TypeError; a negative age
    would have deleted the temporary files of writes still in progress."""
    from abstractvision import LocalAssetStore

    with pytest.raises(InvalidRequestError, match="older_than_s"):
        LocalAssetStore(tmp_path).cleanup_temporary_files(older_than_s=value)


@pytest.mark.parametrize(
    "sidecar",
    [
        b"[" * 100_000,  # json.loads raised RecursionError
        b'{"artifact_id": "%(aid)s", "tags": ["not", "a", "dict"], "content_type": "text/plain"}',
        b'{"artifact_id": "%(other)s", "content_type": "text/plain"}',  # names another artifact
        b"\xff\xfe not utf-8",
        b"null",
    ],
)
def test_tampered_sidecars_never_crash_the_store(tmp_path, sidecar):
    """Bug: a tampered sidecar made list() and load_bytes() leak RecursionError (deeply nested
    JSON) or AttributeError (list(tags=...) over a sidecar whose tags is not a dict)."""
    from abstractvision import LocalAssetStore
    from abstractvision.errors import AbstractVisionError

    store = LocalAssetStore(tmp_path)
    good = store.store_bytes(b"good", content_type="text/plain", tags={"k": "v"})["$artifact"]
    aid = store.store_bytes(b"victim", content_type="text/plain", tags={"k": "v"})["$artifact"]
    path = tmp_path / aid[:2] / f"{aid}.json"
    path.write_bytes(sidecar.replace(b"%(aid)s", aid.encode()).replace(b"%(other)s", good.encode()))
    readable = {good, aid} if b'"tags"' in sidecar else {good}  # valid JSON naming its own artifact
    assert {m["artifact_id"] for m in store.list()} == readable
    assert [m["artifact_id"] for m in store.list(tags={"k": "v"})] == [good]
    for op in (store.load_bytes, store.get_metadata, store.exists):
        try:
            op(aid)
        except AbstractVisionError:
            pass
    assert store.load_bytes(good) == b"good"


@pytest.mark.parametrize("base_dir", [5, ["a"], b"bytes", "", "   ", "a\x00b", "~no-such-user-av/x"])
def test_store_base_dir_of_the_wrong_type(tmp_path, monkeypatch, base_dir):
    """Bug: LocalAssetStore(5) leaked TypeError, LocalAssetStore('a\\x00b') ValueError, and
    LocalAssetStore('') silently used the current working directory as the store."""
    from abstractvision import LocalAssetStore

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidRequestError) as info:
        LocalAssetStore(base_dir)
    assert info.value.param == "base_dir" and "base_dir" in str(info.value)


def test_delete_removes_the_bytes_stored_under_every_content_type(tmp_path):
    """Bug: the same bytes stored as image/png and as text/plain have two blob files;
    delete() removed one, so exists()/load_bytes() still found the artifact afterwards."""
    from abstractvision import LocalAssetStore
    from abstractvision.errors import ArtifactNotFoundError

    store = LocalAssetStore(tmp_path)
    aid = store.store_bytes(b"same", content_type="image/png")["$artifact"]
    store.store_bytes(b"same", content_type="text/plain")
    assert store.delete(aid) is True
    assert store.exists(aid) is False and store.get_metadata(aid) is None
    with pytest.raises(ArtifactNotFoundError):
        store.load_bytes(aid)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_an_interrupted_delete_never_leaves_a_sidecar_without_its_blob(tmp_path, monkeypatch):
    """Bug: delete() removed the blob before the sidecar; dying in between left an artifact
    that list() shows but load_bytes() cannot find."""
    from pathlib import Path

    from abstractvision import LocalAssetStore

    store = LocalAssetStore(tmp_path)
    aid = store.store_bytes(b"bytes", content_type="text/plain")["$artifact"]
    real_unlink = Path.unlink
    calls: list[str] = []

    def dying_unlink(self, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # the process dies after the first removal
        calls.append(self.name)
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", dying_unlink)
    with pytest.raises(KeyboardInterrupt):
        store.delete(aid)
    monkeypatch.undo()
    for meta in store.list():
        assert store.load_bytes(meta["artifact_id"])
    assert calls == [f"{aid}.json"]


def test_read_errors_on_a_blob_are_typed(tmp_path, monkeypatch):
    """Bug: load_bytes() mapped only FileNotFoundError; any other read error (EIO, EACCES)
    leaked as a bare OSError."""
    import errno
    from pathlib import Path

    from abstractvision import LocalAssetStore
    from abstractvision.errors import ArtifactStoreError

    store = LocalAssetStore(tmp_path)
    aid = store.store_bytes(b"bytes", content_type="text/plain")["$artifact"]
    real = Path.read_bytes

    def failing(self):
        if self.suffix == ".bin":
            raise OSError(errno.EIO, "Input/output error")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(ArtifactStoreError, match="Input/output error"):
        store.load_bytes(aid)


def test_saving_into_a_missing_directory_is_a_typed_error(tmp_path):
    """Bug: atomic_write_bytes() created its temporary file outside its try block, so a
    missing directory (or EACCES/ENOSPC on create) leaked a bare FileNotFoundError/OSError,
    for example from GeneratedAsset.save('/missing/dir/x.png')."""
    from abstractvision import GeneratedAsset
    from abstractvision.errors import ArtifactStoreError

    asset = GeneratedAsset("image", b"bytes", "image/png")
    with pytest.raises(ArtifactStoreError, match="Could not write"):
        asset.save(tmp_path / "missing" / "dir" / "x.png")
    assert not (tmp_path / "missing").exists()


def test_elevation_errors_name_the_angles_parameter():
    """Bug (message): 'elevation 91 is outside [-90, 90] degrees.' did not say which parameter."""
    from abstractvision._angles import parse_angle

    with pytest.raises(InvalidRequestError, match=r"^angles: elevation 91 is outside"):
        parse_angle("0,91")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size_bytes": "12"}, "size_bytes"),  # int('12') would pass, int('x') raised ValueError
        ({"size_bytes": float("nan")}, "size_bytes"),  # ValueError: cannot convert NaN
        ({"size_bytes": [1]}, "size_bytes"),  # TypeError
        ({"size_bytes": -1}, "size_bytes"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
    ],
)
def test_make_media_ref_arguments_of_the_wrong_type(kwargs, param):
    """Bug: make_media_ref(size_bytes=...) leaked ValueError/TypeError from int()."""
    from abstractvision import make_media_ref

    with pytest.raises(InvalidRequestError) as info:
        make_media_ref("abc", **kwargs)
    assert info.value.param == param


def test_registry_supports_never_raises_and_validate_params_checks_its_argument():
    """Bug: supports(model, ['list']) leaked TypeError (unhashable) although documented to
    never raise; validate_params(model, task, [..]/None) leaked AttributeError."""
    from abstractvision import VisionModelCapabilitiesRegistry

    reg = VisionModelCapabilitiesRegistry()
    model = reg.list_models(task="text_to_image")[0]
    assert reg.supports(model, ["text_to_image"]) is False
    assert reg.supports(model, {"a": 1}) is False
    reg.validate_params(model, "text_to_image", None)
    with pytest.raises(InvalidRequestError, match="params must be a dict") as info:
        reg.validate_params(model, "text_to_image", [("steps", 4)])
    assert info.value.param == "params"


@pytest.mark.parametrize(
    ("explicit", "param"),
    [
        ("backend=openai", "settings"),  # dict('...') raised ValueError
        (True, "settings"),  # dict(True) raised TypeError
        ({"config": 5}, "config"),  # Path(5) raised TypeError
        ({1: "x", "a": 2}, "settings"),  # sorted() over mixed key types raised TypeError
        ({"model": 5}, "model"),  # silently kept a non-string model
        ({"base_url": ["http://x"]}, "base_url"),
    ],
)
def test_resolve_settings_with_settings_of_the_wrong_type(explicit, param):
    """Bug: resolve_settings() leaked ValueError/TypeError for a non-mapping, a non-path
    config, unknown keys of mixed types, and accepted non-string names and URLs."""
    from abstractvision.config import resolve_settings

    with pytest.raises(InvalidRequestError) as info:
        resolve_settings(explicit, env={})
    assert info.value.param == param


@pytest.mark.parametrize("value", [10**400, "nan", float("nan"), "inf", float("-inf"), True, "1e999"])
def test_timeout_must_be_a_positive_finite_number(value):
    """Bug: timeout_s=10**400 leaked OverflowError; 'nan' and 'inf' were accepted (a NaN
    deadline never expires, comparisons with it are always false); True became 1 second."""
    from abstractvision.config import resolve_settings

    with pytest.raises(InvalidRequestError, match="timeout_s") as info:
        resolve_settings({"timeout_s": value}, env={})
    assert info.value.param == "timeout_s"


def test_deeply_nested_json_in_an_option_variable():
    """Bug: ABSTRACTVISION_OPT_X='[[[[...' leaked RecursionError from json.loads."""
    from abstractvision.config import resolve_settings

    text = "[" * 100_000
    assert resolve_settings({}, env={"ABSTRACTVISION_OPT_X": text}).options["x"] == text


class _KeyErrorStore:
    """A custom MediaStore whose load_bytes raises its own exception for unknown ids."""

    def store_bytes(self, content, **kwargs):  # pragma: no cover - not used
        raise NotImplementedError

    def load_bytes(self, artifact_id):
        raise KeyError(artifact_id)

    def get_metadata(self, artifact_id):  # pragma: no cover - not used
        return None


@pytest.mark.parametrize(
    ("store_kind", "artifact_id"),
    [("local", "../../etc/passwd"), ("local", "0" * 64 + "\n"), ("custom", "missing")],
)
def test_image_refs_the_store_rejects_name_the_input(tmp_path, store_kind, artifact_id):
    """Bug: an image ref with an id the store rejects raised InvalidRequestError(param=
    'artifact_id') that did not say which input was wrong; a custom store's KeyError leaked."""
    from abstractvision import LocalAssetStore
    from fakes import png_bytes

    store = LocalAssetStore(tmp_path) if store_kind == "local" else _KeyErrorStore()
    vm = VisionManager(backend=FakeBackend(), store=store)
    with pytest.raises(InvalidRequestError, match=r"^mask: ") as info:
        vm.edit_image("edit", png_bytes(), mask={"$artifact": artifact_id})
    assert info.value.param == "mask"


class _BrokenExternalStore:
    def store(self, content, *, content_type):
        return {"artifact_id": "x"}

    def load(self, artifact_id):
        raise ValueError("backend database is locked")

    def get_metadata(self, artifact_id):
        if artifact_id == "missing":
            raise KeyError(artifact_id)
        raise RuntimeError("connection reset")


def test_runtime_adapter_maps_the_external_store_read_errors():
    """Bug: RuntimeArtifactStoreAdapter mapped the external store's errors on store() but
    not on load() (only KeyError/FileNotFoundError) nor get_metadata() (nothing)."""
    from abstractvision import RuntimeArtifactStoreAdapter
    from abstractvision.errors import ArtifactStoreError

    adapter = RuntimeArtifactStoreAdapter(_BrokenExternalStore())
    with pytest.raises(ArtifactStoreError, match="database is locked"):
        adapter.load_bytes("x")
    assert adapter.get_metadata("missing") is None
    with pytest.raises(ArtifactStoreError, match="connection reset"):
        adapter.get_metadata("x")


def _raising(event):
    raise ZeroDivisionError("division by zero")


@pytest.mark.parametrize("callback", [int, lambda: None, _raising])
@pytest.mark.parametrize("surface", ["sync", "async"])
def test_a_failing_progress_callback_is_one_typed_error(callback, surface):
    """Bug: an on_progress callback that raises (or cannot take the event, like int or a
    zero-argument lambda) leaked its TypeError/ZeroDivisionError when the manager emitted
    'started', but became a BackendError when the backend called it during the steps."""
    import asyncio

    from abstractvision import AsyncVisionManager
    from abstractvision.errors import BackendError

    with pytest.raises(BackendError, match="on_progress raised") as info:
        if surface == "sync":
            VisionManager(backend=FakeBackend()).generate_image("a", on_progress=callback)
        else:
            asyncio.run(AsyncVisionManager(backend=FakeBackend()).generate_image("a", on_progress=callback))
    assert info.value.__cause__ is not None


def test_a_progress_callback_failing_inside_the_backend_steps():
    calls = []

    def fails_on_steps(event):
        calls.append(event.phase)
        if event.phase == "step":
            raise ValueError("bad step")

    from abstractvision.errors import BackendError

    with pytest.raises(BackendError, match="on_progress raised ValueError: bad step"):
        VisionManager(backend=FakeBackend()).generate_image("a", on_progress=fails_on_steps, steps=3)
    assert calls == ["started", "step"]


@pytest.mark.parametrize("registry", ["registry.json", 5, {"models": {}}])
def test_a_registry_of_the_wrong_type(registry):
    """Bug: VisionManager(model_id=..., registry='registry.json') leaked AttributeError."""
    from abstractvision import AsyncVisionManager

    for cls in (VisionManager, AsyncVisionManager):
        with pytest.raises(InvalidRequestError, match="registry must be") as info:
            cls(backend=FakeBackend(), model_id="runwayml/stable-diffusion-v1-5", registry=registry)
        assert info.value.param == "registry"


@pytest.mark.parametrize("backend", ["openai", True, 5, FakeBackend])
def test_a_backend_of_the_wrong_type_is_refused_at_construction(backend):
    """Bug: VisionManager(backend='openai') (or True, or the FakeBackend class itself) was
    accepted; list_provider_models()/preload() then leaked AttributeError and the class
    leaked TypeError from get_capabilities() (called without an instance)."""
    from abstractvision import AsyncVisionManager

    for cls in (VisionManager, AsyncVisionManager):
        with pytest.raises(InvalidRequestError, match="backend must be a VisionBackend instance") as info:
            cls(backend=backend)
        assert info.value.param == "backend"


def test_a_store_class_instead_of_an_instance_is_refused():
    """Bug: VisionManager(store=LocalAssetStore) (the class) passed the duck-type check and
    the first store_bytes() call leaked TypeError."""
    from abstractvision import LocalAssetStore

    with pytest.raises(InvalidRequestError, match="store must be a MediaStore") as info:
        VisionManager(backend=FakeBackend(), store=LocalAssetStore)
    assert info.value.param == "store"
