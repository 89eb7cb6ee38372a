"""VLM backends (OpenAI-compatible HTTP, Gemini, local transformers) behind one validating, retrying client."""

from __future__ import annotations

from converseg_ros.dataengine.vlm.accounting import Accounting, Prices
from converseg_ros.dataengine.vlm.base import (
    Backend,
    FatalVLMError,
    ReplyError,
    TransientError,
    VLMError,
    VLMRequest,
)
from converseg_ros.dataengine.vlm.client import Budget, BudgetExceeded, Pace, RetryPolicy, VLMClient

BACKENDS = ("openai", "gemini", "transformers")

__all__ = [
    "BACKENDS", "Accounting", "Backend", "Budget", "BudgetExceeded", "FatalVLMError", "Pace", "Prices",
    "ReplyError", "RetryPolicy", "TransientError", "VLMClient", "VLMError", "VLMRequest", "make_backend",
]


def make_backend(
    kind: str, model: str, base_url: str | None = None, key_env: str | None = None, timeout: float = 120.0,
    max_tokens: int = 4096, device: str = "auto", precision: str = "auto", allow_download: bool = False,
) -> Backend:
    """The backend ``--vlm`` names."""
    if kind == "openai":
        from converseg_ros.dataengine.vlm.openai_http import DEFAULT_KEY_ENV, OpenAIBackend

        if not base_url:
            raise FatalVLMError("--vlm openai needs --base-url (e.g. http://127.0.0.1:8000/v1 for vLLM)")
        return OpenAIBackend(base_url, model, key_env or DEFAULT_KEY_ENV, max_tokens)
    if kind == "gemini":
        from converseg_ros.dataengine.vlm.gemini import GeminiBackend

        return GeminiBackend(model, base_url, timeout, max_tokens)
    if kind == "transformers":
        from converseg_ros.dataengine.vlm.local import TransformersBackend

        return TransformersBackend.from_preset_or_path(model, device, precision, allow_download, max_tokens)
    raise FatalVLMError(f"unknown VLM backend {kind!r}; choose one of {BACKENDS}")
