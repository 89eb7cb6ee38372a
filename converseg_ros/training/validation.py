"""Periodic validation: IoU of decoder output 0 (trained) and of the multimask pick, plus panel PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from converseg_ros.errors import QueryError
from converseg_ros.evaluation.panels import panel_row, stack_rows, write_png
from converseg_ros.modeling.build import ConverSegNet
from converseg_ros.modeling.sam2_model import select_output
from converseg_ros.training.data import Item, TrainDataset
from converseg_ros.training.losses import batch_iou
from converseg_ros.training.model import autocast


def forward_items(net: ConverSegNet, items: list[Item], amp: torch.dtype | None) -> tuple[torch.Tensor, ...]:
    """All four decoder outputs (logits [B, 4, s, s], IoU predictions [B, 4]) for prepared items."""
    device = next(net.sam.parameters()).device
    with torch.no_grad():
        features = net.encode_images(net.sam_transform([it.sam_image for it in items]))
    batch = {
        k: v.to(device)
        for k, v in net.inputs.batch([it.qwen_image for it in items], [it.prompt for it in items]).items()
    }
    with autocast(device, amp):
        sparse, dense = net.adapter(**batch)
        return net.decode(features, sparse, dense)


def _usable(net: ConverSegNet, prompt: str) -> bool:
    try:
        net.inputs.clean_prompt(prompt)
    except QueryError:
        return False
    return True


@torch.no_grad()
def validate(
    net: ConverSegNet,
    dataset: TrainDataset,
    count: int,
    amp: torch.dtype | None,
    panel_path: Path | None,
    panel_rows: int,
) -> dict[str, float]:
    """Mean IoU over the first ``count`` items (``first`` = output 0, ``multimask`` = argmax of 1..3);
    writes a panel of the first ``panel_rows`` items (output 0) to ``panel_path``.

    Items run one at a time, as at inference: in a batch, shorter prompts get padded sparse tokens that
    the decoder attends to, so batched scores would depend on the batch's composition."""
    was_training = net.training
    net.eval()
    ious = {"first": [], "multimask": []}
    rows: list[np.ndarray] = []
    failed = 0
    try:
        for index in range(min(count, len(dataset))):
            item = dataset[index]
            if item.error is not None or not _usable(net, item.prompt):
                failed += 1
                continue
            masks, iou = forward_items(net, [item], amp)
            target = torch.from_numpy(item.target[None]).to(masks.device)
            for mode in ious:
                logits, _ = select_output(masks.float(), iou.float(), mode)
                ious[mode].append(float(batch_iou(logits, target)[0]))
            if len(rows) < panel_rows:
                pred = (masks[0, 0] > 0).cpu().numpy()
                rows.append(panel_row(item.sam_image, item.target, pred, item.prompt, ious["first"][-1]))
    finally:
        net.train(was_training)
        net.sam.image_encoder.eval()
    if panel_path is not None and rows:
        write_png(panel_path, stack_rows(rows))
    result = {f"iou_{mode}": float(np.mean(v)) for mode, v in ious.items() if v}
    result["count"], result["failed"] = len(ious["first"]), failed
    return result
