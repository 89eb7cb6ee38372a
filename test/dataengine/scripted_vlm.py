"""A scripted stand-in for a paid VLM API: a real HTTP server on 127.0.0.1 speaking the OpenAI
chat-completions protocol (POST /v1/chat/completions) and Gemini's generateContent REST protocol.

It answers each data-engine stage (recognised from the JSON schema the request states) with a plausible,
deterministic reply computed from the request itself — boxes from the sizes of the images sent, prompts
from the numbered regions listed — so interrupted and uninterrupted runs get the same answers. Faults are
scripted per stage and consumed in order: ``429:<s>`` / ``503:<s>`` (with Retry-After), ``500``,
``nonjson``, ``wrongschema``, ``outside`` (a box outside the image), ``badindex`` (a region index out of
range), ``slow:<s>`` (sleep, then a valid reply), ``401``, ``500echo`` (a 500 whose body echoes the request's
``Authorization`` header, as some proxies do); stage ``*`` applies to any stage.

Run alone for demos:  python test/dataengine/scripted_vlm.py --port 8799 --faults '{"region_captions": ["429:1"]}'
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import threading
import time
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

STAGE_KEYS = {  # the top-level properties of each stage's schema
    frozenset({"reasoning", "regions"}): "region_captions",
    frozenset({"output", "description"}): "mask_check",
    frozenset({"choice"}): "mask_choice",
    frozenset({"prompts"}): "concept_prompts",
    frozenset({"accept", "reason"}): "prompt_check",
}


def _image_size(data: bytes) -> tuple[int, int]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (img.shape[1], img.shape[0]) if img is not None else (0, 0)


class ScriptedVLM:
    """Start with ``start()`` (returns the OpenAI base URL); ``requests`` records what arrived."""

    def __init__(self, faults: dict[str, list[str]] | None = None, reject_labels: tuple[str, ...] = ("bottom",),
                 delay: float = 0.0):
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.delay = delay  # seconds every reply takes (a remote service's latency)
        self.reject_labels = reject_labels
        self.requests: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0
        self.counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # lifecycle --------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                owner._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.openai_url

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def gemini_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # protocol ---------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"{}")
        gemini = ":generateContent" in h.path
        text, images, schema = self._parse_gemini(body) if gemini else self._parse_openai(body)
        stage = STAGE_KEYS.get(frozenset((schema or {}).get("properties", {})), "unknown")
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.counts[stage] += 1
            fault = self._next_fault(stage)
            self.requests.append({
                "stage": stage, "protocol": "gemini" if gemini else "openai", "path": h.path, "fault": fault,
                "auth": h.headers.get("Authorization") or h.headers.get("x-goog-api-key"),
                "images": [_image_size(i) for i in images], "time": time.time(), "body": body,
            })
        try:
            self._respond(h, gemini, stage, fault, text, images, schema)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
        finally:
            with self._lock:
                self.inflight -= 1

    @staticmethod
    def _parse_openai(body: dict):
        content = body["messages"][-1]["content"]
        text = "\n".join(c["text"] for c in content if c["type"] == "text")
        images = [base64.b64decode(c["image_url"]["url"].split(",", 1)[1]) for c in content if c["type"] == "image_url"]
        return text, images, body["response_format"]["json_schema"]["schema"]

    @staticmethod
    def _parse_gemini(body: dict):
        parts = body["contents"][0]["parts"]
        text = "\n".join(p["text"] for p in parts if "text" in p)
        images = []
        for p in parts:
            inline = p.get("inlineData") or p.get("inline_data")
            if inline:
                data = inline["data"]  # the SDK sends URL-safe base64 without padding
                images.append(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        config = body.get("generationConfig") or body.get("generation_config") or {}
        schema = config.get("responseSchema") or config.get("response_schema")
        return text, images, _lower_types(schema)

    def _next_fault(self, stage: str) -> str | None:
        for key in (stage, "*"):
            if self.faults.get(key):
                return self.faults[key].pop(0)
        return None

    def _respond(self, h, gemini: bool, stage: str, fault: str | None, text: str, images, schema) -> None:
        if fault == "500echo":
            auth = h.headers.get("Authorization") or ""
            err = json.dumps({"error": {"message": f"upstream failed for request with Authorization: {auth}",
                                        "request": {"headers": {"authorization": auth}}}})
            h.send_response(500)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(err)))
            h.end_headers()
            h.wfile.write(err.encode())
            return
        if fault and fault.split(":")[0] in ("429", "503", "500", "401"):
            code, _, wait = fault.partition(":")
            status = {"429": "RESOURCE_EXHAUSTED", "503": "UNAVAILABLE", "500": "INTERNAL", "401": "UNAUTHENTICATED"}
            err = json.dumps({"error": {"code": int(code), "message": f"scripted {code}", "status": status[code]}})
            h.send_response(int(code))
            if wait:
                h.send_header("Retry-After", wait)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(err)))
            h.end_headers()
            h.wfile.write(err.encode())
            return
        if fault and fault.startswith("slow:"):
            time.sleep(float(fault.split(":")[1]))
        elif self.delay:
            time.sleep(self.delay)
        reply = self._reply(stage, fault, text, images, schema, "norm1000_yxyx" if gemini else "pixel_xyxy")
        usage_in = 100 + len(text) // 4 + 258 * len(images)
        usage_out = len(reply) // 4 + 1
        if gemini:
            payload = {
                "candidates": [{"content": {"parts": [{"text": reply}], "role": "model"}, "finishReason": "STOP",
                                "index": 0}],
                "usageMetadata": {"promptTokenCount": usage_in, "candidatesTokenCount": usage_out,
                                  "totalTokenCount": usage_in + usage_out},
                "modelVersion": "scripted",
            }
        else:
            payload = {
                "id": "chatcmpl-scripted", "object": "chat.completion", "model": "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                          "total_tokens": usage_in + usage_out},
            }
        data = json.dumps(payload).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # replies ----------------------------------------------------------------------------------------
    def _reply(self, stage: str, fault: str | None, text: str, images, schema, box_format: str) -> str:
        if fault == "nonjson":
            return "Sure! Here are the regions you asked for: a cup, a table."
        if fault == "wrongschema":
            return json.dumps({"answer": "yes"})
        if stage == "region_captions":
            w, h = _image_size(images[0])
            rel = [(0.05, 0.1, 0.45, 0.9), (0.5, 0.2, 0.95, 0.7), (0.3, 0.55, 0.7, 0.95)]
            labels = ["object on the left", "object on the right", "object at the bottom"]
            if fault == "outside":
                rel[1] = (0.5, 0.2, 1.4, 0.7)
            regions = []
            for label, (x0, y0, x1, y1) in zip(labels, rel, strict=True):
                if box_format == "norm1000_yxyx":
                    box = [round(y0 * 1000), round(x0 * 1000), round(y1 * 1000), round(x1 * 1000)]
                else:
                    box = [round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)]
                regions.append({"label": label, "box": box})
            return json.dumps({"reasoning": "a scene with three objects", "regions": regions})
        if stage == "mask_check":
            label = re.search(r'text: "([^"]*)"', text)
            ok = not any(word in (label.group(1) if label else "") for word in self.reject_labels)
            return json.dumps({"output": ok, "description": f"the {label.group(1) if label else 'region'}"})
        if stage == "mask_choice":
            return json.dumps({"choice": "refined"})
        if stage == "concept_prompts":
            n = len(re.findall(r"^\d+: ", text.split("Numbered regions:")[-1], re.MULTILINE))
            subtypes = schema["properties"]["prompts"]["items"]["properties"]["subtype"]["enum"]
            if n < 2:
                return json.dumps({"prompts": []})
            prompts = [
                {"prompt": f"Segment the {subtypes[0].replace('_', ' ')} target", "subtype": subtypes[0],
                 "candidates": [0, 1], "satisfying": [0]},
                {"prompt": f"Identify what fits {subtypes[1].replace('_', ' ')}", "subtype": subtypes[1],
                 "candidates": [0, 1], "satisfying": [1]},
                {"prompt": "Segment everything listed", "subtype": subtypes[0], "candidates": [0, 1],
                 "satisfying": [0, 1]},  # breaks the strict-subset rule: the engine must drop it
            ]
            if "hard negative" in text:  # asked for one: a prompt whose true target is nothing
                prompts[2] = {"prompt": "Segment the purple giraffe", "subtype": subtypes[-1], "candidates": [0],
                              "satisfying": []}
            if fault == "badindex":
                prompts[0]["satisfying"] = [n + 3]
            return json.dumps({"prompts": prompts})
        if stage == "prompt_check":
            expression = re.search(r'Expression: "([^"]*)"', text)
            accept = zlib.crc32((expression.group(1) if expression else "").encode()) % 3 != 0
            if "NO mask is present" in text:  # a hard negative: nothing in these images is a purple giraffe
                accept = True
            return json.dumps({"accept": accept, "reason": "scripted verdict"})
        return json.dumps({})


def _lower_types(schema):
    """Gemini schemas spell types in capitals; make them JSON-Schema-like again."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--faults", default="{}", help="JSON: {stage: [fault, ...]}")
    p.add_argument("--delay", type=float, default=0.0, help="seconds every reply takes")
    args = p.parse_args()
    vlm = ScriptedVLM(json.loads(args.faults), delay=args.delay)
    vlm.start(args.port)
    print(f"scripted VLM: OpenAI base URL {vlm.openai_url}  Gemini base URL {vlm.gemini_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        vlm.stop()


if __name__ == "__main__":
    main()
