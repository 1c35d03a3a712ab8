"""Attribution: which source (real camera or which GAN) produced an image, and does obfuscation
change the answer? (DESIGN.md section 3.)

- :mod:`privattrib.attribution.models`: the classifier registry (``yu2019``, ``resnet18``, ``dct``).
- :mod:`privattrib.attribution.scenarios`: one grid cell (method, scenario, seed) -> results row.
- :mod:`privattrib.attribution.inference`: apply a trained classifier to new images
  (``load_attributor``, ``Attributor.predict``), the API of ``privattrib attribute`` and the web page.
- :mod:`privattrib.attribution.attributor`: train, calibrate and evaluate one classifier for that
  (``privattrib train-attributor``); :mod:`privattrib.attribution.calibration`: temperature scaling, ECE.
- The training loop itself is :mod:`privattrib.training` (shared with re-identification).

Names are imported lazily so that ``import privattrib.attribution`` stays cheap.
"""

from __future__ import annotations

from privattrib.common import lazy_exports

_EXPORTS = {
    "make_classifier": "privattrib.attribution.models",
    "register_classifier": "privattrib.attribution.models",
    "available_classifiers": "privattrib.attribution.models",
    "save_classifier": "privattrib.attribution.models",
    "load_classifier": "privattrib.attribution.models",
    "run_attribution_cell": "privattrib.attribution.scenarios",
    "SCENARIOS": "privattrib.attribution.scenarios",
    "Attribution": "privattrib.attribution.inference",
    "Attributor": "privattrib.attribution.inference",
    "AttributorError": "privattrib.attribution.inference",
    "load_attributor": "privattrib.attribution.inference",
    "train_attributor": "privattrib.attribution.attributor",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
