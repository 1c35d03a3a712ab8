"""Protect one photo for publishing: the per-image path shared by ``privattrib obfuscate`` and the
web page of ``privattrib serve``.

    from privattrib.obfuscation.publish import Publisher

    publisher = Publisher("dp-pix:b=8,m=1,epsilon=1", faces=True)   # options checked here, once
    result = publisher.protect(load_image("photo.jpg"), key="photo.jpg")
    if result.pixels is not None:
        open("public.png", "wb").write(result.png())                  # pixels only, no metadata

What publishing adds to a plain ``make(spec)(image)``:

* **Exact noise.** DP methods get ``noise=secure`` (OpenDP's discrete Laplace on the integer cell
  sums) unless the spec names ``noise`` or a seed asks for reproducible output: float Laplace noise
  is attackable (Mironov, CCS 2012), and only the fast noise can be regenerated from a seed.
* **A secret seed.** Without a seed, one is drawn from the OS and never shown.
* **Faces or boxes.** Only the faces an offline detector finds, or given boxes, are obfuscated; an
  image where no face is found is not published unless the caller says what to do with it.
* **Pixels only.** :meth:`Protected.png` encodes with :func:`privattrib.data.io.encode_png`: no
  EXIF, GPS, XMP, ICC, text chunk or alpha leaves.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from privattrib.obfuscation.base import Obfuscation, make, parse_spec

__all__ = ["NO_FACE_POLICIES", "PublishOptionError", "Protected", "Publisher", "publishing_method", "noise_warning"]

#: What to do with an image where the face detector finds nothing: write nothing, obfuscate the
#: whole image, or publish it unobfuscated.
NO_FACE_POLICIES = ("skip", "whole", "keep")


class PublishOptionError(ValueError):
    """An option of :class:`Publisher` that is not allowed.

    Attributes:
        option: which one: ``"method"``, ``"faces"``, ``"box"``, ``"if_no_face"``, ``"margin"``,
            ``"seed"`` or ``"detector"`` (callers map it to their own flag or form field).
    """

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


def publishing_method(method: str | Obfuscation, *, seeded: bool) -> Obfuscation:
    """The configured method for publishing: ``noise=secure`` for a method with a noise backend,
    unless the spec names ``noise`` or the caller gives a seed (``seeded``). A configured method
    object is used as it is.

    Raises:
        ValueError: an unknown method or a parameter that is not allowed (the message says which).
    """
    if isinstance(method, Obfuscation):
        return method
    name, given = parse_spec(method)
    ob = make(method)
    if not seeded and "noise" not in given and "noise" in {p.name for p in ob.params_spec}:
        ob = make(name, **{**given, "noise": "secure"})
    return ob


def noise_warning(ob: Obfuscation) -> str | None:
    """A sentence for the user when the noise of ``ob`` is not the exact kind (None when it is, or
    when ``ob`` draws no noise)."""
    if ob.params.get("noise") == "fast":
        return ("noise=fast draws float Laplace noise, which an attacker can exploit (Mironov 2012); "
                "for photos you publish leave out the seed and noise= (then noise=secure)")
    if getattr(ob, "randomized", False) and "noise" not in ob.params:
        return (f"{ob.name} has no exact noise backend: its float noise comes from a seeded "
                "non-cryptographic generator; keep the seed secret")
    return None


@dataclass
class Protected:
    """The outcome for one image.

    Attributes:
        pixels: the protected uint8 H x W x C pixels, or None when nothing may be published (no
            face found under the ``skip`` policy).
        status: ``"written"``, ``"written (no face: whole image)"``, ``"written (no face: NOT
            obfuscated)"`` or ``"skipped: no face found"``.
        faces: how many faces the detector found (None when faces were not searched).
        boxes: the regions that were obfuscated, int64 K x 4 (x, y, w, h) after clipping and
            merging, or None when the whole image was.
    """

    pixels: np.ndarray | None
    status: str
    faces: int | None = None
    boxes: np.ndarray | None = None

    def png(self) -> bytes:
        """The pixels as a PNG with no ancillary chunks (see :func:`privattrib.data.io.encode_png`)."""
        from privattrib.data.io import encode_png

        if self.pixels is None:
            raise ValueError(f"nothing to encode: {self.status}")
        return encode_png(self.pixels)


class Publisher:
    """Options of one publishing run, checked once; :meth:`protect` applies them to an image.

    Args:
        method: a spec string (``"dp-pix:b=8,m=1,epsilon=1"``), or a configured method (used as
            it is: no switch to the exact noise).
        seed: a noise seed for reproducible experiments (then DP methods keep ``noise=fast``),
            in [0, 2**64); None draws a secret one from the OS.
        faces: obfuscate only the faces an offline detector finds.
        boxes: obfuscate only these boxes, ``"X,Y,W,H"`` strings or (x, y, w, h) tuples.
        if_no_face: with ``faces``, an image without a detected face: one of :data:`NO_FACE_POLICIES`.
        detector: ``"auto"``, ``"haar"`` or ``"dlib"`` (see :mod:`privattrib.obfuscation.regions`).
        margin: grow each face box by this fraction of its side on every edge, in [0, 2].

    Raises:
        PublishOptionError: an option that is not allowed; ``option`` names it.
    """

    def __init__(
        self,
        method: str | Obfuscation,
        *,
        seed: int | None = None,
        faces: bool = False,
        boxes: Sequence[str | Sequence[int]] | None = None,
        if_no_face: str = "skip",
        detector: str = "auto",
        margin: float = 0.2,
    ) -> None:
        from privattrib.obfuscation.regions import parse_box, resolve_backend

        try:
            self.method = publishing_method(method, seeded=seed is not None)
        except ValueError as exc:
            raise PublishOptionError("method", str(exc)) from None
        if faces and boxes:
            raise PublishOptionError("faces", "use either faces or boxes, not both")
        if if_no_face not in NO_FACE_POLICIES:
            raise PublishOptionError("if_no_face", f"use one of {NO_FACE_POLICIES}, got {if_no_face!r}")
        if faces and not 0 <= margin <= 2:
            raise PublishOptionError("margin", f"the margin is a fraction of the face box in [0, 2], got {margin}")
        if seed is not None and (isinstance(seed, bool) or not 0 <= seed < 2**64):
            raise PublishOptionError("seed", "the seed must be an integer in [0, 2**64)")
        try:
            self.boxes = [parse_box(b) if isinstance(b, str) else parse_box(",".join(map(str, b)))
                          for b in boxes] if boxes else None
        except ValueError as exc:
            raise PublishOptionError("box", str(exc)) from None
        try:
            self.backend = resolve_backend(detector) if faces else None
        except (ValueError, RuntimeError) as exc:
            raise PublishOptionError("detector", str(exc)) from None
        self.seeded = seed is not None
        self.seed = seed if seed is not None else secrets.randbits(63)  # secret: never printed
        self.faces = faces
        self.if_no_face = if_no_face
        self.margin = margin

    def protect(self, image: np.ndarray, key: str | int) -> Protected:
        """Protect one image.

        Args:
            image: uint8 H x W x C pixels (as :func:`privattrib.data.load_image` returns them).
            key: the image's noise key (its relative path in a batch of files); the noise is a
                function of (seed, method, key).

        Returns:
            :class:`Protected`; its ``pixels`` are None when the image must not be published.

        Raises:
            ValueError: the method cannot take this image (e.g. svd-mp's k above its smaller side),
                or every box lies outside it.
        """
        from privattrib.obfuscation.regions import clip_and_merge, detect_faces, obfuscate_regions

        ob = self.method
        h, w = image.shape[:2]
        if self.faces:
            found = detect_faces(image, backend=self.backend, margin=self.margin)
            if len(found):
                return Protected(obfuscate_regions(ob, image, found, seed=self.seed, key=key), "written",
                                 faces=len(found), boxes=clip_and_merge(found, h, w))
            if self.if_no_face == "whole":
                return Protected(ob(image, seed=self.seed, keys=[key]), "written (no face: whole image)", faces=0)
            if self.if_no_face == "keep":
                return Protected(image, "written (no face: NOT obfuscated)", faces=0)
            return Protected(None, "skipped: no face found", faces=0)
        if self.boxes:
            inside = [b for b in self.boxes if b[0] < w and b[1] < h]
            if not inside:
                raise ValueError(f"every box lies outside this {w}x{h} image")
            return Protected(obfuscate_regions(ob, image, inside, seed=self.seed, key=key), "written",
                             boxes=clip_and_merge(inside, h, w))
        return Protected(ob(image, seed=self.seed, keys=[key]), "written")
