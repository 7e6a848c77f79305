"""The HTTP app of ``modelzoo serve``: FastAPI routes over a :class:`~modelzoo.serving.Batcher`.

Routes (the contract of a Launch runnable image, so that a served model is
a valid runnable-image / runnable-command bundle):

- ``POST /predict``: one input, one answer. For a model with a
  ``request_schema``: a JSON body validated by it (the validated instance
  is the model's input). For a model of images: the image's bytes with an
  ``image/*`` or ``application/octet-stream`` content type, or JSON
  ``{"image": "<base64>"}`` or ``{"path": "/file.jpg"}`` (a bare JSON string
  is a path too; paths only under the folders given as ``allow_paths``, see
  :mod:`modelzoo.serving.paths`). Any other model gets the JSON body as it
  is. A body needs a JSON (``application/json``, ``*/*+json``) or image
  content type: no content type is 415, not JSON. Every request is parsed,
  read and decoded in a bounded pool of threads (:mod:`modelzoo.serving.decoding`)
  and then goes through the batcher, so concurrent requests share ``predict_all`` calls.
- ``GET /readyz`` (and ``/healthz``, ``/healthcheck``, which Launch's own
  server also answers): 200 once serving, 503 while stopping. Answered on
  the event loop, never behind a decode.
- ``GET /info``: the model's name, what it takes, and the batcher's counters.
- ``GET /docs``, ``GET /openapi.json``: OpenAPI documentation built from the schemas.

Answers: a pydantic output as ``output.model_dump(mode="json")``, a Label as
``label.to_dict()`` (``modelzoo.labels.Label.from_dict`` rebuilds it), a
dict of Labels as a dict of those, other JSON data as it is. Every error
is JSON ``{"detail": "..."}``, for that request only: 422 for a malformed
request (JSON nested too deeply included), a path refused, or an input the
model cannot take, its schema included (with ``errors``: ``loc`` names the
field), 413 for a body over ``max_body_bytes``, a file over
``max_file_bytes`` or an image over ``max_pixels``, 408 for a body not sent
within ``body_timeout_s``, 415 for an unsupported content type, 500 for an
exception in ``predict`` (its type and message; the traceback goes to the
server's log), 503 when the server is stopping or a request waited for the
decoding pool longer than ``decode_timeout_s``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import os
from typing import Any, AsyncIterator, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import pydantic
from bson import ObjectId
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ..errors import RequestError
from ..labels import Label
from . import defaults
from .batcher import Batcher
from .decoding import DecodePool, check_image_bytes, decode_array, decode_pil
from .errors import BatcherClosedError, InputError, TooLargeError
from .inputs import validate_request
from .limits import Limits
from .paths import PathPolicy

__all__ = ["create_app", "ImageRequest", "ErrorResponse", "to_jsonable", "DEFAULT_MAX_BODY_BYTES"]

logger = logging.getLogger("modelzoo.serving")

DEFAULT_MAX_BODY_BYTES = defaults.MAX_BODY_BYTES

_IMAGE_TYPES = ("application/octet-stream",)


class ImageRequest(pydantic.BaseModel):
    """One image, as JSON: give exactly one of ``image`` or ``path``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    image: Optional[str] = pydantic.Field(
        None, description="the encoded image file (JPEG, PNG...) in base64; a data: URL is accepted"
    )
    path: Optional[str] = pydantic.Field(None, description="a path to an image file on the server's machine")

    @pydantic.model_validator(mode="after")
    def _one_of(self) -> "ImageRequest":
        if (self.image is None) == (self.path is None):
            raise ValueError("give exactly one of 'image' (base64) or 'path'")
        return self


class ErrorResponse(pydantic.BaseModel):
    """An error answer: what went wrong for this request."""

    detail: str
    errors: Optional[list] = pydantic.Field(None, description="for 422: one record per field, 'loc' names it")


def to_jsonable(value: Any) -> Any:
    """A model's output as JSON data (pydantic instances, Labels, numpy values
    and containers of them are converted).

    Raises:
        TypeError: a value JSON cannot hold, naming its type.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Label):  # its stored document, label ids as strings
        return to_jsonable(value.to_dict())
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"the model returned a {type(value).__name__}, which is not JSON data")


def _error(
    status: int, detail: str, errors: Optional[list] = None, headers: Optional[Dict[str, str]] = None
) -> JSONResponse:
    body: Dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


class _TooLarge(Exception):
    pass



async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_base64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError("image", f"not valid base64 ({e})") from None


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise InputError("body", "the JSON is nested too deeply") from None
    except ValueError as e:
        raise InputError("body", f"not valid JSON ({e})") from None


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/") and content_type.endswith("+json"))


def _schema_ref(schema: type, components: Dict[str, Any]) -> Dict[str, Any]:
    js = schema.model_json_schema(ref_template="#/components/schemas/{model}")  # type: ignore[attr-defined]
    components.update(js.pop("$defs", {}))
    components[schema.__name__] = js
    return {"$ref": f"#/components/schemas/{schema.__name__}"}


def _input_error(e: Exception) -> JSONResponse:
    """422 (413 for a limit) for an input the model cannot take, ``loc`` naming the field when known."""
    errors = getattr(e, "errors", None)
    errors = errors() if callable(errors) else errors
    if not isinstance(errors, list):
        field = getattr(e, "field", None)
        errors = [{"loc": [field] if field else ["body"], "msg": str(e), "type": "value_error"}]
    return _error(413 if isinstance(e, TooLargeError) else 422, str(e), errors)


def create_app(
    batcher: Batcher,
    name: Optional[str] = None,
    max_body_bytes: Optional[int] = None,
    allow_paths: Optional[Iterable[Union[str, "os.PathLike[str]"]]] = None,
    limits: Optional[Limits] = None,
    pool: Optional[DecodePool] = None,
) -> FastAPI:
    """The FastAPI app serving ``batcher``'s model (see the module docstring).

    The app does not own the batcher: whoever made it closes it, after the
    server has answered its last request (:class:`~modelzoo.serving.server.ModelServer` does).

    Args:
        batcher: the model's batcher.
        name: the model's name (default: the batcher's).
        max_body_bytes: a larger request body is answered 413 (default:
            ``limits.max_body_bytes``).
        allow_paths: the folders image requests may name files in
            (``{"path": ...}``; see :mod:`modelzoo.serving.paths`); None or
            empty: path inputs are refused with 422.
        limits: bytes, pixels, threads and seconds a request may take (default: :class:`Limits`).
        pool: the decoding pool (default: one of ``limits.decode_workers``
            threads, closed with the app); a server closes it when it starts
            stopping, so that requests still decoding are answered 503 at once.

    Raises:
        ConfigError: an ``allow_paths`` entry that is not a folder.
    """
    name = name or batcher.name
    limits = limits or Limits()
    if max_body_bytes is not None:
        limits = dataclasses.replace(limits, max_body_bytes=max_body_bytes)
    max_body_bytes = limits.max_body_bytes
    paths = PathPolicy(allow_paths, limits.file_bytes)
    adapter = batcher.adapter
    kind = adapter.kind if adapter is not None else "raw"
    model = batcher.model
    request_schema = getattr(model, "request_schema", None)
    response_schema = getattr(model, "response_schema", None)
    takes_images = adapter is not None and adapter.takes_images
    own_pool = pool is None
    decoder = pool if pool is not None else DecodePool(limits.decode_workers, name)

    state = {"ready": True}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state["ready"] = False  # the server is stopping: not ready any more
            if own_pool:
                decoder.close()

    app = FastAPI(
        title=f"modelzoo: {name}",
        description=f"The zoo model {name!r}, served by `modelzoo serve` (requests are batched).",
        version="1",
        lifespan=lifespan,
    )
    app.state.decode_pool = decoder
    app.state.limits = limits
    app.state.allow_paths = paths.roots

    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("modelzoo serve %s: %s %s failed", name, request.method, request.url.path, exc_info=exc)
        return _error(500, f"{type(exc).__name__}: {exc}")

    app.add_exception_handler(Exception, _any_error)

    def _parse(content_type: str, body: bytes) -> Tuple[str, Any]:
        """The request as ``("bytes", data)``, ``("path", path)`` or ``("data", json)``."""
        if takes_images and (content_type.startswith("image/") or content_type in _IMAGE_TYPES):
            if not body:
                raise InputError("body", "the request body is empty: send the image file's bytes")
            return "bytes", body
        data = _load_json(body)
        if request_schema is not None or not takes_images:
            return "data", data
        if isinstance(data, str):
            data = {"path": data}
        image = validate_request(ImageRequest, data)
        if image.image is not None:
            return "bytes", _decode_base64(image.image)
        return "path", image.path

    def _prepare(how: str, value: Any) -> Any:
        """What the batcher gets: paths checked and read, images checked against
        the pixel limit and decoded (as the adapter would, see :mod:`modelzoo.serving.inputs`)."""
        if how == "data":
            return value
        if how == "path" and kind in ("path", "file"):
            return paths.check(value)  # the model opens the (checked, real) file itself
        data, exif = (paths.read(value), True) if how == "path" else (value, False)
        what = f"the file {value!r:.300}" if how == "path" else f"image bytes ({len(data)})"
        if kind == "array":
            return decode_array(data, what, limits.max_pixels, exif_orientation=exif)
        if kind == "pil":
            return decode_pil(data, what, limits.max_pixels, exif_orientation=exif)
        check_image_bytes(data, what, limits.max_pixels)
        return data

    def _submit(content_type: str, body: bytes) -> "Any":
        try:
            x = _prepare(*_parse(content_type, body))
        except RecursionError:
            raise InputError("body", "the JSON is nested too deeply") from None
        return batcher.submit(x)

    async def predict(request: Request) -> Any:
        content_type = _content_type(request)
        is_image = takes_images and (content_type.startswith("image/") or content_type in _IMAGE_TYPES)
        if not is_image and not _is_json(content_type):
            accepted = "application/json" + (", image/* or application/octet-stream" if takes_images else "")
            shown = repr(content_type) if content_type else "none"
            return _error(415, f"unsupported content type {shown}; send {accepted}")
        try:
            body = await asyncio.wait_for(_read_body(request, max_body_bytes), limits.body_timeout_s)
        except _TooLarge:
            return _error(413, f"the request body is over the limit of {max_body_bytes} bytes (--max-body-bytes)")
        except asyncio.TimeoutError:
            return _error(408, f"the request body did not arrive within {limits.body_timeout_s:g} s (--body-timeout-s)",
                          headers={"Connection": "close"})
        except ClientDisconnect:
            return _error(400, "the client disconnected before sending the whole body")
        task = decoder.submit(_submit, content_type, body)
        try:
            future = await asyncio.wait_for(asyncio.wrap_future(task), limits.decode_timeout_s)
            out = await asyncio.wrap_future(future)
            return JSONResponse(to_jsonable(out))
        except asyncio.TimeoutError:
            return _error(503, f"the request was not read and decoded within {limits.decode_timeout_s:g} s "
                          "(--decode-timeout-s): the server is busy, or the input is slow to decode")
        except RequestError as e:  # its conversion, a path refused, its schema (a bundle's too)
            return _input_error(e)
        except BatcherClosedError as e:
            return _error(503, str(e))
        except Exception as e:
            logger.exception("modelzoo serve %s: predict failed", name)
            return _error(500, f"{type(e).__name__}: {e}")

    errors = {
        "408": {"description": "the body did not arrive in time", "model": ErrorResponse},
        "413": {"description": "the body, the file or the image's pixels are over a limit", "model": ErrorResponse},
        "415": {"description": "unsupported content type (JSON or an image is needed)", "model": ErrorResponse},
        "422": {"description": "a malformed request, a path refused, or an input the model cannot take: "
                "`errors[].loc` names the field", "model": ErrorResponse},
        "500": {"description": "predict raised for this input (its type and message)", "model": ErrorResponse},
        "503": {"description": "the server is stopping, or too busy to decode the request in time",
                "model": ErrorResponse},
    }
    ok: Dict[str, Any] = {"description": "the model's output for this input"}
    if response_schema is not None:
        ok["model"] = response_schema
    app.add_api_route(
        "/predict", predict, methods=["POST"], summary=f"Predict with {name}",
        responses={200: ok, **errors},  # type: ignore[dict-item]
        description=(
            "One input, one answer; concurrent requests are batched together. "
            + ("The JSON body follows the request schema." if request_schema is not None else
               "An image: its bytes (image/* or application/octet-stream), or JSON with base64 `image` or a `path`."
               if takes_images else "A JSON body, given to the model as it is.")
        ),
    )

    async def ready() -> JSONResponse:  # on the event loop: never behind the decoding pool
        if not state["ready"] or batcher.closed:
            return JSONResponse({"status": "stopping", "model": name}, status_code=503)
        return JSONResponse({"status": "ready", "model": name})

    for route in ("/readyz", "/healthz", "/healthcheck"):
        app.add_api_route(route, ready, methods=["GET"], summary="Readiness: 200 when serving", include_in_schema=route == "/readyz")

    @app.get("/info", summary="The model and the batcher's counters")
    async def info() -> Dict[str, Any]:
        stats = batcher.stats
        return {
            "model": name, "input": kind,
            "request_schema": None if request_schema is None else request_schema.__name__,
            "response_schema": None if response_schema is None else response_schema.__name__,
            "max_batch_size": batcher.max_batch_size, "max_wait_ms": batcher.max_wait_ms,
            "max_body_bytes": max_body_bytes,
            "limits": dataclasses.asdict(limits), "allow_paths": list(paths.roots),
            "pending": batcher.pending, "decoding": decoder.busy, "waiting_to_decode": decoder.waiting,
            "stats": {
                "requests": stats.requests, "rejected": stats.rejected, "failed": stats.failed,
                "batches": stats.batches, "retried_batches": stats.retried_batches,
                "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
            },
        }

    def openapi() -> Dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            content: Dict[str, Any] = {}
            if request_schema is not None:
                content["application/json"] = {"schema": _schema_ref(request_schema, components)}
            elif takes_images:
                content["application/json"] = {"schema": _schema_ref(ImageRequest, components)}
                for ctype in ("image/*", "application/octet-stream"):
                    content[ctype] = {"schema": {"type": "string", "format": "binary"}}
            else:
                content["application/json"] = {"schema": {}}
            doc["paths"]["/predict"]["post"]["requestBody"] = {"required": True, "content": content}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

