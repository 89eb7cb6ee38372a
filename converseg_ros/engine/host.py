"""Host <-> device transfers without needless synchronisation: frames go up through a reusable pinned
buffer, results come down in one batch of asynchronous copies and a single wait."""

from __future__ import annotations

import numpy as np
import torch


class PinnedUpload:
    """Uploads uint8 frames through one page-locked buffer (CUDA); a plain copy elsewhere."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    def __call__(self, array: np.ndarray, device: torch.device) -> torch.Tensor:
        if device.type != "cuda":
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)
        if self._buffer is None or tuple(self._buffer.shape) != array.shape:
            self._buffer = torch.empty(array.shape, dtype=torch.uint8, pin_memory=True)
        elif self._copied is not None:
            self._copied.synchronize()  # the previous frame's copy has left the buffer
        self._buffer.numpy()[...] = array
        on_device = self._buffer.to(device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return on_device


def to_host(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Copy device tensors to numpy with one synchronisation (pinned, non-blocking copies on CUDA)."""
    if not any(t.is_cuda for t in tensors):
        return [t.detach().cpu().numpy() for t in tensors]
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for target, source in zip(host, tensors, strict=True):
        target.copy_(source, non_blocking=True)
    torch.cuda.current_stream().synchronize()
    return [t.numpy() for t in host]
