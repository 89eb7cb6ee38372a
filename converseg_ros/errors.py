"""Exceptions with messages meant for users: each names the file, key or value at fault."""

import errno
import os


class ConverSegError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(ConverSegError, ValueError):
    """An image that cannot be decoded or is outside the supported sizes and formats."""


class QueryError(ConverSegError, ValueError):
    """A query (prompt) that is empty or too long."""


class CheckpointError(ConverSegError):
    """A missing, corrupt or mismatched checkpoint file (the message names file and key)."""


class OfflineError(ConverSegError):
    """A file must be downloaded but downloads are disabled or the hub is unreachable."""


class PresetError(ConverSegError):
    """An unknown or malformed model preset."""


class ModelConfigError(ConverSegError, ValueError):
    """A model config (SAM2 YAML) that cannot be read or that names code outside the model package."""


class DiskFullError(ConverSegError, OSError):
    """A write failed for lack of space (ENOSPC/EDQUOT); the message names the folder. What was completed
    before stays intact: free space and run again (``--resume`` for training). ``errno`` is ENOSPC, so code
    that handles OSError by errno keeps working."""

    def __init__(self, folder: str | os.PathLike, detail: str = "") -> None:
        super().__init__(errno.ENOSPC, f"no space left on {folder}{detail}")
        self.folder = folder

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self):  # picklable (worker processes)
        return (type(self), (self.folder, str(self.strerror)[len(f"no space left on {self.folder}"):]))
