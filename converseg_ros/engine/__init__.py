"""Inference engine: per-frame encodings shared by every query on that frame."""

from converseg_ros.engine.core import ConverSegEngine, FrameEncoding, SegmentationOutput

__all__ = ["ConverSegEngine", "FrameEncoding", "SegmentationOutput"]
