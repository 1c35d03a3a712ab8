"""What the web page does with one upload, as a library: protect it, measure it, attribute it.

The handlers of :mod:`privattrib.web.app` only read the request and call
:meth:`ProtectService.protect`; everything else is here, so it can be used and tested without a
server::

    service = build_service(model="demo", reid_gallery="people/")
    result = service.protect(open("face.jpg", "rb").read(), "face.jpg",
                             ProtectRequest(method="dp-pix", params={"epsilon": "0.5"}))
    result.png               # the protected photo: pixels only (the same path as `privattrib obfuscate`)
    result.report            # JSON-ready: metrics, attribution before/after, re-identification risk

The protected pixels come from :class:`privattrib.obfuscation.publish.Publisher`, the per-image
code of ``privattrib obfuscate``: exact noise for DP methods unless a seed is given, a secret seed,
faces found offline, a PNG with no metadata. Uploads are decoded from memory by the data layer's
safe loader (:func:`privattrib.data.io.open_image_bytes`: EXIF orientation, odd modes, the
decompression-bomb guard); nothing is written to disk unless ``keep_uploads`` names a folder.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from privattrib.common import json_ready

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_WAITING",
    "UploadError",
    "ProtectRequest",
    "ProtectResult",
    "ProtectService",
    "build_service",
    "format_bytes",
    "methods_form",
    "request_from_form",
]

#: Largest upload accepted (bytes): a 24-megapixel JPEG is about 10 MB, a PNG of it up to 70.
DEFAULT_MAX_UPLOAD_BYTES = 30 * 2**20
#: Largest image accepted (pixels): a 6000 x 4000 camera photo. Pillow's own bomb threshold is
#: 89 megapixels; the page's limit is lower because every request holds several float copies.
DEFAULT_MAX_PIXELS = 24_000_000
#: Longest side of the original's preview on the page (the protected PNG is sent at full size).
PREVIEW_SIDE = 1600
#: Photos allowed to wait behind the one being protected; more are refused (503) rather than held
#: in memory, each with its upload, until the server runs out of it.
DEFAULT_MAX_WAITING = 4
#: The choice of ``if_no_face`` the page offers (``keep`` would publish the photo unprotected).
PAGE_NO_FACE_POLICIES = ("skip", "whole")


class UploadError(Exception):
    """A request the page cannot serve, with the status and a message for the person.

    Attributes:
        status: HTTP status (400, 413, 415 or 422).
        message: a sentence that says what is wrong and what is allowed.
        field: the form field at fault (``"file"``, ``"method"``, ``"param.epsilon"``...), or None.
    """

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


@dataclass
class ProtectRequest:
    """What the person chose on the page.

    Attributes:
        method: a method name (``"dp-pix"``) or a whole spec (``"dp-pix:b=16,epsilon=0.5"``).
        params: parameter name -> its text (empty text = the default); only with a bare name.
        faces: obfuscate only the faces the offline detector finds.
        if_no_face: with ``faces``: ``"skip"`` (publish nothing) or ``"whole"``.
        margin: grow each face box by this fraction of its side.
        seed: a noise seed for reproducible output (then DP noise is the fast kind); None: secret.
    """

    method: str
    params: dict[str, str] = field(default_factory=dict)
    faces: bool = False
    if_no_face: str = "skip"
    margin: float = 0.2
    seed: int | None = None


@dataclass
class ProtectResult:
    """The protected photo and everything the page shows about it.

    Attributes:
        png: the protected pixels as a PNG with no metadata (what the page offers for download).
        preview_png: the original, oriented, at most :data:`PREVIEW_SIDE` pixels on its longest side.
        download_name: a safe file name for the download (``<stem>-protected.png``).
        report: JSON-ready description (see :meth:`ProtectService.protect`).
    """

    png: bytes
    preview_png: bytes
    download_name: str
    report: dict[str, Any]


# ------------------------------------------------------------------------------------ the form

#: The page's ceilings on parameters whose cost grows with their value (a blur kernel's side, the
#: singular values svd-mp keeps): one upload must not hold the server for hours. The command line
#: has no such ceiling.
PAGE_PARAMETER_LIMITS = {("blur", "k"): 1001, ("dp-blur", "k"): 1001, ("svd-mp", "k"): 64}

#: Exact (OpenDP) noise draws one photo may ask for: DP-Pix and DP-Blur draw one per cell and
#: channel, about 23 us each here (a 12-megapixel photo at b = 4: 2.25 million draws, 52 s).
PAGE_MAX_EXACT_NOISE_DRAWS = 3_000_000

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"", "0", "false", "off", "no"}


def methods_form() -> list[dict[str, Any]]:
    """The registry as the page's form needs it: every method of ``privattrib methods --json``, each
    parameter with ``form_default``, the value the page preselects (for the noise backend:
    ``secure``, the publishing default, see :mod:`privattrib.obfuscation.publish`)."""
    from privattrib.obfuscation import describe_all, get_method_class

    rows = [row for row in describe_all() if not get_method_class(row["name"]).reads_local_files]
    for row in rows:
        for p in row["parameters"]:
            p["form_default"] = "secure" if p["name"] == "noise" and "secure" in (p["choices"] or ()) else p["default"]
            p["form_max"] = PAGE_PARAMETER_LIMITS.get((row["name"], p["name"]))
    return rows


def request_from_form(fields: Mapping[str, str]) -> ProtectRequest:
    """A :class:`ProtectRequest` from the page's form fields (all text).

    Fields: ``method`` (required), ``param.<name>`` per parameter, ``faces`` (on/true/1),
    ``if_no_face``, ``margin``, ``seed``.

    Raises:
        UploadError: 422 naming the field that is missing or malformed.
    """
    method = (fields.get("method") or "").strip()
    if not method:
        raise UploadError(422, "choose an obfuscation method (the form field 'method' is missing)", "method")
    params = {k[len("param."):]: v for k, v in fields.items() if k.startswith("param.")}
    faces_text = (fields.get("faces") or "").strip().lower()
    if faces_text not in _TRUE | _FALSE:
        raise UploadError(422, f"faces must be true or false, got {faces_text!r}", "faces")
    if_no_face = (fields.get("if_no_face") or "skip").strip().lower()
    if if_no_face not in PAGE_NO_FACE_POLICIES:
        raise UploadError(422, f"if_no_face must be one of {', '.join(PAGE_NO_FACE_POLICIES)}, got {if_no_face!r}",
                          "if_no_face")
    margin_text = (fields.get("margin") or "").strip()
    try:
        margin = float(margin_text) if margin_text else 0.2
    except ValueError:
        raise UploadError(422, f"the face margin must be a number in [0, 2], got {margin_text!r}", "margin") from None
    seed_text = (fields.get("seed") or "").strip()
    seed = None
    if seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            raise UploadError(422, f"the seed must be a whole number in [0, 2**64), got {seed_text!r}", "seed") from None
    return ProtectRequest(method=method, params=params, faces=faces_text in _TRUE, if_no_face=if_no_face,
                          margin=margin, seed=seed)


def resolve_spec(method: str, params: Mapping[str, str]) -> str:
    """The spec string of a method name and its parameter texts, each checked against the registry.

    Raises:
        UploadError: 422 naming the parameter (``param.<name>``) or the method that is not allowed.
    """
    from privattrib.obfuscation import format_spec, get_method_class, make

    method = method.strip()
    try:
        cls = get_method_class(method.split(":", 1)[0].strip())
    except ValueError as exc:
        raise UploadError(422, str(exc), "method") from None
    if cls.reads_local_files:  # checked before any parameter, so no path is ever looked at
        raise UploadError(422, f"{cls.name} is not offered on the page: its parameters name files on the "
                          "server (use `privattrib obfuscate` on your own machine)", "method")
    if ":" in method:
        if params:
            raise UploadError(422, "give the parameters either in the spec or as separate fields, not both", "method")
        try:
            spec = _checked_spec(method)
        except ValueError as exc:
            raise UploadError(422, str(exc), "method") from None
        _check_page_limits(make(spec))
        return spec
    by_name = {p.name: p for p in cls.params_spec}
    values: dict[str, Any] = {}
    for key, text in params.items():
        if key not in by_name:
            allowed = ", ".join(by_name) or "none"
            raise UploadError(422, f"{cls.name} has no parameter {key!r}; its parameters: {allowed}", f"param.{key}")
        if not text.strip():
            continue  # the default
        try:
            values[key] = by_name[key].coerce(cls.name, text)
        except ValueError as exc:
            raise UploadError(422, str(exc), f"param.{key}") from None
    try:
        chosen = make(cls.name, **values)  # checks across parameters
    except ValueError as exc:
        raise UploadError(422, str(exc), "method") from None
    _check_page_limits(chosen)
    return format_spec(cls.name, values)


def _check_exact_noise_draws(method: Any, shape: tuple[int, ...]) -> None:
    """Refuse (422) a DP-Pix/DP-Blur request whose exact noise would hold the server for minutes."""
    b = method.params.get("b")
    if method.params.get("noise") != "secure" or b is None:
        return
    height, width = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    draws = -(-height // b) * -(-width // b) * channels
    if draws > PAGE_MAX_EXACT_NOISE_DRAWS:
        raise UploadError(422, f"{method.name} with b={b} on a {width}x{height} photo needs {draws:,} exact noise "
                               f"draws, over the page's limit of {PAGE_MAX_EXACT_NOISE_DRAWS:,} (minutes of work): "
                               "choose a larger b, a smaller photo, or 'faces only'", "param.b")


def _check_page_limits(method: Any) -> None:
    for (name, key), ceiling in PAGE_PARAMETER_LIMITS.items():
        value = method.params.get(key) if method.name == name else None
        if value is not None and value > ceiling:
            raise UploadError(422, f"{name}: {key}={value} is over the page's limit of {ceiling} (its time grows "
                                   f"with {key}); `privattrib obfuscate` takes larger values", f"param.{key}")


def _checked_spec(spec: str) -> str:
    """A whole spec string, checked; only the parameters it names are kept (the publishing rule
    needs to know whether ``noise`` was named)."""
    from privattrib.obfuscation import format_spec, make, parse_spec

    name, given = parse_spec(spec)
    make(spec)
    return format_spec(name, given)


# ------------------------------------------------------------------------------------ the service

_OPTION_FIELDS = {"method": "method", "faces": "faces", "box": "faces", "if_no_face": "if_no_face",
                  "margin": "margin", "seed": "seed", "detector": "faces"}


class ProtectService:
    """Protects uploads, measures them, and asks the configured models what still leaks.

    Args:
        attributor: a :class:`privattrib.attribution.inference.Attributor`, or None (no attribution).
        gallery: a :class:`privattrib.attacks.gallery.IdentityGallery`, or None (no re-identification).
        max_upload_bytes: larger uploads are refused (413).
        max_pixels: larger images are refused (413), whatever their file size (decompression bombs).
        keep_uploads: a folder where each upload, its protected PNG and the report are kept; None
            keeps nothing.
        max_waiting: photos that may wait while one is protected (one at a time); more are
            refused with 503.
    """

    def __init__(
        self,
        *,
        attributor: Any = None,
        gallery: Any = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        keep_uploads: str | Path | None = None,
        max_waiting: int = DEFAULT_MAX_WAITING,
    ) -> None:
        if max_upload_bytes < 1 or max_pixels < 1:
            raise ValueError(f"the limits must be >= 1, got {max_upload_bytes} bytes and {max_pixels} pixels")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.attributor = attributor
        self.gallery = gallery
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pixels = int(max_pixels)
        self.keep_uploads = Path(keep_uploads) if keep_uploads is not None else None
        self._lock = threading.Lock()  # one photo at a time: each holds several full-size copies
        self.max_waiting = int(max_waiting)
        self._admitted = threading.BoundedSemaphore(self.max_waiting + 1)  # the one at work and those waiting

    def warm_up(self) -> None:
        """Import and run once what the first request would otherwise wait for (torch, the metrics,
        the face detector): several seconds that should not fall on the first photo."""
        from privattrib.obfuscation.regions import available_backends

        tiny = np.zeros((16, 16, 3), np.uint8)
        _utility(tiny, tiny)
        available_backends()

    # -- what the page is told once -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Everything the page builds itself from: the methods, the limits, the models' scope."""
        from privattrib import __version__
        from privattrib.obfuscation.regions import available_backends

        return {
            "version": __version__,
            "methods": methods_form(),
            "limits": {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels},
            "face_detectors": available_backends(),
            "no_face_policies": list(PAGE_NO_FACE_POLICIES),
            "attribution": self._attribution_info(),
            "reid": self._reid_info(),
            "keeps_uploads": self.keep_uploads is not None,
        }

    def _attribution_info(self) -> dict[str, Any] | None:
        if self.attributor is None:
            return None
        d = self.attributor.describe()
        keep = ("source", "classes", "real_class", "image_size", "in_channels", "arch", "temperature", "calibrated",
                "ece_before", "ece_after", "held_out_accuracy", "chance", "n_test", "held_out_note", "scope", "notes")
        # the page names the model's file, never where it lies on the server
        info = {k: d.get(k) for k in keep}
        info["source"] = _file_name(d.get("source"))
        for key in ("scope", "held_out_note"):
            info[key] = _without_directories(info[key])
        info["notes"] = [_without_directories(n) for n in info["notes"] or ()]
        return info

    def _reid_info(self) -> dict[str, Any] | None:
        if self.gallery is None:
            return None
        d = self.gallery.describe()
        return {**d, "root": _file_name(d.get("root"))}

    # -- one upload -----------------------------------------------------------------------------

    def protect(self, data: bytes, filename: str, request: ProtectRequest, *, analyse: bool = True) -> ProtectResult:
        """Protect one uploaded photo.

        Args:
            data: the uploaded file's bytes.
            filename: its name as the browser sent it (only used in messages and the download name).
            request: the method and options chosen.
            analyse: also compute PSNR/SSIM, the attribution and the re-identification risk
                (False: only the protected PNG, as ``POST /api/protect.png`` returns it).

        Returns:
            :class:`ProtectResult`. ``report`` holds ``input`` (name, format, mode, size, EXIF
            orientation), ``method`` (spec, privacy, epsilon, noise backend, warnings), ``faces``,
            ``metrics`` (MSE, PSNR, SSIM), ``attribution`` (None without a model) and ``reid``
            (None without a gallery), ``timing_s``.

        Raises:
            UploadError: a file that is not a usable image (400), too large (413), an option that
                is not allowed (422), no face found under the ``skip`` policy (422), more than
                ``max_waiting`` photos already waiting (503).
        """
        name = _display_name(filename)
        if not data:
            raise UploadError(400, f"{name}: the file is empty (0 bytes)", "file")
        if len(data) > self.max_upload_bytes:
            raise UploadError(413, f"{name}: the file is {format_bytes(len(data))}, over the limit of "
                                   f"{format_bytes(self.max_upload_bytes)}", "file")
        publisher = _publisher(request)
        if not self._admitted.acquire(blocking=False):
            raise UploadError(503, f"the server is busy: {self.max_waiting + 1} photos are already being protected "
                                   "or waiting; try again in a moment")  # nothing wrong with the photo
        try:
            with self._lock:
                return self._protect_now(data, filename, name, publisher, request, analyse)
        finally:
            self._admitted.release()

    def _protect_now(self, data: bytes, filename: str, name: str, publisher, request: ProtectRequest,
                     analyse: bool) -> ProtectResult:
        """:meth:`protect`'s work, under the one-photo-at-a-time lock."""
        timing = _Stopwatch()
        with timing("decode"):
            original, source = self._decode(data, name)
        if not request.faces:  # faces only: the draws cover the face boxes, far fewer
            _check_exact_noise_draws(publisher.method, original.shape)
        with timing("protect"):
            result = _protect_pixels(publisher, original, name)
            png = result.png()
        report = _describe(source, publisher, result, request.faces)
        if analyse:
            with timing("metrics"):
                report["metrics"] = _utility(original, result.pixels)
            if self.attributor is not None:
                with timing("attribution"):
                    report["attribution"] = self._attribute(data, result.pixels, name)
            if self.gallery is not None:
                with timing("reid"):
                    report["reid"] = self._reid(original, result.pixels, result.boxes)
        preview = _preview_png(original) if analyse else b""
        report["timing_s"] = timing.finish()
        report = json_ready(report)
        if self.keep_uploads is not None:
            report["kept_in"] = str(self._keep(data, filename, png, report))
        return ProtectResult(png=png, preview_png=preview, download_name=f"{_safe_stem(filename)}-protected.png",
                             report=report)

    def _decode(self, data: bytes, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        """(the upload's oriented uint8 H x W x C pixels, what the page says about the file)."""
        from privattrib.data.io import BadImageError, image_pixels, open_image_bytes

        try:
            im = open_image_bytes(data, name, max_pixels=self.max_pixels)
            source = {"name": name, "format": im.format, "mode": im.mode, "bytes": len(data),
                      "exif_orientation": _exif_orientation(im)}
            pixels = image_pixels(im, name)
        except BadImageError as exc:
            status = 413 if exc.too_large else 400
            raise UploadError(status, f"{name}: {exc.reason}", "file") from None
        height, width, channels = pixels.shape
        return pixels, {**source, "height": height, "width": width, "channels": channels}

    def _attribute(self, upload: bytes, protected: np.ndarray, name: str) -> dict[str, Any]:
        # the upload as a file, decoded like the model's training files (and like `privattrib attribute`)
        before = self.attributor.predict_encoded(upload, name, max_pixels=self.max_pixels)  # decoded before
        after, = self.attributor.predict([protected], keys=[f"{name} (protected)"])
        return {"before": before.to_dict(), "after": after.to_dict(), "model": self._attribution_info()}

    def _reid(self, original: np.ndarray, protected: np.ndarray, boxes: np.ndarray | None) -> dict[str, Any]:
        region = "the whole photo (centre-cropped to a square)"
        if boxes is not None and len(boxes):
            x, y, w, h = (int(v) for v in max(boxes, key=lambda b: int(b[2]) * int(b[3])))
            original, protected = original[y:y + h, x:x + w], protected[y:y + h, x:x + w]
            region = f"the largest protected face box ({w}x{h} at {x},{y})"
        return {**self.gallery.risk(original, protected), "region": region}

    def _keep(self, data: bytes, filename: str, png: bytes, report: dict) -> Path:
        from privattrib.common import atomic_write_bytes, atomic_write_text

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        folder = self.keep_uploads / f"{stamp}-{_safe_stem(filename)}"
        suffix = Path(filename).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"
        atomic_write_bytes(folder / f"original{suffix}", data)
        atomic_write_bytes(folder / "protected.png", png)
        atomic_write_text(folder / "report.json", json.dumps(report, indent=2, default=str))
        return folder


def _publisher(request: ProtectRequest):
    """The publishing options of a request, checked (the code path of ``privattrib obfuscate``)."""
    from privattrib.obfuscation.publish import Publisher, PublishOptionError

    spec = resolve_spec(request.method, request.params)
    try:
        return Publisher(spec, seed=request.seed, faces=request.faces, if_no_face=request.if_no_face,
                         margin=request.margin)
    except PublishOptionError as exc:
        raise UploadError(422, str(exc), _OPTION_FIELDS.get(exc.option)) from None


def _protect_pixels(publisher, original: np.ndarray, name: str):
    """:meth:`Publisher.protect` with its refusals as messages for the page."""
    try:
        result = publisher.protect(original, key=name)
    except ValueError as exc:  # the method cannot take this image (svd-mp's k above its side...)
        raise UploadError(422, f"{name}: {exc}", "method") from None
    if result.pixels is None:
        raise UploadError(422, f"{name}: no face found (the offline detector can miss faces: profiles, small "
                               "or covered ones); nothing was protected. Choose 'obfuscate the whole photo' "
                               "or turn off 'faces only'.", "faces")
    return result


def _describe(source: dict, publisher, result, faces: bool) -> dict[str, Any]:
    """The report's first part: the input, the method and its privacy, the faces found."""
    from privattrib.obfuscation.publish import noise_warning

    ob = publisher.method
    return {
        "input": source,
        "method": {**ob.describe(), "warning": noise_warning(ob), "seeded": publisher.seeded},
        "faces": None if not faces else {
            "detector": publisher.backend, "found": result.faces, "status": result.status,
            "boxes": result.boxes.tolist() if result.boxes is not None else None, "margin": publisher.margin},
        "status": result.status,
        "metrics": None, "attribution": None, "reid": None,
    }


class _Stopwatch:
    """``with watch("step"): ...`` records each step's seconds; :meth:`finish` adds the total."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = time.perf_counter() - t

    def finish(self) -> dict[str, float]:
        return {**self.seconds, "total": time.perf_counter() - self.start}


def build_service(
    *,
    model: str | Path | None = None,
    reid_gallery: str | Path | None = None,
    reid_size: int | None = None,
    reid_epochs: int | None = None,
    device: str = "auto",
    progress: bool = True,
    **limits: Any,
) -> ProtectService:
    """A :class:`ProtectService` with its models loaded (the demo model and a gallery's identity
    classifier are trained on first use and cached; that can take minutes on a CPU).

    Args:
        model: an attribution model for :func:`privattrib.attribution.inference.load_attributor`
            (a checkpoint, an experiment OUTDIR or ``"demo"``), or None.
        reid_gallery: an identity folder set (one sub-folder per person), or None.
        reid_size, reid_epochs: the gallery classifier's input side and training epochs.
        device: where the models run.
        progress: progress bars while models train.
        **limits: ``max_upload_bytes``, ``max_pixels``, ``keep_uploads``, ``max_waiting`` for
            :class:`ProtectService`.

    Raises:
        ValueError: a model or gallery that cannot be used (the message names it).
    """
    attributor = gallery = None
    if model is not None:
        from privattrib.attribution.inference import load_attributor

        attributor = load_attributor(model, device=device, progress=progress)
    if reid_gallery is not None:
        from privattrib.attacks.gallery import DEFAULT_GALLERY_SIZE, IdentityGallery

        gallery = IdentityGallery.load(reid_gallery, size=reid_size or DEFAULT_GALLERY_SIZE, epochs=reid_epochs,
                                       device=device, progress=progress)
    return ProtectService(attributor=attributor, gallery=gallery, **limits)


# ------------------------------------------------------------------------------------ helpers

def _utility(original: np.ndarray, protected: np.ndarray) -> dict[str, float | None]:
    from privattrib.metrics import mean_utility

    u = mean_utility(original[None], protected[None])  # SSIM only where its 11-pixel window fits
    return {"mse": u["mse"],
            "psnr": u["psnr"] if u["mse"] > 0 else None,  # identical images: JSON has no infinity
            "identical": u["mse"] == 0,
            "ssim": u.get("ssim")}


def _exif_orientation(im) -> int | None:
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop the upload; the pixels decide
        return None
    return int(value) if isinstance(value, int) and value != 1 else None


def _preview_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    from privattrib.data.io import encode_png

    h, w = pixels.shape[:2]
    if max(h, w) <= PREVIEW_SIDE:
        return encode_png(pixels)
    scale = PREVIEW_SIDE / max(h, w)
    im = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _file_name(path: Any) -> str | None:
    return None if path is None else Path(str(path)).name or str(path)


#: The directories of a path in a sentence: absolute (``/srv/x/``), home (``~/x/``) or relative
#: to here (``../x/``, ``./x/``); not a URL's (``https://host/a/``), nor "and/or" or "1/2".
_DIRECTORIES = re.compile(r"(?<![\w.~:/])(?:~|\.{1,2})?/(?:[^\s/'\"]+/)+(?=[^\s/'\"])")


def _without_directories(text: str | None) -> str | None:
    """A sentence about a model with every absolute, home or dot-relative path cut to its last
    part: the page names files, not where they lie on the server. (Bare relative paths such as
    ``runs/x`` cannot be told from prose and stay.)"""
    return None if text is None else _DIRECTORIES.sub("", text)


def _display_name(filename: str) -> str:
    name = Path(str(filename or "upload").replace("\\", "/")).name or "upload"
    return "".join(ch if ch.isprintable() else "?" for ch in name)[:120]


def _safe_stem(filename: str) -> str:
    stem = Path(_display_name(filename)).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "photo"
    return stem[:60]


def format_bytes(n: int) -> str:
    """``"850 KB"``, ``"12.4 MB"``: sizes in the page's messages."""
    return f"{max(1, round(n / 1024))} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"
