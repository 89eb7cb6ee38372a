"""``converseg-data review``: a local web page to Accept/Reject samples, like the paper's annotation tool.

The page shows the image with the target mask overlaid, the plain image, the prompt, its concept family
and the stage-5 verifier's verdict and reason. Keys: A accept, R reject, U undo the decision, J / arrow
right next, K / arrow left previous, N next undecided. Decisions go to each run's ``review.json`` at once
(atomic writes) and ``converseg-data export`` honours them. Served on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np

from converseg_ros.data.masks import read_mask
from converseg_ros.dataengine.overlays import review_overlay
from converseg_ros.dataengine.samples import Decisions, SampleRecord, collect_samples, expand_runs
from converseg_ros.imaging import decode_image

log = logging.getLogger(__name__)
MAX_BODY = 4096  # bytes of a decision request
MAX_PREVIEW_SIDE = 1280  # pictures are downscaled for the browser


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

    def _image(self, record: SampleRecord) -> np.ndarray:
        with self._image_lock:
            if record.image_id not in self._image_cache:
                if len(self._image_cache) > 32:
                    self._image_cache.clear()
                self._image_cache[record.image_id] = decode_image(record.image_path(self.inputs))
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


def page_html() -> bytes:
    return resources.files("converseg_ros.dataengine").joinpath("review_page.html").read_bytes()


class ReviewHandler(BaseHTTPRequestHandler):
    """GET / (page), /api/samples, /img/<id>/overlay|original; POST /api/decision {id, decision}."""

    server_version = "converseg-review"

    def __init__(self, *args, data: ReviewData, **kwargs):
        self.data = data
        super().__init__(*args, **kwargs)

    def log_message(self, fmt, *args) -> None:  # quiet: one debug line per request
        log.debug("review %s", fmt % args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlparse(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, page_html(), "text/html; charset=utf-8")
        elif path == "/api/samples":
            self._json(200, {"samples": self.data.listing(), "problems": self.data.problems})
        elif path.startswith("/img/"):
            parts = path.split("/")
            if len(parts) != 4 or parts[3] not in ("overlay", "original") or unquote(parts[2]) not in self.data.by_id:
                self._json(404, {"error": "no such picture"})
                return
            self._send(200, self.data.picture(unquote(parts[2]), parts[3]), "image/jpeg")
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if urlparse(self.path).path != "/api/decision":
            self._json(404, {"error": "not found"})
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


def make_server(runs: list[str | Path], host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The review server (not yet serving); ``port=0`` picks a free port (see ``server.server_address``)."""
    data = ReviewData(runs)
    server = ThreadingHTTPServer((host, port), partial(ReviewHandler, data=data))
    server.daemon_threads = True
    server.review_data = data
    return server
