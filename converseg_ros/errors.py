"""Exceptions with messages meant for users: each names the file, key or value at fault."""


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
