"""The web page of ``privattrib serve``: a FastAPI app whose handlers only read the request and
call :class:`privattrib.web.service.ProtectService`.

Routes:

* ``GET /``: the page (plain HTML, CSS and JavaScript under ``static/``, no build step).
* ``GET /api/info``: the methods (from the registry), the limits, the models' scope.
* ``POST /api/protect``: multipart form (``file``, ``method``, ``param.<name>``, ``faces``,
  ``if_no_face``, ``margin``, ``seed``) -> JSON report with the original's preview and the
  protected PNG as data URLs.
* ``POST /api/protect.png``: the same form -> the protected PNG itself (for scripts).

Every refusal is a 4xx JSON ``{"error": sentence, "field": name}``; nothing answers with a
traceback. Uploads are parsed in memory and never spooled to disk. POSTs from another origin are
refused (a web page you visit cannot make your browser submit to this server), and a Host header
that is not the bound address is refused (DNS rebinding).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import AsyncIterator, Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.staticfiles import StaticFiles

from privattrib.web.service import ProtectService, UploadError, format_bytes, request_from_form

__all__ = ["create_app", "LOOPBACK_HOSTS"]

log = logging.getLogger("privattrib.web")

STATIC = Path(__file__).with_name("static")
#: Host names that reach this machine only.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Bytes allowed beyond the upload limit for the form's other fields and the multipart framing.
_FORM_SLACK = 256 * 1024
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                                "style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
}


def create_app(service: ProtectService | None = None, *, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The page's app.

    Args:
        service: what the handlers call (default: a :class:`ProtectService` without models).
        allowed_hosts: host names the ``Host`` header may carry (e.g. :data:`LOOPBACK_HOSTS`);
            None accepts any (``privattrib serve`` passes the loopback names when bound to them).

    Returns:
        A FastAPI app for uvicorn or FastAPI's TestClient.
    """
    service = service if service is not None else ProtectService()
    hosts = {h.strip("[]").lower() for h in allowed_hosts} if allowed_hosts is not None else None
    app = FastAPI(title="privattrib", summary="Protect a photo and see what still leaks",
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.service = service
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = urlsplit("//" + request.headers.get("host", "")).hostname
        if hosts is not None and host not in hosts:
            return _error(400, f"unexpected Host header {request.headers.get('host')!r}: this page answers only "
                               f"to {', '.join(sorted(hosts))}")
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD") and origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return _error(403, f"cross-origin request from {origin} refused: open the page itself to upload")
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"  # photos never land in the browser's disk cache
        return response

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        response = _error(exc.status, exc.message, exc.field)
        if exc.status == 503:
            response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"the server failed on this request ({type(exc).__name__}); "
                           "the details are in the server's log")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True}

    @app.get("/api/info")
    def info() -> dict:
        """The methods and their parameters, the limits, and what the models know."""
        return service.info()

    @app.post("/api/protect")
    async def protect(request: Request) -> JSONResponse:
        """Protect the uploaded photo; the JSON report carries both images as data URLs."""
        fields, filename, data = await _read_upload(request, service.max_upload_bytes)
        result = await run_in_threadpool(service.protect, data, filename, request_from_form(fields))
        return JSONResponse({
            **result.report,
            "download_name": result.download_name,
            "images": {"original": _data_url(result.preview_png), "protected": _data_url(result.png)},
        })

    @app.post("/api/protect.png")
    async def protect_png(request: Request) -> Response:
        """Protect the uploaded photo; the answer is the protected PNG (pixels only)."""
        fields, filename, data = await _read_upload(request, service.max_upload_bytes)
        result = await run_in_threadpool(service.protect, data, filename, request_from_form(fields), analyse=False)
        return Response(result.png, media_type="image/png", headers={
            "Content-Disposition": f'attachment; filename="{result.download_name}"',
            "X-Privattrib-Method": result.report["method"]["spec"]})

    return app


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


async def _read_upload(request: Request, limit: int) -> tuple[dict[str, str], str, bytes]:
    """(text fields, the file's name, the file's bytes) of a multipart upload, read into memory
    with the size limit enforced while the bytes arrive.

    Raises:
        UploadError: not multipart (415), over the limit (413), malformed (400), no ``file`` (422).
    """
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UploadError(415, "send the photo as multipart/form-data with a 'file' field (as the page's form does)",
                          "file")
    too_big = UploadError(413, f"the upload is over the limit of {format_bytes(limit)}", "file")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _FORM_SLACK:
        raise UploadError(413, f"the upload is {format_bytes(int(declared))}, over the limit of "
                               f"{format_bytes(limit)}", "file")

    async def limited() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit + _FORM_SLACK:
                raise too_big
            yield chunk

    parser = MultiPartParser(request.headers, limited(), max_files=1, max_fields=64, max_part_size=64 * 1024)
    parser.spool_max_size = limit + _FORM_SLACK  # kept in memory: an upload is never spooled to a file on disk
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise UploadError(400, f"malformed upload: {exc.message}", "file") from None
    fields: dict[str, str] = {}
    upload: UploadFile | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "file":
                raise UploadError(422, f"unexpected file field {key!r}: send the photo as 'file'", key)
            upload = value
        else:
            fields[key] = value
    if upload is None:
        raise UploadError(422, "no photo: the form has no 'file' field", "file")
    data = await upload.read()
    await upload.close()
    return fields, upload.filename or "upload", data
