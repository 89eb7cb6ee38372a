"""Full-size ConverSeg-Net architectures with random weights, for benchmarks (no download).

Qwen2.5-VL-3B in the hub's flat config layout (tokenizer and processor from the tiny test model: the real
vocabulary is not downloadable here, so prompt token counts differ slightly; the image token count and
every tensor shape are the real ones) and SAM2 Hiera-L.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def write_qwen_dir(qwen_dir: Path) -> Path:
    """A Qwen2.5-VL-3B directory (config, tokenizer, processor; no weights) at ``qwen_dir``."""
    from transformers import AutoTokenizer

    from converseg_ros.modeling.presets import tiny_root
    from converseg_ros.modeling.qwen_config import QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION, hub_flat_config
    from converseg_ros.modeling.tiny import SPECIAL_TOKENS, build_tiny_files

    shutil.copytree(build_tiny_files(tiny_root()) / "qwen", qwen_dir, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    flat = hub_flat_config(QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION, 151936, ids)  # the hub's layout
    (qwen_dir / "config.json").write_text(json.dumps(flat, indent=2))
    return qwen_dir


def random_adapter(qwen_dir: Path, dtype: torch.dtype, device: str = "cpu", attention: str = "sdpa"):
    """LanguageAdapter around a random-weight Qwen2.5-VL-3B, materialised straight in ``dtype`` on
    ``device`` (no slow fp32 init), with a tied LM head as in the release."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from converseg_ros.modeling.language_adapter import LanguageAdapter

    config = AutoConfig.from_pretrained(qwen_dir)
    config._attn_implementation = attention
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    with init_empty_weights():
        adapter = LanguageAdapter(Qwen2_5_VLForConditionalGeneration(config), tokenizer, 256)
    generator = torch.Generator(device).manual_seed(0)
    for module in adapter.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            value = torch.empty(param.shape, dtype=dtype, device=device)
            if param.ndim >= 2:
                value.normal_(0.0, 0.02, generator=generator)
            else:
                value.fill_(1.0 if "norm" in name or name in ("scale", "temp", "weight") else 0.0)
            setattr(module, name, torch.nn.Parameter(value, requires_grad=False))
    adapter.backbone.base_model.model.lm_head.weight = adapter.qwen.language_model.embed_tokens.weight
    return adapter.to(device)


def random_sam2(device: str = "cpu"):
    """SAM2 Hiera-L with its own random initialisation (fp32, as the engine runs it)."""
    from converseg_ros.modeling.sam2_model import build_sam2_model

    return build_sam2_model("sam2_hiera_l.yaml").float().to(device)
