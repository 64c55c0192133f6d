"""``dim-search serve``: a local web page over an index, and the JSON API behind it.

Flask, because its handlers are plain synchronous functions (Faiss and torch
calls block anyway), it has a test client, and its server binds where it is told.
The page (``retrieval/static/``) is plain HTML and JavaScript with no build step,
and uses only the API below, which scripts can use too. Every answer is JSON;
errors are ``{"error": message}`` with a 4xx status.

| route | answer |
| --- | --- |
| ``GET /api/info`` | ``{images, folders: [{name, count}], model, index_type, updated, write, max_k, max_upload_bytes}`` |
| ``GET /api/images?folder=F&page=1&per_page=60`` | ``{total, page, per_page, pages, images: [image]}``; ``folder`` includes its sub-folders |
| ``GET /api/neighbours/ID?k=10`` | ``{query: image, k, results: [image + {rank, score}]}`` |
| ``POST /api/search?k=10`` (multipart field ``image``) | ``{query: {name}, k, results}`` for an uploaded image |
| ``GET /api/duplicates?threshold=0.95&keep=largest`` | ``{threshold, keep, keep_rules, write, quarantine, exact: [group], near: [group]}`` |
| ``GET /api/duplicates/histogram`` | ``{bin_width, edges, counts, images}``: each image's nearest-neighbour score |
| ``POST /api/duplicates/apply`` (JSON ``{threshold, write, groups: [{keep, move}]}``) | ``{moved, groups, images, quarantine, write, undo}`` |
| ``GET /thumbnails/ID`` | a JPEG thumbnail, made once and cached in ``INDEX_DIR/thumbnails/`` |
| ``GET /images/ID`` | the original file |

An ``image`` is ``{id, path, folder, thumbnail, original}``: ``path`` as stored
in the index (relative to its image root), the last two the URLs above. A
``group`` is ``{group, kind, size, images: [image + {best_score, file_size, width,
height, modified, sha256, action}], pairs}`` (:func:`retrieval.dedup.report`).

The apply moves files, so it takes more than the page's other requests: the
random token of this server, which only its page carries (``<meta
name="page-token">``), in the ``X-Page-Token`` header; index ids only (the
quarantine folder is the server's ``--move-to``, never a path from the request);
the ``write`` the groups were found in, so that nothing is moved on a stale view.

Security, for a page that shows private photos: the server binds 127.0.0.1
unless told otherwise (and :func:`serve` warns when it is); files are served by
index id only, so no request can name a path; a request whose ``Host`` header is
not the served host and port is refused (DNS rebinding), as is a POST from
another origin; no CORS headers are sent; an upload is capped at
:data:`MAX_UPLOAD_BYTES`, decoded in memory and never written to disk, with
Pillow's decompression-bomb check as an error and at most
:data:`MAX_UPLOAD_PIXELS` pixels; every answer carries ``X-Content-Type-Options:
nosniff`` and a Content-Security-Policy that allows only this origin's own
scripts, styles and images; Flask's debug mode is off.

Each handler is a module-level function on :data:`blueprint`, so it can be read
and tested alone (in ``app.test_request_context(...)``); :func:`create_app`
registers the blueprint and keeps what the handlers answer from and check
against, a :class:`ServerState`, in ``app.extensions``, where :func:`server_state`
finds it for the current request.
"""

from __future__ import annotations

import io
import math
import mimetypes
import os
import secrets
import socket
import threading
import time
import warnings
import webbrowser
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request, send_file
from PIL import Image, ImageOps
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from dim.core.atomic import atomic_write
from dim.core.images import DECODE_ERRORS, on_background
from retrieval import cleanup
from retrieval.dedup import (
    DEFAULT_THRESHOLD,
    GROUP_KINDS,
    DuplicateGroup,
    ScoreHistogram,
    find_duplicates,
    report,
    score_histogram,
)
from retrieval.index import Index, ModelLike, current_write
from retrieval.lock import IndexLockedError
from retrieval.store import ImageRecord

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
MAX_K = 200
MAX_PER_PAGE = 200
THUMBNAIL_SIZE = 192
THUMBNAIL_DIR = "thumbnails"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "X-Page-Token"
TOKEN_META = '<meta name="page-token" content="">'  # in index.html; filled in by page()


class LiveIndex:
    """The index a server answers from, replaced when a writer has switched in a newer one.

    Args:
        index: the loaded index.
        check_interval: look at the manifest at most this often, in seconds.
    """

    def __init__(self, index: Index, check_interval: float = 1.0) -> None:
        self._index = index
        self.check_interval = check_interval
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._duplicates: dict[tuple[str, float], list[DuplicateGroup]] = {}
        self._histogram: tuple[str, ScoreHistogram] | None = None  # (write id, histogram)
        self._folders: tuple[str, list[str]] | None = None  # (write id, folder of each record)
        self.model_lock = threading.Lock()  # one forward pass at a time

    def get(self) -> Index:
        """The current index, reloaded first if ``manifest.json`` names a newer write."""
        with self._lock:
            if time.monotonic() - self._checked >= self.check_interval:
                self._checked = time.monotonic()
                written = current_write(self._index.directory)
                if written is not None and written != self._index.manifest.get("write"):
                    try:
                        self._index = Index.load(self._index.directory, model=self._index.model)
                    except (ValueError, FileNotFoundError):
                        pass  # keep answering from the index we have; the next check tries again
            return self._index

    def folders(self, index: Index) -> list[str]:
        """The folder of each record of ``index``, in record order (computed once per write)."""
        write_id = index.manifest["write"]["id"]
        if self._folders is None or self._folders[0] != write_id:
            self._folders = (write_id, [folder_of(record) for record in index.records])
        return self._folders[1]

    def replace(self, index: Index) -> None:
        """Answer from ``index`` from now on: a write this server made itself."""
        with self._lock:
            self._index, self._checked = index, time.monotonic()

    def duplicates(self, index: Index, threshold: float) -> list[DuplicateGroup]:
        """:func:`~retrieval.dedup.find_duplicates`, computed once per index and threshold."""
        key = (index.manifest["write"]["id"], round(threshold, 6))
        if key not in self._duplicates:
            self._duplicates[key] = find_duplicates(index, threshold)
        return self._duplicates[key]

    def histogram(self, index: Index) -> ScoreHistogram:
        """:func:`~retrieval.dedup.score_histogram`, computed once per index."""
        write_id = index.manifest["write"]["id"]
        if self._histogram is None or self._histogram[0] != write_id:
            self._histogram = (write_id, score_histogram(index))
        return self._histogram[1]


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK


def page_url(host: str, port: int) -> str:
    """The address to open for a server bound to ``host:port`` (a wildcard bind is opened on loopback)."""
    name = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host.strip("[]")
    return f"http://{f'[{name}]' if ':' in name else name}:{port}/"


def allowed_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` header values a server bound to ``host:port`` accepts (lower case).

    Loopback binds accept ``127.0.0.1``, ``localhost`` and ``[::1]``; a wildcard bind
    (``0.0.0.0``, ``::``) also this machine's name and addresses; any other host itself.
    """
    names = {host.strip("[]").lower()}
    if is_loopback(host) or host in ("0.0.0.0", "::", ""):
        names |= set(LOOPBACK)
    if host in ("0.0.0.0", "::", ""):
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        try:
            names |= {str(info[4][0]).lower() for info in socket.getaddrinfo(hostname, None)}
        except OSError:
            pass
        names -= {"0.0.0.0", "::", ""}
    bracketed = {f"[{name}]" if ":" in name else name for name in names}
    return {f"{name}:{port}" for name in bracketed} | (bracketed if port == 80 else set())


def folder_of(record: ImageRecord) -> str:
    """The folder of an indexed image, as stored (``""`` for the image root)."""
    parent = str(PurePosixPath(record.path).parent)
    return "" if parent == "." else parent


def image_json(record: ImageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "path": record.path,
        "folder": folder_of(record),
        "thumbnail": f"/thumbnails/{record.id}",
        "original": f"/images/{record.id}",
    }


def decode_upload(data: bytes) -> Image.Image:
    """Decode uploaded bytes in memory, refusing what is not an image or has too many pixels.

    Raises:
        werkzeug.exceptions.HTTPException: 400 for an empty or unreadable file, 413 for too many pixels.
    """
    if not data:
        abort(400, description="the upload is empty: choose an image file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow's bomb check, as an error
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise Image.DecompressionBombError(f"{image.width}x{image.height} pixels")
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            abort(
                413,
                description=f"the image is too large to decode ({error}); "
                f"send one of at most {MAX_UPLOAD_PIXELS:,} pixels",
            )
        except (OSError, SyntaxError, ValueError) as error:
            abort(400, description=f"the upload is not an image that can be read ({type(error).__name__}: {error})")
    return image


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        abort(400, description=f"{name} must be a whole number, got {value!r}")
    if not low <= number <= high:
        abort(400, description=f"{name} must be between {low} and {high}, got {number}")
    return number


def _results(index: Index, hits: list) -> list[dict[str, Any]]:
    return [{**image_json(index.record(hit.id)), "rank": hit.rank, "score": hit.score} for hit in hits]


def _record_or_404(index: Index, image_id: int) -> ImageRecord:
    try:
        return index.record(image_id)
    except KeyError:
        abort(404, description=f"the index holds no image with id {image_id}")


def _cached_thumbnail(index: Index, record: ImageRecord) -> Path:
    """The cached thumbnail of an indexed image, made (atomically) on first request."""
    key = zlib.crc32(f"{record.path}|{record.size}|{record.mtime!r}".encode("utf-8", "surrogateescape"))
    path = index.directory / THUMBNAIL_DIR / f"{record.id}-{key:08x}.jpg"
    if path.is_file():
        return path
    try:
        with Image.open(index.path_of(record.id)) as original_image:
            picture = on_background(ImageOps.exif_transpose(original_image)).convert("RGB")  # as the model saw it
            picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    except (*DECODE_ERRORS, SyntaxError):
        abort(404, description=f"image {record.id} ({record.path}) can no longer be read")
    atomic_write(path, lambda tmp: picture.save(tmp, format="JPEG", quality=85))
    return path


# ---------------------------------------------------------------------- the app


@dataclass(frozen=True)
class ServerState:
    """What the app of one server answers from and checks requests against.

    Kept in ``app.extensions[EXTENSION]`` by :func:`create_app`; handlers read it
    with :func:`server_state`.

    Attributes:
        live: the index answered from.
        hosts: the ``Host`` header values accepted (:func:`allowed_hosts`, lower case).
        origins: the ``Origin`` values a request other than GET may come from.
        url: the page's address, named in refusals.
        token: the random token the page carries and the apply requires.
        move_to: the quarantine folder of the duplicates' apply, ``None`` if it is off.
    """

    live: LiveIndex
    hosts: frozenset[str]
    origins: frozenset[str]
    url: str
    token: str
    move_to: Path | None


EXTENSION = "dim_search"
blueprint = Blueprint(EXTENSION, __name__)


def server_state() -> ServerState:
    """The :class:`ServerState` of the app handling the current request."""
    return current_app.extensions[EXTENSION]


@blueprint.before_app_request
def refuse_foreign_requests() -> None:
    """Refuse another ``Host`` (DNS rebinding) and a non-GET request from another origin, with 403."""
    served = server_state()
    if request.host.lower() not in served.hosts:
        abort(
            403, description=f"Host {request.host!r} is not served here (DNS rebinding protection); open {served.url}"
        )
    origin = request.headers.get("Origin")
    if request.method != "GET" and origin is not None and origin.lower() not in served.origins:
        abort(403, description=f"requests from {origin} are refused: only the page at {served.url} may send them")


@blueprint.after_app_request
def security_headers(response: Response) -> Response:
    """Add the headers every answer carries (``no-store`` on the API's)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[Response, int]:
    """A 4xx answer as ``{"error": message}``."""
    description = error.description
    if error.code == 413 and "too large to decode" not in str(description):
        description = f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB; send a smaller image"
    return jsonify(error=description), error.code or 500


@blueprint.app_errorhandler(Exception)
def server_error(error: Exception) -> tuple[Response, int]:
    """A failure as a 500 that names no internal detail; the traceback goes to the server's log."""
    current_app.logger.exception("request failed")
    return jsonify(error="the server failed to answer this request; its console shows why"), 500


@blueprint.get("/")
def page() -> Response:
    """``GET /``: the page, carrying this server's token (never cached)."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    html = html.replace(TOKEN_META, TOKEN_META.replace('""', f'"{server_state().token}"'))
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/api/info")
def info() -> Response:
    """``GET /api/info``: the index's size, folders, model and limits."""
    live = server_state().live
    index = live.get()
    counts: dict[str, int] = {}
    for folder in live.folders(index):
        counts[folder] = counts.get(folder, 0) + 1
    return jsonify(
        images=len(index),
        folders=[{"name": name, "count": counts[name]} for name in sorted(counts)],
        model=index.manifest["model"]["name"],
        index_type=index.index_type,
        updated=index.manifest["updated"],
        write=index.manifest["write"]["id"],
        max_k=MAX_K,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        default_threshold=DEFAULT_THRESHOLD,
    )


@blueprint.get("/api/images")
def images() -> Response:
    """``GET /api/images?folder=F&page=1&per_page=60``: one page of the grid; ``folder`` includes its sub-folders."""
    live = server_state().live
    index = live.get()
    folder = request.args.get("folder", "").strip("/")
    per_page = _int_arg("per_page", 60, 1, MAX_PER_PAGE)
    inside = folder + "/"
    chosen = [
        record
        for record, its_folder in zip(index.records, live.folders(index))
        if not folder or its_folder == folder or its_folder.startswith(inside)
    ]
    pages = max(1, math.ceil(len(chosen) / per_page))
    page_number = _int_arg("page", 1, 1, pages)
    shown = chosen[(page_number - 1) * per_page : page_number * per_page]
    return jsonify(
        total=len(chosen), page=page_number, per_page=per_page, pages=pages, images=[image_json(r) for r in shown]
    )


@blueprint.get("/api/neighbours/<int:image_id>")
def neighbours(image_id: int) -> Response:
    """``GET /api/neighbours/ID?k=10``: the ``k`` nearest indexed images of an indexed image."""
    index = server_state().live.get()
    record = _record_or_404(index, image_id)
    k = _int_arg("k", 10, 1, MAX_K)
    result = index.neighbours_of(image_id, k)
    return jsonify(query=image_json(record), k=k, results=_results(index, result.neighbours))


@blueprint.post("/api/search")
def search() -> Response:
    """``POST /api/search?k=10``: the ``k`` nearest indexed images of an uploaded one (never written to disk)."""
    live = server_state().live
    index = live.get()
    k = _int_arg("k", 10, 1, MAX_K)
    upload = request.files.get("image")
    if upload is None:
        abort(400, description="send the query image as the multipart form field 'image'")
    image = decode_upload(upload.read())
    with live.model_lock, torch.inference_mode():
        (result,) = index.search([image], k)
    name = os.path.basename(upload.filename or "upload")[:200]
    return jsonify(query={"name": name}, k=k, results=_results(index, result.neighbours))


def _threshold(value: Any) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        abort(400, description=f"threshold must be a number, got {value!r}")
    if not -1.0 <= threshold <= 1.0:
        abort(400, description=f"threshold is a cosine similarity between -1 and 1, got {threshold}")
    return threshold


@blueprint.get("/api/duplicates")
def duplicates() -> Response:
    """``GET /api/duplicates?threshold=0.95&keep=largest``: the duplicate groups, each copy marked keep or move."""
    state = server_state()
    index = state.live.get()
    threshold = _threshold(request.args.get("threshold", DEFAULT_THRESHOLD))
    keep = request.args.get("keep", cleanup.DEFAULT_KEEP)
    if keep not in cleanup.KEEP_RULES:
        abort(400, description=f"keep must be one of {', '.join(cleanup.KEEP_RULES)}, got {keep!r}")
    groups = state.live.duplicates(index, threshold)
    found = report(groups, threshold, cleanup.actions(cleanup.plan_moves(groups, keep)))
    for kind in GROUP_KINDS:
        for group in found[kind]:  # the path as stored and the URLs, as everywhere in the API
            group["images"] = [{**image, **image_json(index.record(image["id"]))} for image in group["images"]]
    return jsonify(
        **found,
        keep=keep,
        keep_rules=list(cleanup.KEEP_RULES),
        write=index.manifest["write"]["id"],
        quarantine=None if state.move_to is None else str(state.move_to),
    )


@blueprint.get("/api/duplicates/histogram")
def duplicates_histogram() -> Response:
    """``GET /api/duplicates/histogram``: how many images have their nearest neighbour at each score."""
    live = server_state().live
    index = live.get()
    histogram = live.histogram(index)
    return jsonify(**histogram.to_dict(), images=histogram.total)


def _image_id(value: Any, what: str) -> int:
    """An index id from a JSON body; anything else (a path, a name) is refused with 400."""
    if isinstance(value, bool) or not isinstance(value, int):
        abort(400, description=f"{what} must be an image id (a whole number; images are named by id only), "
                               f"got {value!r}")
    return value


@blueprint.post("/api/duplicates/apply")
def apply_duplicates() -> Response:
    """``POST /api/duplicates/apply``: move the copies not kept into the server's quarantine folder.

    The JSON body is ``{threshold, write, groups: [{keep: id, move: [id, ...]}]}``,
    by index id only; the ``X-Page-Token`` header must carry the page's token.
    """
    state = server_state()
    if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), state.token.encode()):
        abort(403, description=f"moving files needs the token of the page at {state.url}: reload it and apply there")
    if state.move_to is None:
        abort(409, description="this server has no quarantine folder: restart it with "
                               "`dim-search serve INDEX_DIR --move-to DIR` to move duplicates")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("groups"), list):
        abort(400, description="send JSON {threshold, write, groups: [{keep: id, move: [id, ...]}]}")
    threshold = _threshold(body.get("threshold"))
    choices = []
    for choice in body["groups"]:
        if not isinstance(choice, dict) or not isinstance(choice.get("move"), list):
            abort(400, description=f"each group must be {{keep: id, move: [id, ...]}}, got {choice!r}")
        choices.append((_image_id(choice.get("keep"), "keep"), [_image_id(i, "move") for i in choice["move"]]))
    live = state.live
    index = live.get()
    if body.get("write") != index.manifest["write"]["id"]:
        abort(409, description="the index changed since these groups were shown: reload them, then apply")
    try:
        decisions = cleanup.decide(live.duplicates(index, threshold), choices)
    except ValueError as error:
        abort(400, description=str(error))
    working = Index.load(index.directory, model=index.model)  # the live one keeps answering meanwhile
    try:
        journal = cleanup.apply(working, decisions, state.move_to, wait=False)
    except (IndexLockedError, ValueError, FileNotFoundError, FileExistsError) as error:
        abort(409, description=f"nothing was moved: {error}")
    live.replace(working)
    return jsonify(
        moved=0 if journal is None else len(journal.moves),
        groups=len(decisions),
        images=len(working),
        quarantine=str(state.move_to),
        write=working.manifest["write"]["id"],
        undo=f"dim-search undo {index.directory}",
    )


@blueprint.get("/thumbnails/<int:image_id>")
def thumbnail(image_id: int) -> Response:
    """``GET /thumbnails/ID``: a JPEG thumbnail, made once and cached in ``INDEX_DIR/thumbnails/``."""
    index = server_state().live.get()
    return send_file(_cached_thumbnail(index, _record_or_404(index, image_id)), mimetype="image/jpeg", max_age=3600)


@blueprint.get("/images/<int:image_id>")
def original(image_id: int) -> Response:
    """``GET /images/ID``: the original file of an indexed image (by id only: no request names a path)."""
    index = server_state().live.get()
    record = _record_or_404(index, image_id)
    path = Path(index.path_of(record.id))
    if not path.is_file():
        abort(404, description=f"image {image_id} ({record.path}) is no longer on disk")
    mimetype = mimetypes.guess_type(path.name)[0] or ""
    if not mimetype.startswith("image/"):
        mimetype = "application/octet-stream"
    return send_file(path, mimetype=mimetype, as_attachment=mimetype == "application/octet-stream")


def create_app(
    index: Index | LiveIndex,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    reload_interval: float = 1.0,
    move_to: str | os.PathLike | None = None,
) -> Flask:
    """The Flask app of ``dim-search serve``: :data:`blueprint`, answering from ``index``.

    Args:
        index: a loaded index (or a :class:`LiveIndex`); newer writes are picked up as they land.
        host: the host the server is bound to (for the ``Host`` check).
        port: the port it listens on (for the ``Host`` check).
        reload_interval: seconds between checks for a newer index.
        move_to: the quarantine folder the duplicates tab's apply moves copies to
            (:func:`retrieval.cleanup.apply`); ``None`` turns the apply off.

    Returns:
        The app; run it with :func:`serve`, or :func:`start_server` in a thread.
    """
    live = index if isinstance(index, LiveIndex) else LiveIndex(index, reload_interval)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES, DEBUG=False, TESTING=False, PROPAGATE_EXCEPTIONS=False)
    app.debug = False
    hosts = frozenset(allowed_hosts(host, port))
    if move_to is not None:
        move_to = cleanup.check_quarantine_folder(live.get(), move_to)
    app.extensions[EXTENSION] = ServerState(
        live=live, hosts=hosts, origins=frozenset(f"http://{name}" for name in hosts), url=page_url(host, port),
        token=secrets.token_urlsafe(32), move_to=move_to,
    )
    app.register_blueprint(blueprint)
    return app


def start_server(
    index: Index,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    reload_interval: float = 1.0,
    move_to: str | os.PathLike | None = None,
) -> BaseWSGIServer:
    """Bind a threaded server for :func:`create_app` (``port=0`` picks a free port); call ``serve_forever()``."""
    server = make_server(host, port, lambda environ, start_response: [], threaded=True)
    server.app = create_app(index, host, server.server_port, reload_interval, move_to)
    return server


def serve(
    index_dir: str | os.PathLike,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    model: ModelLike | None = None,
    device: str | None = None,
    echo: Callable[[str], None] = print,
    move_to: str | os.PathLike | None = None,
) -> None:
    """Load an index and serve its page until interrupted (what ``dim-search serve`` runs).

    Args:
        index_dir: the index directory.
        host: the address to bind; anything but loopback is announced with a warning.
        port: the port to listen on.
        open_browser: open the page in the default web browser.
        model: a copy of the index's checkpoint if it moved (or the model itself).
        device: where to run the model for uploaded queries.
        echo: where messages go.
        move_to: the quarantine folder of the duplicates tab's apply (``None``: review only).
    """
    if not is_loopback(host):
        echo(
            f"WARNING: serving on {host}, not on 127.0.0.1: anyone who can reach this machine on port {port} "
            "can browse and download every indexed image. Use --host only on a network you trust."
        )
    index = Index.load(index_dir, model, device)
    server = start_server(index, host, port, move_to=move_to)
    url = page_url(host, server.server_port)
    echo(f"serving {len(index)} images of {index_dir} on {url} (Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
