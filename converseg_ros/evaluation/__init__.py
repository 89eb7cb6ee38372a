"""Benchmarking ConverSeg-Net: gIoU / cIoU overall and per concept family, inputs, reports (no ROS)."""
