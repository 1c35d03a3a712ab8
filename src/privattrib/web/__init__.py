"""The local web page of ``privattrib serve``: upload a photo, protect it, see what still leaks.

* :mod:`privattrib.web.service`: the logic (protect an upload with the same code as
  ``privattrib obfuscate``, PSNR/SSIM, attribution before and after, re-identification risk).
* :mod:`privattrib.web.app`: ``create_app(service)``, a FastAPI app with thin handlers, and the
  page itself under ``static/``.

Needs the ``web`` extra (``pip install 'privattrib[web]'``: FastAPI, uvicorn, python-multipart).
"""
