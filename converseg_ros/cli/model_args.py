"""Model options shared by the command-line tools, and the engine they describe."""

from __future__ import annotations

import argparse

PATH_OPTIONS = ("vlm", "sam2_config", "sam2_base", "sam2_checkpoint", "plm_checkpoint", "lora")


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, allow_download: bool) -> None:
    """--preset/--release/explicit files, device, precision, decoding and download options."""
    add = parser.add_argument
    add("--preset", default="converseg-3b", help="model preset from models/ or a YAML path (default: %(default)s)")
    add("--release", help="release folder (SAM2 .torch, plm .torch, LoRA folder), e.g. from converseg-train export")
    add("--vlm", help="Qwen2.5-VL hub id or local folder (config, tokenizer, processor)")
    add("--sam2-config", help="SAM2 config name (sam2_hiera_l.yaml) or YAML path")
    add("--sam2-base", help="base SAM2 checkpoint (sam2_hiera_large.pt)")
    add("--sam2-checkpoint", help="fine-tuned SAM2 .torch file (overrides the preset/release)")
    add("--plm-checkpoint", help="language-adapter .torch file (overrides the preset/release)")
    add("--lora", help="LoRA adapter folder (overrides the preset/release)")
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
        help="Qwen/adapter precision; auto = bf16 on CUDA, fp32 on CPU (SAM2 stays fp32)")
    add("--sam2-precision", default="fp32", choices=["fp32", "bf16"],
        help="SAM2 image encoder precision: fp32 as the authors (default) or bf16 autocast (faster; a deviation)")
    add("--decode-mode", default="multimask", choices=["multimask", "first"],
        help="multimask: best predicted IoU of decoder outputs 1-3 (the authors' demo/eval); first: output 0")
    add("--preprocess", default="letterbox", choices=["letterbox", "squash"],
        help="SAM2 input: letterbox to the square (the authors' demo and training; default) or squash to it "
             "(their eval.py, the benchmark script)")
    add("--threshold", type=float, default=0.5, help="mask probability threshold (default: %(default)s)")
    add("--max-pixels", type=int, default=None,
        help="cap the pixels Qwen sees (speed; a deviation from the reference; off by default)")
    add("--overlap", default="auto", choices=["auto", "on", "off"],
        help="encode SAM2 and the Qwen prefix of a frame at once (auto: on CUDA only)")
    add("--attention", default="auto", choices=["auto", "sdpa", "flash_attention_2", "eager"],
        help="Qwen attention kernels (auto: FlashAttention-2 on CUDA when installed, else SDPA)")
    add("--compile-sam2", action="store_true", help="torch.compile the SAM2 encoder and decoder (slow first frames)")
    add("--allow-download", dest="allow_download", action="store_true", default=allow_download,
        help="download missing model files from the Hugging Face hub" + (" (default)" if allow_download else ""))
    add("--offline", dest="allow_download", action="store_false", help="only local files and the hub cache")


def model_overrides(args: argparse.Namespace) -> dict[str, str]:
    """Preset fields replaced by --release and explicit file options (explicit files win)."""
    from converseg_ros.modeling.checkpoints import release_files

    overrides = release_files(args.release) if args.release else {}
    overrides.update({name: getattr(args, name) for name in PATH_OPTIONS if getattr(args, name)})
    return overrides


def engine_from_args(args: argparse.Namespace):
    """The ConverSegEngine the parsed model options describe."""
    from converseg_ros.engine import ConverSegEngine

    return ConverSegEngine.from_preset(
        args.preset, device=args.device, precision=args.precision, overrides=model_overrides(args) or None,
        allow_download=args.allow_download, max_pixels=args.max_pixels, decode_mode=args.decode_mode,
        mask_threshold=args.threshold, sam2_precision=args.sam2_precision, preprocess=args.preprocess,
        overlap=args.overlap, compile_sam2=args.compile_sam2, attention=args.attention,
    )
