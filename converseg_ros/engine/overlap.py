"""Run a frame's two encoders at once: the SAM2 image encoder on a side thread (and, on CUDA, its own
stream) while the Qwen prefix runs on the calling thread.

At batch 1 neither encoder fills a GPU, so on CUDA they overlap. On a CPU both compete for the same cores
(measured slower), so ``auto`` runs them one after the other there; ``on`` forces the threaded path on
any device (tests use it to check that the overlapped path computes exactly what the sequential one does).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

import torch

OVERLAP_MODES = ("auto", "on", "off")
A = TypeVar("A")
B = TypeVar("B")


class EncoderOverlap:
    """Runs ``side()`` concurrently with ``main()`` when enabled; returns both results in order."""

    def __init__(self, device: torch.device, mode: str = "auto"):
        if mode not in OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {mode!r}")
        self.enabled = mode == "on" or (mode == "auto" and device.type == "cuda")
        self._stream = torch.cuda.Stream(device) if self.enabled and device.type == "cuda" else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sam2-encode") if self.enabled else None

    def run(self, side: Callable[[], A], main: Callable[[], B]) -> tuple[A, B]:
        if self._pool is None:
            return side(), main()
        future = self._pool.submit(self._on_side_stream, side)
        try:
            main_result = main()
        finally:
            side_result = future.result()  # also waits when main() raised: no work left running
        if self._stream is not None:  # later kernels on the main stream see the side stream's results
            torch.cuda.current_stream(self._stream.device).wait_stream(self._stream)
        return side_result, main_result

    def _on_side_stream(self, fn: Callable[[], A]) -> A:
        # inference mode and the current stream are thread-local: set both in this thread
        stream = torch.cuda.stream(self._stream) if self._stream is not None else nullcontext()
        with torch.inference_mode(), stream:
            return fn()

    def adopt(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mark a side-stream tensor as used by the main stream, so its memory is not reused too early."""
        if self._stream is not None and tensor.is_cuda:
            tensor.record_stream(torch.cuda.current_stream(tensor.device))
        return tensor

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
