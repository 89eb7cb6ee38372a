"""Gemini through ``google-genai`` (the paper used Gemini-2.5-Flash), with ``response_schema``.

The key comes from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``. The SDK's own retries are switched off so the
engine's policy (backoff, ``Retry-After``) applies; ``--base-url`` points the SDK elsewhere (a proxy, or
the tests' local server).
"""

from __future__ import annotations

from converseg_ros.dataengine.scrub import scrub_text
from converseg_ros.dataengine.vlm.base import (
    Completion,
    ReplyError,
    TransientError,
    Usage,
    VLMRequest,
    api_key,
    encode_jpeg,
    schema_instructions,
)
from converseg_ros.dataengine.vlm.openai_http import http_failure

KEY_ENVS = ["GEMINI_API_KEY", "GOOGLE_API_KEY"]
# Gemini's list price for 2.5 Flash (USD per 1M tokens; the reference engine's defaults).
DEFAULT_PRICES = (0.30, 2.50)


def gemini_schema(schema: dict) -> dict:
    """The JSON Schema without keywords Gemini's ``response_schema`` does not take (validation keeps them)."""
    if isinstance(schema, dict):
        return {k: gemini_schema(v) for k, v in schema.items() if k not in ("additionalProperties", "$schema")}
    if isinstance(schema, list):
        return [gemini_schema(v) for v in schema]
    return schema


class GeminiBackend:
    """``client.models.generate_content`` with JSON output constrained by ``response_schema``."""

    name = "gemini"
    box_format = "norm1000_yxyx"  # Gemini is trained to give box_2d as [ymin, xmin, ymax, xmax] in 0..1000

    def __init__(self, model: str, base_url: str | None = None, timeout: float = 120.0, max_tokens: int = 8192):
        from google import genai
        from google.genai import types

        self.model = model
        self.max_tokens = max_tokens
        self._types = types
        options = types.HttpOptions(
            base_url=base_url, timeout=int(timeout * 1000), retry_options=types.HttpRetryOptions(attempts=1)
        )
        self._client = genai.Client(api_key=api_key(KEY_ENVS, required=True), http_options=options)

    def __repr__(self) -> str:  # never shows the key
        return f"GeminiBackend(model={self.model!r})"

    def complete(self, request: VLMRequest, timeout: float) -> Completion:
        import httpx
        from google.genai import errors

        types = self._types
        parts = [types.Part.from_bytes(data=encode_jpeg(rgb), mime_type="image/jpeg") for rgb in request.images]
        parts.append(types.Part.from_text(text=request.text + "\n\n" + schema_instructions(request.schema)))
        config = types.GenerateContentConfig(
            system_instruction=request.system,
            temperature=request.temperature,
            max_output_tokens=self.max_tokens,
            response_mime_type="application/json",
            response_schema=gemini_schema(request.schema),
            http_options=types.HttpOptions(timeout=int(timeout * 1000)),
        )
        try:
            response = self._client.models.generate_content(model=self.model, contents=parts, config=config)
        except errors.APIError as exc:
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            raise http_failure(int(exc.code or 0), str(exc.message or exc), headers.get("retry-after")) from exc
        except httpx.TimeoutException as exc:
            raise TransientError(f"no reply within {timeout:g} s", "timeout") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {scrub_text(str(exc))}",
                                 "connection") from exc
        meta = response.usage_metadata
        used = Usage(
            int(getattr(meta, "prompt_token_count", 0) or 0),
            int(getattr(meta, "candidates_token_count", 0) or 0) + int(getattr(meta, "thoughts_token_count", 0) or 0),
        )
        candidate = response.candidates[0] if response.candidates else None
        reason = str(getattr(candidate, "finish_reason", "") or "")
        if candidate is None or "SAFETY" in reason or "PROHIBITED" in reason:
            raise ReplyError(f"no usable candidate (finish reason {reason or 'none'})", "blocked", used)
        if "MAX_TOKENS" in reason:
            raise ReplyError("reply cut off at max_output_tokens", "truncated", used)
        text = response.text
        if not text:
            raise ReplyError("reply has no text", "bad_response", used)
        return Completion(text, used)
