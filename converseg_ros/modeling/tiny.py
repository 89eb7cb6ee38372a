"""Tiny random-weight ConverSeg-Net files for tests and pipeline checks (UNTRAINED: masks are noise).

``build_tiny_files(root)`` writes, with a fixed seed:

* ``qwen/``: a Qwen2.5-VL ``config.json`` in the hub's flat layout and key set, a byte-level BPE
  tokenizer with Qwen's special tokens in their real order, the chat template and the image/video
  processor configs — loadable offline by ``from_pretrained`` exactly like the real
  ``Qwen/Qwen2.5-VL-3B-Instruct`` directory (no weights: like the release, the weights live in the plm file);
* ``sam2_tiny.yaml``: a shrunk SAM2 (Hiera trunk, 128-px input, 32-d decoder);
* a release in the authors' format: ``ConverSeg-Net_sam2_0.torch.torch``,
  ``ConverSeg-Net_plm_0.torch`` and ``lora_plm_adapter_0/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from converseg_ros.modeling.atomic import atomic_dir, sweep_stale
from converseg_ros.modeling.qwen_config import hub_flat_config

TINY_FORMAT_VERSION = 5

SPECIAL_TOKENS = [  # Qwen2.5-VL's added special tokens, in vocabulary order.
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>"]  # added but not special, as in Qwen2.5

_CORPUS = [
    "You are a helpful assistant.", "system", "user", "assistant",
    "segment surfaces safe to place hot items", "which box can I pull without toppling the stack?",
    "the cup on the saucer", "a cat sitting on the table", "find the handle I can grasp",
    "highlight the region where a robot could put a mug", "the person wearing a space suit",
    "select objects that could spill if tipped over", "the rocket on the launch pad",
    "segment the floor area that is free to walk", "coffee, spoon, plate, wooden table, window",
    "left right top bottom front behind near far above below inside outside between",
]

SAM2_TINY = {
    "_target_": "sam2.modeling.sam2_base.SAM2Base",
    "image_encoder": {
        "_target_": "sam2.modeling.backbones.image_encoder.ImageEncoder",
        "scalp": 1,
        "trunk": {
            "_target_": "sam2.modeling.backbones.hieradet.Hiera",
            "embed_dim": 8, "num_heads": 1, "stages": [1, 1, 2, 1], "global_att_blocks": [3],
            "window_pos_embed_bkg_spatial_size": [4, 4], "window_spec": [8, 4, 4, 2],
        },
        "neck": {
            "_target_": "sam2.modeling.backbones.image_encoder.FpnNeck",
            "position_encoding": {
                "_target_": "sam2.modeling.position_encoding.PositionEmbeddingSine",
                "num_pos_feats": 32, "normalize": True, "scale": None, "temperature": 10000,
            },
            "d_model": 32, "backbone_channel_list": [64, 32, 16, 8],
            "fpn_top_down_levels": [2, 3], "fpn_interp_model": "nearest",
        },
    },
    "memory_attention": {
        "_target_": "sam2.modeling.memory_attention.MemoryAttention",
        "d_model": 32, "pos_enc_at_input": True, "num_layers": 1,
        "layer": {
            "_target_": "sam2.modeling.memory_attention.MemoryAttentionLayer",
            "activation": "relu", "dim_feedforward": 64, "dropout": 0.1, "pos_enc_at_attn": False,
            "d_model": 32, "pos_enc_at_cross_attn_keys": True, "pos_enc_at_cross_attn_queries": False,
            "self_attention": {
                "_target_": "sam2.modeling.sam.transformer.RoPEAttention", "rope_theta": 10000.0,
                "feat_sizes": [8, 8], "embedding_dim": 32, "num_heads": 1, "downsample_rate": 1,
                "dropout": 0.1,
            },
            "cross_attention": {
                "_target_": "sam2.modeling.sam.transformer.RoPEAttention", "rope_theta": 10000.0,
                "feat_sizes": [8, 8], "rope_k_repeat": True, "embedding_dim": 32, "num_heads": 1,
                "downsample_rate": 1, "dropout": 0.1, "kv_in_dim": 16,
            },
        },
    },
    "memory_encoder": {
        "_target_": "sam2.modeling.memory_encoder.MemoryEncoder",
        "out_dim": 16,
        "position_encoding": {
            "_target_": "sam2.modeling.position_encoding.PositionEmbeddingSine",
            "num_pos_feats": 16, "normalize": True, "scale": None, "temperature": 10000,
        },
        "mask_downsampler": {
            "_target_": "sam2.modeling.memory_encoder.MaskDownSampler",
            "kernel_size": 3, "stride": 2, "padding": 1, "embed_dim": 32,
        },
        "fuser": {
            "_target_": "sam2.modeling.memory_encoder.Fuser",
            "layer": {
                "_target_": "sam2.modeling.memory_encoder.CXBlock", "dim": 32, "kernel_size": 7,
                "padding": 3, "layer_scale_init_value": 1e-6, "use_dwconv": True,
            },
            "num_layers": 1,
        },
        "in_dim": 32,
    },
    "num_maskmem": 7, "image_size": 128,
    "sigmoid_scale_for_mem_enc": 20.0, "sigmoid_bias_for_mem_enc": -10.0,
    "use_mask_input_as_output_without_sam": True, "directly_add_no_mem_embed": True,
    "use_high_res_features_in_sam": True, "multimask_output_in_sam": True,
    "iou_prediction_use_sigmoid": True, "use_obj_ptrs_in_encoder": True,
    "add_tpos_enc_to_obj_ptrs": False, "only_obj_ptrs_in_the_past_for_eval": True,
    "pred_obj_scores": True, "pred_obj_scores_mlp": True, "fixed_no_obj_ptr": True,
    "multimask_output_for_tracking": True, "use_multimask_token_for_obj_ptr": True,
    "multimask_min_pt_num": 0, "multimask_max_pt_num": 1, "use_mlp_for_obj_ptr_proj": True,
    "compile_image_encoder": False,
}


def _write_tokenizer(qwen_dir: Path) -> int:
    """Train a small byte-level BPE and save it as a Qwen2 tokenizer; returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        bos_token=None, errors="replace", clean_up_tokenization_spaces=False, model_max_length=32768,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.add_tokens(PLAIN_ADDED_TOKENS, special_tokens=False)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(qwen_dir)
    return len(tokenizer)


TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
             "num_key_value_heads": 2, "mrope_section": [2, 3, 3]}
TINY_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
               "window_size": 56, "fullatt_block_indexes": [1]}


def _write_processor(qwen_dir: Path) -> None:
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    size = {"shortest_edge": 3136, "longest_edge": 12845056}  # Qwen2.5-VL's min/max pixels
    image_processor = Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    template = (Path(__file__).parent / "chat_template.jinja").read_text()
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=template,
    )
    processor.save_pretrained(qwen_dir)


def _scale_init(module: torch.nn.Module, gain: float) -> None:
    """A 0.02-std init makes a 2-layer model ignore its input; widen it so outputs depend on it."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim == 2 and "lora_B" not in name:  # Linear weights [out, in]
                param.normal_(0.0, gain / param.shape[1] ** 0.5)


def build_tiny_files(root: Path, seed: int = 0) -> Path:
    """Write the tiny model's files under ``root`` (atomically; a finished directory is reused)."""
    root = Path(root)
    sweep_stale(root.parent, names=[root.name])  # a build that was killed (a live one is left alone)
    stamp = root / "TINY_FORMAT"
    if stamp.exists() and stamp.read_text().strip() == str(TINY_FORMAT_VERSION):
        return root
    with atomic_dir(root) as tmp, torch.random.fork_rng(devices=[]):  # the caller's random state stays as is
        _build_into(tmp, seed)
        (tmp / "TINY_FORMAT").write_text(str(TINY_FORMAT_VERSION))
    return root


def _build_into(root: Path, seed: int) -> None:
    from transformers import AutoConfig, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from converseg_ros.modeling.checkpoints import write_release
    from converseg_ros.modeling.language_adapter import LanguageAdapter
    from converseg_ros.modeling.sam2_model import build_sam2_model

    qwen_dir = root / "qwen"
    qwen_dir.mkdir(parents=True)
    vocab_size = _write_tokenizer(qwen_dir)
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    flat = hub_flat_config(TINY_TEXT, TINY_VISION, vocab_size, ids)
    (qwen_dir / "config.json").write_text(json.dumps(flat, indent=2))
    config = AutoConfig.from_pretrained(qwen_dir)
    _write_processor(qwen_dir)
    (root / "sam2_tiny.yaml").write_text(yaml.safe_dump({"model": SAM2_TINY}, sort_keys=False))

    torch.manual_seed(seed)
    sam = build_sam2_model(str(root / "sam2_tiny.yaml"))
    _scale_init(sam.sam_mask_decoder, 1.0)
    backbone = Qwen2_5_VLForConditionalGeneration(config)
    _scale_init(backbone, 1.5)
    adapter = LanguageAdapter(backbone, tokenizer, transformer_dim=sam.sam_mask_decoder.transformer_dim)
    with torch.no_grad():  # LoRA B starts at zero; give it values so LoRA loading is observable
        for name, param in adapter.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    write_release(sam, adapter, root, step=0, sam2_suffix=".torch")  # the release spells .torch.torch
    meta = {"untrained": True, "seed": seed, "note": "random weights: masks carry no meaning"}
    (root / "README.json").write_text(json.dumps(meta, indent=2))
