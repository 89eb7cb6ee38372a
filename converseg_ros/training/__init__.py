"""Fine-tuning ConverSeg-Net: config, data pipeline, loss, optimiser, loop, checkpoints, export (no ROS)."""
