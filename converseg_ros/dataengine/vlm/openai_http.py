"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, Ollama, LM Studio ...) over httpx.

Each call sends ``response_format = {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``
and the images as base64 JPEG data URLs. The key (if any) comes from an environment variable and goes only
into the ``Authorization`` header; local servers usually need none.
"""

from __future__ import annotations

import base64
import email.utils
import time

import httpx

from converseg_ros.dataengine.scrub import scrub_text, scrub_url
from converseg_ros.dataengine.vlm.base import (
    Completion,
    FatalVLMError,
    ReplyError,
    TransientError,
    Usage,
    VLMRequest,
    api_key,
    encode_jpeg,
    schema_instructions,
    wire_schema,
)

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def http_failure(status: int, body: str, retry_after: str | None) -> Exception:
    """Map an HTTP error status to the engine's error classes."""
    detail = scrub_text(" ".join(body.split()))[:200]
    if status in RETRY_STATUSES:
        kind = "http_429" if status == 429 else ("http_5xx" if status >= 500 else f"http_{status}")
        return TransientError(f"HTTP {status}: {detail}", kind, parse_retry_after(retry_after))
    return FatalVLMError(f"HTTP {status} from the VLM endpoint (check model name, key, URL): {detail}")


class OpenAIBackend:
    """POST {base_url}/chat/completions with structured output."""

    name = "openai"
    box_format = "pixel_xyxy"

    def __init__(
        self, base_url: str, model: str, key_env: str = DEFAULT_KEY_ENV, max_tokens: int = 4096,
        key_required: bool = False,
    ):
        self.base_url = base_url.rstrip("/")  # may carry credentials: never printed (see __repr__)
        self.model = model
        self.max_tokens = max_tokens
        key = api_key([key_env], required=key_required)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(headers=headers, follow_redirects=False)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(base_url={scrub_url(self.base_url)!r}, model={self.model!r})"

    def payload(self, request: VLMRequest) -> dict:
        content: list[dict] = [{"type": "text", "text": request.text + "\n\n" + schema_instructions(request.schema)}]
        for rgb in request.images:
            data = base64.b64encode(encode_jpeg(rgb)).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}})
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": content})
        return {
            "model": self.model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": request.name, "schema": wire_schema(request.schema), "strict": True},
            },
        }

    def complete(self, request: VLMRequest, timeout: float) -> Completion:
        try:
            response = self._http.post(f"{self.base_url}/chat/completions", json=self.payload(request),
                                       timeout=timeout)
        except httpx.TimeoutException as exc:
            raise TransientError(f"no reply within {timeout:g} s ({type(exc).__name__})", "timeout") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {scrub_text(str(exc))}",
                                 "connection") from exc
        if response.status_code != 200:
            raise http_failure(response.status_code, response.text, response.headers.get("retry-after"))
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ReplyError(f"not a chat-completions response: {scrub_text(response.text)[:160]!r}",
                             "bad_response") from exc
        usage = body.get("usage") or {}
        used = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        if message.get("refusal"):
            raise ReplyError(f"the model refused: {str(message['refusal'])[:160]}", "refusal", used)
        if choice.get("finish_reason") == "length":
            raise ReplyError("reply cut off at max_tokens", "truncated", used)
        text = message.get("content")
        if not isinstance(text, str):
            raise ReplyError("reply has no text content", "bad_response", used)
        return Completion(text, used)
