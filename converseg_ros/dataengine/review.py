"""``converseg-data review``: a local web page to Accept/Reject samples, like the paper's annotation tool.

The page shows the image with the target mask overlaid, the plain image, the prompt, its concept family
and the stage-5 verifier's verdict and reason. Keys: A accept, R reject, U undo the decision, J / arrow
right next, K / arrow left previous, N next undecided. Decisions go to each run's ``review.json`` at once
(atomic writes) and ``converseg-data export`` honours them.

Only its user can write to it: a per-run secret token (in the URL printed at start, as Jupyter does) is
required in the ``X-Review-Token`` header of every API and picture request; the ``Host`` header must name the
server itself (no DNS rebinding) and an ``Origin`` / ``Sec-Fetch-Site`` header, when the browser sends one,
must be the page's own; decisions must be ``application/json``. Every answer says ``X-Frame-Options: DENY``,
a strict CSP (scripts and styles only from this server) and ``X-Content-Type-Options: nosniff``. Pictures
are read only from inside the run folder (and, for image-folder inputs, the folders the run was given).
Served on 127.0.0.1; another address only with ``allow_remote`` (the CLI's ``--allow-remote``) and a warning.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import cv2
import numpy as np

from converseg_ros.data.masks import read_mask
from converseg_ros.dataengine.overlays import review_overlay
from converseg_ros.dataengine.runfiles import RunFileError
from converseg_ros.dataengine.samples import Decisions, SampleRecord, collect_samples, expand_runs
from converseg_ros.errors import ConverSegError
from converseg_ros.imaging import decode_image

log = logging.getLogger(__name__)
MAX_BODY = 4096  # bytes of a decision request
MAX_PREVIEW_SIDE = 1280  # pictures are downscaled for the browser
TOKEN_HEADER = "X-Review-Token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"/review.js": ("review_page.js", "text/javascript; charset=utf-8"),
          "/review.css": ("review_page.css", "text/css; charset=utf-8")}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ReviewData:
    """The samples of the runs being reviewed and their decisions."""

    def __init__(self, runs: list[str | Path]):
        self.stores = expand_runs(runs)
        self.records, self.inputs, self.problems = collect_samples(self.stores)
        self.by_id: dict[str, SampleRecord] = {r.id: r for r in self.records}
        self.decisions = Decisions(self.stores)
        self._image_lock = threading.Lock()
        self._image_cache: dict[str, np.ndarray] = {}

    def listing(self) -> list[dict]:
        return [
            {
                "id": r.id, "image_id": r.image_id, "prompt": r.data["prompt"], "family": r.data["family"],
                "subtype": r.data["subtype"], "verdict": r.data["verdict"], "reason": r.data["reason"],
                "negative": r.data["negative"], "decision": self.decisions.get(r),
            }
            for r in self.records
        ]

    def allowed_roots(self, record: SampleRecord) -> list[Path]:
        """Where this record's image may live: its run folder and the image folders that run was given."""
        info = record.store.run_info() or {}
        return [record.store.root.resolve(), *(Path(p).resolve() for p in info.get("config", {}).get("images", []))]

    def _image(self, record: SampleRecord) -> np.ndarray:
        path = record.image_path(self.inputs).resolve()
        if not any(path.is_relative_to(root) for root in self.allowed_roots(record)):
            raise RunFileError(record.store.root / "inputs.json", f"image of {record.image_id} lies outside the run")
        with self._image_lock:
            if record.image_id not in self._image_cache:
                if len(self._image_cache) > 32:
                    self._image_cache.clear()
                self._image_cache[record.image_id] = decode_image(path)
            return self._image_cache[record.image_id]

    def picture(self, sample_id: str, kind: str) -> bytes:
        record = self.by_id[sample_id]
        rgb = self._image(record)
        if kind == "overlay":
            rgb = review_overlay(rgb, read_mask(record.mask_path))
        side = max(rgb.shape[:2])
        if side > MAX_PREVIEW_SIDE:
            f = MAX_PREVIEW_SIDE / side
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return buf.tobytes()


class ReviewHandler(BaseHTTPRequestHandler):
    """GET / (page), /review.js, /review.css, /api/samples, /img/<id>/overlay|original; POST /api/decision."""

    server_version = "converseg-review"

    def __init__(self, *args, data: ReviewData, **kwargs):
        self.data = data
        super().__init__(*args, **kwargs)

    def log_message(self, fmt, *args) -> None:  # quiet: one debug line per request, never the token
        log.debug("review %s", re.sub(r"token=[^\s&\"]*", "token=***", fmt % args))

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    # checks ---------------------------------------------------------------------------------------------
    def _refusal(self, needs_token: bool, token: str | None) -> tuple[int, str] | None:
        """Why this request is refused (status, reason), or None."""
        host = self.headers.get("Host", "")
        if host.lower() not in self.server.allowed_hosts:
            return 403, "unknown Host (this server answers only to its own address)"
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return 403, "cross-origin request refused"
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return 403, "cross-site request refused"
        if needs_token and not hmac.compare_digest((token or "").encode(), self.server.token.encode()):
            return 401, "missing or wrong token: open the URL printed by converseg-data review"
        return None

    def _guard(self, needs_token: bool, token: str | None = None) -> bool:
        refusal = self._refusal(needs_token, token if token is not None else self.headers.get(TOKEN_HEADER))
        if refusal:
            self._json(refusal[0], {"error": refusal[1]})
            return False
        return True

    # requests -------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            if self._guard(True, (parse_qs(url.query).get("token") or [""])[0]):
                self._send(200, page_file("review_page.html"), "text/html; charset=utf-8")
        elif path in STATIC:
            if self._guard(False):
                self._send(200, page_file(STATIC[path][0]), STATIC[path][1])
        elif not self._guard(True):
            return
        elif path == "/api/samples":
            self._json(200, {"samples": self.data.listing(), "problems": self.data.problems})
        elif path.startswith("/img/"):
            parts = path.split("/")
            if len(parts) != 4 or parts[3] not in ("overlay", "original") or unquote(parts[2]) not in self.data.by_id:
                self._json(404, {"error": "no such picture"})
                return
            try:
                body = self.data.picture(unquote(parts[2]), parts[3])
            except ConverSegError as exc:
                self._json(404, {"error": str(exc)})
                return
            self._send(200, body, "image/jpeg")
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._guard(True):
            return
        if urlparse(self.path).path != "/api/decision":
            self._json(404, {"error": "not found"})
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._json(415, {"error": "decisions must be sent as application/json"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._json(413, {"error": "body missing or too large"})
            return
        try:
            body = json.loads(self.rfile.read(length))
            record = self.data.by_id[body["id"]]
            self.data.decisions.set(record, body.get("decision"))
        except (ValueError, KeyError, TypeError) as exc:
            self._json(400, {"error": f"bad decision: {exc}"})
            return
        self._json(200, {"id": record.id, "decision": self.data.decisions.get(record)})


def page_file(name: str) -> bytes:
    return resources.files("converseg_ros.dataengine").joinpath(name).read_bytes()


def make_server(runs: list[str | Path], host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False,
                token: str | None = None) -> ThreadingHTTPServer:
    """The review server (not yet serving); ``port=0`` picks a free port. ``server.url`` is the address to
    open (with the token); ``server.token`` the token."""
    if not is_loopback(host) and not allow_remote:
        raise ConverSegError(f"--host {host} would let other machines reach the review page; add --allow-remote "
                             "if that is what you want (anyone who gets the printed URL can then change decisions)")
    data = ReviewData(runs)
    server = ThreadingHTTPServer((host, port), partial(ReviewHandler, data=data))
    server.daemon_threads = True
    server.review_data = data
    server.token = token or secrets.token_urlsafe(32)
    bound = server.server_address[1]
    names = {"127.0.0.1", "localhost", "[::1]"} | ({host.lower()} if allow_remote else set())
    server.allowed_hosts = {f"{n}:{bound}" for n in names} | ({host.lower()} if allow_remote else set())
    shown = host if ":" not in host else f"[{host}]"
    server.url = f"http://{shown}:{bound}/?token={server.token}"
    return server
