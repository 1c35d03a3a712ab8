"""The publishing path shared by ``privattrib obfuscate`` and the web page."""

from __future__ import annotations

import numpy as np
import pytest

from bad_files import gradient_rgb
from privattrib.obfuscation import make
from privattrib.obfuscation.publish import Publisher, PublishOptionError, noise_warning, publishing_method


def test_publishing_uses_the_exact_noise_unless_the_spec_or_a_seed_says_otherwise():
    assert publishing_method("dp-pix:b=8", seeded=False).spec.endswith("noise=secure")
    assert publishing_method("dp-blur", seeded=False).params["noise"] == "secure"
    assert publishing_method("dp-pix:b=8", seeded=True).params["noise"] == "fast"
    assert publishing_method("dp-pix:b=8,noise=fast", seeded=False).params["noise"] == "fast"
    assert publishing_method("blur:k=5", seeded=False).spec == "blur:k=5"  # no noise backend
    configured = make("dp-pix:b=4")
    assert publishing_method(configured, seeded=False) is configured  # an object is used as it is
    assert noise_warning(make("dp-pix")) and "Mironov" in noise_warning(make("dp-pix"))
    assert noise_warning(make("dp-pix:noise=secure")) is None and noise_warning(make("pixelate")) is None
    assert "secret" in noise_warning(make("svd-mp"))


@pytest.mark.parametrize("kwargs, option", [
    ({"method": "dp-pix:epsilon=0"}, "method"),
    ({"method": "nope"}, "method"),
    ({"method": "blur", "faces": True, "boxes": ["0,0,4,4"]}, "faces"),
    ({"method": "blur", "if_no_face": "maybe"}, "if_no_face"),
    ({"method": "blur", "faces": True, "margin": 3}, "margin"),
    ({"method": "blur", "seed": -1}, "seed"),
    ({"method": "blur", "seed": 2**64}, "seed"),
    ({"method": "blur", "boxes": ["1,2,3"]}, "box"),
    ({"method": "blur", "faces": True, "detector": "yolo"}, "detector"),
])
def test_options_are_checked_once_and_name_the_option(kwargs, option):
    method = kwargs.pop("method")
    with pytest.raises(PublishOptionError) as err:
        Publisher(method, **kwargs)
    assert err.value.option == option and str(err.value)


def test_protect_whole_image_boxes_and_keys():
    img = gradient_rgb(40, 48, 3)
    seeded = Publisher("dp-pix:b=8,m=1,epsilon=1", seed=5)
    whole = seeded.protect(img, key="a.png")
    assert whole.status == "written" and whole.faces is None and whole.boxes is None
    np.testing.assert_array_equal(whole.pixels, make("dp-pix:b=8,m=1,epsilon=1")(img, seed=5, keys=["a.png"]))
    assert not np.array_equal(whole.pixels, seeded.protect(img, key="b.png").pixels)  # noise keyed by name
    png = whole.png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"tEXt" not in png and b"eXIf" not in png
    boxed = Publisher("pixelate:b=4", boxes=["8,4,16,12", (100, 100, 5, 5)]).protect(img, key="a.png")
    assert boxed.boxes.tolist() == [[8, 4, 16, 12]]  # the box outside this image is left out
    changed = (boxed.pixels != img).any(axis=2)
    assert changed[4:16, 8:24].any() and not changed[16:].any() and not changed[:, 24:].any()
    with pytest.raises(ValueError, match="every box lies outside this 48x40 image"):
        Publisher("pixelate:b=4", boxes=["60,60,4,4"]).protect(img, key="a.png")
    secret = Publisher("dp-pix:b=8")
    assert not secret.seeded and 0 <= secret.seed < 2**63 and secret.method.params["noise"] == "secure"


def test_no_face_policies():
    from privattrib.obfuscation.regions import available_backends

    if not available_backends():
        pytest.skip("no offline face detector installed")
    wall = gradient_rgb(64, 64, 1)
    skipped = Publisher("blur:k=5", faces=True).protect(wall, key="w")
    assert skipped.pixels is None and skipped.faces == 0 and skipped.status == "skipped: no face found"
    with pytest.raises(ValueError, match="nothing to encode"):
        skipped.png()
    whole = Publisher("blur:k=5", faces=True, if_no_face="whole", seed=0).protect(wall, key="w")
    assert whole.status == "written (no face: whole image)" and not np.array_equal(whole.pixels, wall)
    kept = Publisher("blur:k=5", faces=True, if_no_face="keep").protect(wall, key="w")
    assert kept.status == "written (no face: NOT obfuscated)" and np.array_equal(kept.pixels, wall)
