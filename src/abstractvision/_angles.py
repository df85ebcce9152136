"""Multi-view generation (``generate_angles``): angle parsing, strategy choice, orchestration.

Two strategies:

- ``native``: the backend runs a multi-view pipeline itself (``VisionBackend.generate_angles``),
  for models the registry marks ``"strategy": "native"`` (Zero123++, MV-Adapter). Such models
  produce fixed views; requested angles must be among them.
- ``orchestrated``: any backend with ``text_to_image`` and ``image_to_image``. The reference
  view is generated (or taken from ``reference_image``), then every other angle is derived from
  it by image-to-image with a view-specific prompt and one shared seed, so views stay
  consistent.

The orchestration is written once as a generator of backend steps (sans-I/O): the sync and
async managers drive it with their own way of calling the backend.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from . import _params
from .errors import CapabilityNotSupportedError, InvalidRequestError
from .types import GeneratedAsset, ImageEditRequest, ImageGenerationRequest, MultiAngleRequest, ProgressEvent

#: name -> (azimuth degrees, elevation degrees, prompt phrase)
NAMED_ANGLES: dict[str, tuple[float, float, str]] = {
    "front": (0.0, 0.0, "front view, facing the camera"),
    "three_quarter": (45.0, 0.0, "three-quarter view from the front right"),
    "front_right": (45.0, 0.0, "three-quarter view from the front right"),
    "side": (90.0, 0.0, "side view, profile from the right"),
    "right": (90.0, 0.0, "side view, profile from the right"),
    "back_right": (135.0, 0.0, "view from the back right"),
    "back": (180.0, 0.0, "back view, seen from behind"),
    "back_left": (225.0, 0.0, "view from the back left"),
    "left": (270.0, 0.0, "side view, profile from the left"),
    "front_left": (315.0, 0.0, "three-quarter view from the front left"),
    "three_quarter_left": (315.0, 0.0, "three-quarter view from the front left"),
    "top": (0.0, 90.0, "top-down view, seen from directly above"),
    "bottom": (0.0, -90.0, "view from directly below"),
}
DEFAULT_ANGLES: tuple[str, ...] = _params.PARAMS["angles"]["default"]
DEFAULT_STRENGTH = 0.75
STRATEGIES = ("native", "orchestrated")
_NUM = r"[-+]?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class AngleView:
    """One requested view: a canonical label plus its azimuth/elevation in degrees."""

    label: str
    azimuth: float
    elevation: float

    @property
    def is_front(self) -> bool:
        return self.azimuth % 360 == 0 and self.elevation == 0

    def phrase(self) -> str:
        if self.label in NAMED_ANGLES:
            return NAMED_ANGLES[self.label][2]
        nearest = min(
            (n for n in NAMED_ANGLES if n not in ("top", "bottom")),
            key=lambda n: _angular_distance(NAMED_ANGLES[n][0], self.azimuth),
        )
        height = ""
        if self.elevation >= 20:
            height = ", seen from above"
        elif self.elevation <= -20:
            height = ", seen from below"
        return f"{NAMED_ANGLES[nearest][2]}{height} (azimuth {self.azimuth:g} degrees, elevation {self.elevation:g} degrees)"

    def to_dict(self) -> dict[str, Any]:
        return {"angle": self.label, "azimuth": self.azimuth, "elevation": self.elevation}


def _angular_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def _make(azimuth: float, elevation: float) -> AngleView:
    if not (math.isfinite(azimuth) and math.isfinite(elevation)):
        raise InvalidRequestError("angles must be finite numbers of degrees.", param="angles")
    if not -90 <= elevation <= 90:
        raise InvalidRequestError(
            f"angles: elevation {elevation:g} is outside [-90, 90] degrees.", param="angles"
        )
    azimuth = azimuth % 360
    if azimuth >= 360:  # a tiny negative angle rounds up to 360.0 under float modulo
        azimuth = 0.0
    azimuth, elevation = azimuth + 0.0, elevation + 0.0  # -0.0 -> 0.0 (labels never show "-0")
    for name, (az, el, _) in NAMED_ANGLES.items():
        if az == azimuth and el == elevation and name not in ("front_right", "right", "three_quarter_left"):
            return AngleView(name, azimuth, elevation)
    return AngleView(f"az{azimuth:g}_el{elevation:g}", azimuth, elevation)


def _degrees(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: rejected as not finite by _make
        return math.inf


def parse_angle(value: Any) -> AngleView:
    """Parse one angle: a name, degrees of azimuth, ``"az,el"``, ``"az=30,el=10"`` or a dict."""
    if isinstance(value, AngleView):
        return value
    if isinstance(value, bool):
        raise InvalidRequestError(f"invalid angle {value!r}.", param="angles")
    if isinstance(value, (int, float)):
        return _make(_degrees(value), 0.0)
    if isinstance(value, Mapping):
        unknown = set(value) - {"azimuth", "elevation"}
        if unknown or "azimuth" not in value:
            raise InvalidRequestError(
                "an angle dict needs 'azimuth' (and optionally 'elevation') in degrees.", param="angles"
            )
        try:
            return _make(_degrees(value["azimuth"]), _degrees(value.get("elevation", 0.0)))
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"invalid angle {dict(value)!r}.", param="angles") from exc
    if isinstance(value, str):
        name = value.strip().lower().replace("-", "_").replace(" ", "_")
        if name in NAMED_ANGLES:
            az, el, _ = NAMED_ANGLES[name]
            return AngleView(name, az, el)
        text = value.strip().lower().replace(" ", "")
        m = re.fullmatch(rf"(?:az=?)?({_NUM})(?:[,_:](?:el=?)?({_NUM}))?", text)
        if m:
            return _make(float(m.group(1)), float(m.group(2) or 0.0))
    raise InvalidRequestError(
        f"invalid angle {value!r}. Use a name ({', '.join(sorted(NAMED_ANGLES))}), degrees of azimuth "
        "(for example 30), 'azimuth,elevation' (for example '30,20') or {'azimuth': 30, 'elevation': 20}.",
        param="angles",
    )


def parse_angles(values: Any) -> tuple[AngleView, ...]:
    if isinstance(values, (str, int, float, Mapping)):
        values = [values]
    if isinstance(values, (bytes, bytearray)) or not isinstance(values, Sequence) or not values:
        raise InvalidRequestError("'angles' must be a non-empty list of angles.", param="angles")
    most = _params.PARAMS["angles"]["max_items"]
    if len(values) > most:
        raise InvalidRequestError(f"at most {most} angles per call.", param="angles")
    return tuple(parse_angle(v) for v in values)


# -- strategy -------------------------------------------------------------------------------


def native_views(task_spec: Any) -> Optional[tuple[AngleView, ...]]:
    """The fixed views of a native multi-view model, from its registry task spec (or None)."""
    views = getattr(task_spec, "views", None)
    if not views:
        return None
    return tuple(_make(float(v["azimuth"]), float(v.get("elevation", 0.0))) for v in views)


def check_native_angles(
    views: Sequence[AngleView], supported: Optional[Sequence[AngleView]], model: str
) -> None:
    if supported is None:
        return
    allowed = {(round(v.azimuth, 3), round(v.elevation, 3)) for v in supported}
    bad = [v.label for v in views if (round(v.azimuth, 3), round(v.elevation, 3)) not in allowed]
    if bad:
        listed = ", ".join(f"{v.label} (azimuth {v.azimuth:g}, elevation {v.elevation:g})" for v in supported)
        raise CapabilityNotSupportedError(
            f"{model} generates fixed views only; {', '.join(bad)} is not one of them. Supported views: {listed}. "
            "Use strategy='orchestrated' (any backend with text_to_image and image_to_image) for free angles.",
            task="multi_view_image",
        )


def choose_strategy(
    requested: Optional[str],
    *,
    backend_tasks: Optional[Sequence[str]],
    registry_strategy: Optional[str],
    has_reference: bool,
) -> str:
    """Pick ``native`` or ``orchestrated``; raise listing what works when neither can run."""
    if requested is not None and requested not in STRATEGIES:
        raise InvalidRequestError(
            f"strategy must be one of {STRATEGIES}, got {requested!r}.", param="strategy"
        )
    tasks = set(backend_tasks) if backend_tasks is not None else None
    can_native = tasks is None or "multi_view_image" in tasks
    needs = {"image_to_image"} if has_reference else {"text_to_image", "image_to_image"}
    can_orchestrate = tasks is None or needs <= tasks
    if tasks is not None and "multi_view_image" not in tasks:
        can_native = False
    wanted = requested or registry_strategy
    if wanted == "native" or (wanted is None and can_native and tasks is not None):
        if can_native:
            return "native"
        if requested == "native" or registry_strategy == "native":
            raise CapabilityNotSupportedError(
                "The native multi-view strategy needs a backend that implements multi_view_image itself; "
                f"this backend supports {sorted(tasks or [])}. Use strategy='orchestrated'"
                + ("" if can_orchestrate else " with a backend that has text_to_image and image_to_image")
                + ".",
                task="multi_view_image",
                supported=sorted(tasks or []),
            )
    if can_orchestrate:
        return "orchestrated"
    raise CapabilityNotSupportedError(
        "generate_angles needs either a backend with native multi_view_image, or one with "
        f"{' and '.join(sorted(needs))} for the orchestrated strategy; this backend supports {sorted(tasks or [])}.",
        task="multi_view_image",
        supported=sorted(tasks or []),
    )


# -- orchestration (sans-I/O) ---------------------------------------------------------------

Step = tuple[str, Any]


def orchestrate(
    request: MultiAngleRequest, views: Sequence[AngleView]
) -> Generator[Step, GeneratedAsset, list[GeneratedAsset]]:
    """Yield ``(backend_method, request)`` steps; receive each result; return one asset per view."""
    common: dict[str, Any] = {
        "negative_prompt": request.negative_prompt,
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "seed": request.seed,
        "extra": request.extra,
        "on_progress": request.on_progress,
        "cancel": request.cancel,
    }
    reference_asset: Optional[GeneratedAsset] = None
    if request.reference_image is None:
        reference_asset = yield (
            "generate_image",
            ImageGenerationRequest(
                prompt=f"{request.prompt}, {NAMED_ANGLES['front'][2]}",
                width=request.width,
                height=request.height,
                **common,
            ),
        )
        reference = reference_asset.data
    else:
        reference = request.reference_image
    strength = request.strength if request.strength is not None else DEFAULT_STRENGTH
    out = []
    for i, view in enumerate(views):
        if request.on_progress is not None:
            request.on_progress(
                ProgressEvent(
                    task="multi_view_image",
                    phase="view",
                    step=i + 1,
                    total_steps=len(views),
                    progress=i / len(views),
                    message=view.label,
                )
            )
        if view.is_front and reference_asset is not None:
            asset = reference_asset
            source = "reference"
        else:
            asset = yield (
                "edit_image",
                ImageEditRequest(
                    prompt=f"{request.prompt}, {view.phrase()}", image=reference, strength=strength, **common
                ),
            )
            source = "image_to_image"
        meta = {**asset.metadata, **view.to_dict(), "strategy": "orchestrated", "view_source": source}
        meta["view_prompt"] = f"{request.prompt}, {view.phrase()}"
        out.append(dataclasses.replace(asset, metadata=meta))
    return out


def contact_sheet(assets: Sequence[GeneratedAsset], labels: Sequence[str]) -> GeneratedAsset:
    """A PNG grid of the views (up to 4 per row), each tile the size of the first view."""
    from PIL import Image

    tiles = [Image.open(io.BytesIO(a.data)).convert("RGB") for a in assets]
    tw, th = tiles[0].size
    cols = min(4, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * tw, rows * th), (255, 255, 255))
    for i, tile in enumerate(tiles):
        if tile.size != (tw, th):
            tile = tile.resize((tw, th))
        sheet.paste(tile, ((i % cols) * tw, (i // cols) * th))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return GeneratedAsset(
        "image",
        buf.getvalue(),
        "image/png",
        {"contact_sheet": True, "angles": list(labels), "grid": [rows, cols]},
    )


class AngleSet(list[Any]):
    """The list of views returned by ``generate_angles``; ``contact_sheet`` holds the grid when asked."""

    contact_sheet: Any = None
    strategy: str = ""
