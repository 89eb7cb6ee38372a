"""Fine-tuning ConverSeg-Net (no ROS).

config.py (TrainConfig, YAML + overrides), data.py (samples -> model inputs, step-indexed batches),
augment.py, model.py (the trainable model), losses.py, schedule.py (AdamW + warm-up/cosine), loop.py (the
Trainer), distributed.py (several processes under torchrun), validation.py, checkpoint.py (atomic training
checkpoints), export.py (a checkpoint as a release), promote.py (gated promotion of a release), cli.py
(``converseg-train``).
"""
