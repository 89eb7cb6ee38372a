"""What every VLM backend shares: the request, the usage it reports and the errors it raises.

A backend sends one request and returns the raw reply text with its token usage; it classifies failures as
``TransientError`` (retry: timeouts, connection errors, 429/5xx, with the server's ``Retry-After``),
``ReplyError`` (the reply is unusable: not JSON, wrong schema, content that fails the checks; retry) or
``FatalVLMError`` (configuration: bad key, unknown model; stop the run). API keys are read from the
environment by the backend and never appear in a message, a log line or a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from converseg_ros.dataengine.scrub import register_secret
from converseg_ros.errors import ConverSegError


class VLMError(ConverSegError):
    """A VLM call failed."""


class TransientError(VLMError):
    """A failure worth retrying (timeout, connection, HTTP 408/409/429/5xx)."""

    def __init__(self, message: str, kind: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind  # accounting key: timeout, connection, http_429, http_5xx ...
        self.retry_after = retry_after  # seconds the server asked us to wait


class ReplyError(VLMError):
    """The reply arrived but cannot be used (not JSON, wrong schema, boxes or indices out of range)."""

    def __init__(self, message: str, kind: str = "invalid_reply", usage: Usage | None = None):
        super().__init__(message)
        self.kind = kind
        self.usage = usage  # tokens the unusable reply still cost


class FatalVLMError(VLMError):
    """A configuration problem no retry fixes (missing/invalid key, unknown model, rejected request)."""


@dataclass
class VLMRequest:
    """One structured-output call: text + images in, a JSON object matching ``schema`` out."""

    name: str  # schema name (also the accounting key), e.g. "region_captions"
    text: str
    images: list[np.ndarray]  # RGB uint8, already downscaled for the VLM
    schema: dict  # JSON Schema of the reply (object at the top)
    system: str | None = None
    temperature: float = 0.7


@dataclass
class Usage:
    """Tokens one call consumed (failed attempts included)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class Completion:
    """Raw reply text of one call and what it cost."""

    text: str
    usage: Usage = field(default_factory=Usage)


class Backend(Protocol):
    """A VLM service or local model."""

    name: str
    box_format: str  # how this model gives boxes best: "pixel_xyxy" or "norm1000_yxyx"

    def complete(self, request: VLMRequest, timeout: float) -> Completion:
        """Send the request once; raise TransientError / ReplyError / FatalVLMError on failure."""
        ...


def api_key(names: list[str], required: bool) -> str | None:
    """The first non-empty environment variable of ``names`` (its value is never printed)."""
    for var in names:
        value = os.environ.get(var, "").strip()
        if value:
            register_secret(value)  # scrubbed from every message, reason and file from now on
            return value
    if required:
        raise FatalVLMError(f"no API key: set one of the environment variables {', '.join(names)}")
    return None


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 -> JPEG bytes (what goes over the wire to a VLM service)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VLMError("cannot JPEG-encode an image for the VLM")
    return buf.tobytes()


def schema_instructions(schema: dict) -> str:
    """The reply format spelled out in the prompt too (for servers that ignore structured output)."""
    import json

    return "Reply with ONLY a JSON object (no markdown) matching this JSON Schema:\n" + json.dumps(
        schema, separators=(",", ":")
    )


_LIMIT_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "pattern")


def wire_schema(schema):
    """The schema as sent to a strict structured-output API: length and range limits removed (strict modes
    reject them); the client still validates replies against the full schema."""
    if isinstance(schema, dict):
        return {k: wire_schema(v) for k, v in schema.items() if k not in _LIMIT_KEYWORDS}
    if isinstance(schema, list):
        return [wire_schema(v) for v in schema]
    return schema
