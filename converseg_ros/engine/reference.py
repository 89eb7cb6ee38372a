"""The authors' per-query inference path (demo.py), kept as the yardstick for parity and speed.

For every prompt it letterboxes and re-encodes the image in SAM2, runs the whole PEFT-wrapped
Qwen2.5-VL forward (LM-head logits included, ``output_hidden_states=True``, batch of one) and decodes.
The engine must give the same masks; ``bench/engine_benchmark.py`` times both.
"""

from __future__ import annotations

import numpy as np
import torch

from converseg_ros.engine.postprocess import logits_to_image
from converseg_ros.imaging import as_rgb, letterbox
from converseg_ros.modeling.build import ConverSegNet
from converseg_ros.modeling.sam2_model import select_output


@torch.inference_mode()
def reference_logits(net: ConverSegNet, image: np.ndarray, prompt: str, decode_mode: str = "multimask") -> np.ndarray:
    """Full-resolution float32 logits for one prompt, computed the reference way (nothing cached)."""
    rgb = as_rgb(image)
    square, geometry = letterbox(rgb, net.image_size)
    features = net.encode_images(net.sam_transform([square]))
    device = next(net.adapter.parameters()).device
    inputs = {k: v.to(device) for k, v in net.inputs.batch([rgb], [prompt]).items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(net.adapter.txt_norm.weight.dtype)
    out = net.adapter.backbone(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
    sparse, dense = net.adapter.project(out.hidden_states[-1], inputs["input_ids"], inputs["attention_mask"])
    masks, iou = net.decode(features, sparse, dense)
    logits, _ = select_output(masks, iou, decode_mode)
    return logits_to_image(logits, geometry)[0].float().cpu().numpy()
