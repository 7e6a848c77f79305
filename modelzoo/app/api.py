"""The viewer's HTTP routes (Starlette): the page, its JSON API and the media.

Every request carries the session's token (``?token=`` on the first page
load, then an HttpOnly, SameSite=Strict cookie the page load sets), else it
is answered 403: other local users and other web pages cannot read the
dataset. Media is looked up by sample id among the samples shown, and the
file served is the sample's own ``filepath``; no path is ever taken from a
request.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional

from bson import ObjectId, json_util
from bson.errors import InvalidId
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .. import db
from ..errors import ModelzooError
from ..media import exif_orientation_of
from ..storage import FRAME_ID, FRAME_NUMBER
from ._aggregations import LIST_FIELDS, field_types, neighbor, one, page
from .serialize import to_json
from .state import ViewState, parse_state
from .thumbnails import THUMB_SIZE, ThumbnailCache
from .video_frames import FrameServer

__all__ = ["create_app", "LABEL_TYPES_DRAWN", "PAGE_SIZE"]

#: label types the page draws
LABEL_TYPES_DRAWN = frozenset(LIST_FIELDS) | {"Segmentation", "Heatmap"}
#: samples per grid page
PAGE_SIZE = 60
#: most frames per frames request
MAX_FRAMES_CHUNK = 300
#: image formats browsers show as they are (others are converted to PNG)
_BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}
_STATIC = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Token:
    """ASGI middleware: 403 unless the request carries the token (query or cookie)."""

    def __init__(self, app: Any, token: str, cookie: str):
        self.app, self.token, self.cookie = app, token, cookie

    def _given(self, scope: Mapping[str, Any]) -> List[str]:
        found = []
        query = scope.get("query_string", b"").decode("latin-1")
        for part in query.split("&"):
            if part.startswith("token="):
                found.append(part[len("token="):])
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:
                    continue
                if self.cookie in jar:
                    found.append(jar[self.cookie].value)
        return found

    async def __call__(self, scope: Dict[str, Any], receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[Any]]) -> None:
        if scope["type"] == "http" and not any(secrets.compare_digest(t, self.token) for t in self._given(scope)):
            response = PlainTextResponse(
                "403 Forbidden: this modelzoo viewer needs its token; open the URL that launch_app() "
                "or `modelzoo app` printed (it ends with ?token=...)", status_code=403,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Viewer:
    """The state behind the routes: the samples shown and their field types."""

    def __init__(self, samples: Any, thumbs: ThumbnailCache):
        self.samples = samples
        self.thumbs = thumbs
        self.refresh()

    def refresh(self) -> None:
        self.types = field_types(self.samples)
        self._bounds: Dict[str, Any] = {}  # confidence ranges of the samples shown, by path
        self.frame_types = field_types(self.samples, frames=True) if self.samples.count() and self._has_videos() else {}
        self.evaluations: Dict[str, Dict[str, Any]] = {}
        dataset = self.samples.dataset
        for key in dataset.list_evaluations():
            results = dataset.load_evaluation(key)
            config = results.config or {}
            self.evaluations[key] = {
                "kind": results.kind, "pred_field": config.get("pred_field"), "gt_field": config.get("gt_field"),
            }

    def _has_videos(self) -> bool:
        return self.samples.match({"media_type": "video"}).count() > 0

    def bounds(self, path: str) -> Any:
        """``(min, max)`` of ``path`` over the samples shown (computed once: they do not follow filters)."""
        if path not in self._bounds:
            self._bounds[path] = self.samples.bounds(path)
        return self._bounds[path]

    def state(self, request: Request) -> ViewState:
        return parse_state(request.query_params.get("state"), self.types, self.evaluations)

    def label_fields(self) -> List[str]:
        return [f for f, t in self.types.items() if t in LABEL_TYPES_DRAWN]

    def find(self, sample_id: str, fields: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The stored document of a sample shown (404 otherwise)."""
        try:
            oid = ObjectId(sample_id)
        except (InvalidId, TypeError):
            raise _NotFound(f"{sample_id!r} is not a sample id") from None
        doc = one(self.samples, oid, fields)
        if doc is None:
            raise _NotFound(f"No sample {sample_id} in {self.samples.name!r} as shown")
        return doc


class _NotFound(Exception):
    pass


def _skeleton(dataset: Any) -> Any:
    info = dataset.info or {}
    per_class = {
        c["name"]: {"edges": [[a - 1, b - 1] for a, b in c["skeleton"]]}  # COCO numbers points from 1
        for c in info.get("coco_categories", []) if c.get("skeleton")
    }
    return per_class or info.get("skeleton")


def create_app(
    samples: Any, token: str, thumbs: ThumbnailCache, cookie: str = "modelzoo_app", video_frames: Optional[FrameServer] = None
) -> Any:
    """The viewer's ASGI app for ``samples`` (a dataset or view).

    Args:
        samples: what is shown; media of other samples is never served.
        token: the secret every request must carry.
        thumbs: where thumbnails are made and kept.
        cookie: the name of the token's cookie (per port: cookies ignore ports).
        video_frames: decodes the frames of videos the browser cannot play (closed by the caller).
    """
    viewer = _Viewer(samples, thumbs)
    frame_server = video_frames or FrameServer()

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def run(request: Request) -> Any:
            try:
                return handler(request)
            except _NotFound as e:
                return PlainTextResponse(str(e), status_code=404)
            except ModelzooError as e:
                return JSONResponse({"error": str(e)}, status_code=400)

        async def endpoint(request: Request) -> Any:
            # pymongo and PIL block: run them in a worker thread
            return await asyncio.get_running_loop().run_in_executor(None, run, request)

        return endpoint

    def static(name: str, request: Optional[Request] = None) -> Response:
        body = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    async def index(request: Request) -> Response:
        response = static("index.html")
        given = request.query_params.get("token")
        if given and secrets.compare_digest(given, token):
            response.set_cookie(cookie, token, httponly=True, samesite="strict", path="/")
        return response

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return PlainTextResponse("not found", status_code=404)
        return static(name)

    def info(request: Request) -> Any:
        viewer.refresh()
        return JSONResponse(to_json({
            "name": samples.name,
            "view": repr(samples) if samples.query else None,
            "count": samples.count(),
            "fields": viewer.types,
            "frame_fields": viewer.frame_types,
            "label_fields": viewer.label_fields(),
            "frame_label_fields": [f for f, t in viewer.frame_types.items() if t in LABEL_TYPES_DRAWN],
            "evaluations": viewer.evaluations,
            "gt_fields": sorted({e["gt_field"] for e in viewer.evaluations.values() if e.get("gt_field")}
                                | {f for f in viewer.types if f == "ground_truth" or f.startswith("gt")}),
            "skeleton": _skeleton(samples.dataset),
            "page_size": PAGE_SIZE,
        }))

    def facets(request: Request) -> Any:
        state = viewer.state(request)
        out: Dict[str, Any] = {}
        for name, kind in viewer.types.items():
            if kind not in LIST_FIELDS:
                continue
            inner = LIST_FIELDS[kind]
            prefix = f"{name}.{inner}" if inner else name
            counts = state.view(samples, without=name).count_values(f"{prefix}.label")
            lo, hi = viewer.bounds(f"{prefix}.confidence") if kind not in ("Keypoints", "Keypoint") else (None, None)
            out[name] = {
                "classes": sorted(([str(k), v] for k, v in counts.items() if k is not None), key=lambda kv: (-kv[1], kv[0])),
                "confidence": [lo, hi] if isinstance(lo, (int, float)) else None,
            }
        return JSONResponse(to_json({"count": state.view(samples).count(), "fields": out}))

    def sample_page(request: Request) -> Any:
        state = viewer.state(request)
        after = request.query_params.get("after")
        try:
            cursor = json_util.loads(after) if after else None
            limit = min(max(int(request.query_params.get("limit", PAGE_SIZE)), 1), 500)
        except (ValueError, TypeError):
            return JSONResponse({"error": f"bad page cursor {after!r}"}, status_code=400)
        fields = viewer.label_fields()
        projection = {f: 1 for f in ["filepath", "media_type", "metadata", *fields]}
        docs, next_cursor = page(state.view(samples), cursor, limit, state.sort_field, state.reverse, projection)
        out = []
        for doc in docs:
            video = doc.get("media_type") == "video"
            try:
                viewer.thumbs.submit(doc["filepath"], video)  # made by the pool while the page renders
            except (OSError, RuntimeError):
                pass  # a missing file: its thumbnail request says so
            item = {"id": str(doc["_id"]), "filepath": doc.get("filepath"), "media_type": doc.get("media_type", "image"),
                    "metadata": to_json(doc.get("metadata")), "labels": {}}
            for f in fields:
                if doc.get(f) is not None:
                    item["labels"][f] = to_json(doc[f], max_mask=THUMB_SIZE)
            out.append(item)
        return JSONResponse({"samples": out, "next": json_util.dumps(next_cursor) if next_cursor else None})

    def sample(request: Request) -> Any:
        state = viewer.state(request)
        view = state.view(samples)
        viewer.find(request.path_params["id"], {"_id": 1})  # one of the samples shown (404 otherwise)
        doc = one(view, ObjectId(request.path_params["id"]))  # its labels as the filters leave them
        if doc is None:  # shown, but not under these filters: as stored
            doc = viewer.find(request.path_params["id"])
        body = {("id" if k == "_id" else k): to_json(v) for k, v in doc.items()}
        body["prev"] = _str(neighbor(view, doc["_id"], -1, state.sort_field, state.reverse))
        body["next"] = _str(neighbor(view, doc["_id"], 1, state.sort_field, state.reverse))
        return JSONResponse(body)

    def frames(request: Request) -> Any:
        doc = viewer.find(request.path_params["id"], {"_id": 1})
        try:
            start = max(int(request.query_params.get("start", 1)), 1)
            count = min(max(int(request.query_params.get("count", 120)), 1), MAX_FRAMES_CHUNK)
        except ValueError:
            return JSONResponse({"error": "start and count must be integers"}, status_code=400)
        coll = db.get_db()[samples.frames_collection_name]
        query = {FRAME_ID: doc["_id"], FRAME_NUMBER: {"$gte": start, "$lt": start + count}}
        out = {}
        for frame in coll.find(query).sort(FRAME_NUMBER, 1):
            out[str(frame[FRAME_NUMBER])] = {
                k: to_json(v) for k, v in frame.items() if k not in ("_id", FRAME_ID, FRAME_NUMBER)
            }
        return JSONResponse({"start": start, "count": count, "frames": out})

    async def thumb(request: Request) -> Response:
        try:
            doc = await asyncio.get_running_loop().run_in_executor(
                None, viewer.find, request.path_params["id"], {"filepath": 1, "media_type": 1})
            job = viewer.thumbs.submit(doc["filepath"], doc.get("media_type") == "video")
            path = await asyncio.wrap_future(job)
        except _NotFound as e:
            return PlainTextResponse(str(e), status_code=404)
        except Exception as e:  # an unreadable file: say which
            return PlainTextResponse(f"No thumbnail of {request.path_params['id']}: {type(e).__name__}: {e}", status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    def image(request: Request) -> Response:
        doc = viewer.find(request.path_params["id"], {"filepath": 1, "media_type": 1})
        path = doc["filepath"]
        if doc.get("media_type") == "video":
            return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
        try:
            img = Image.open(path)
        except (OSError, ValueError) as e:
            raise _NotFound(f"Cannot open {path}: {e}") from None
        with img:
            if exif_orientation_of(img) == 1 and img.format in _BROWSER_FORMATS:
                return FileResponse(path, media_type=_BROWSER_FORMATS[img.format])
            upright = ImageOps.exif_transpose(img)
            if upright.mode not in ("RGB", "RGBA", "L", "LA"):
                upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
            buf = io.BytesIO()
            if img.format == "JPEG" and upright.mode in ("RGB", "L"):
                upright.save(buf, format="JPEG", quality=95)
                return Response(buf.getvalue(), media_type="image/jpeg")
            upright.save(buf, format="PNG", compress_level=1)
            return Response(buf.getvalue(), media_type="image/png")

    def video_frame(request: Request) -> Response:
        doc = viewer.find(request.path_params["id"], {"filepath": 1, "media_type": 1})
        if doc.get("media_type") != "video":
            raise _NotFound(f"Sample {request.path_params['id']} is not a video")
        try:
            n = int(request.path_params["n"])
        except ValueError:
            raise _NotFound(f"Frame numbers are integers from 1, got {request.path_params['n']!r}") from None
        data = frame_server.jpeg(doc["filepath"], n) if n >= 1 else None
        if data is None:
            raise _NotFound(f"Video {doc['filepath']} has no frame {n}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    routes = [
        Route("/", index),
        Route("/static/{name}", asset),
        Route("/api/info", guarded(info)),
        Route("/api/facets", guarded(facets)),
        Route("/api/samples", guarded(sample_page)),
        Route("/api/sample/{id}", guarded(sample)),
        Route("/api/frames/{id}", guarded(frames)),
        Route("/media/{id}/thumb", thumb),
        Route("/media/{id}/full", guarded(image)),
        Route("/media/{id}/frame/{n}", guarded(video_frame)),
    ]
    app = Starlette(routes=routes)
    app.state.viewer = viewer
    return _Token(app, token, cookie)


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)
