"""A local Qwen2.5-VL through transformers: a preset's VLM (``tiny``, ``converseg-3b`` ...) or a model folder / id.

For a preset, the Qwen weights are the ones in the preset's language-adapter file with the LoRA switched
off while generating (the LoRA was trained to produce segmentation features, not text). Without
constrained decoding the reply is free text that the client parses and validates like any other; the
tiny preset's random weights reply noise, which the engine must survive. Calls are serialised (one model).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch
from PIL import Image

from converseg_ros.dataengine.vlm.base import Completion, Usage, VLMRequest, schema_instructions


class TransformersBackend:
    """Greedy (temperature 0) or sampled generation with ``Qwen2_5_VLForConditionalGeneration.generate``."""

    name = "transformers"
    box_format = "pixel_xyxy"  # Qwen2.5-VL grounds in absolute pixels of the image it sees

    def __init__(self, model, processor, max_new_tokens: int = 1024, lora_owner=None):
        self.model = model  # Qwen2_5_VLForConditionalGeneration
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self._lora_owner = lora_owner  # PEFT model whose adapters are switched off while generating
        self._lock = threading.Lock()

    @classmethod
    def from_preset_or_path(
        cls, model: str, device: str = "auto", precision: str = "auto", allow_download: bool = False,
        max_new_tokens: int = 1024,
    ) -> TransformersBackend:
        """A preset name/YAML (its VLM weights) or a transformers model folder / hub id."""
        from converseg_ros.dataengine.models import is_preset, load_net

        if is_preset(model):
            net = load_net(model, device, precision, allow_download)
            backbone = net.adapter.backbone  # PEFT wrapper around Qwen2_5_VLForConditionalGeneration
            return cls(backbone.base_model.model, net.inputs.processor, max_new_tokens, lora_owner=backbone)
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from converseg_ros.modeling.build import PRECISIONS, resolve_device_names

        device, precision = resolve_device_names(device, precision)
        local_only = not allow_download
        qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            model, dtype=PRECISIONS[precision], local_files_only=local_only
        ).to(device).eval()
        processor = AutoProcessor.from_pretrained(model, local_files_only=local_only)
        return cls(qwen, processor, max_new_tokens)

    def __repr__(self) -> str:
        return f"TransformersBackend(max_new_tokens={self.max_new_tokens})"

    def complete(self, request: VLMRequest, timeout: float) -> Completion:
        """``timeout`` is not enforced: a local generate call cannot be pre-empted (bounded by max_new_tokens)."""
        content: list[dict] = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.text + "\n\n" + schema_instructions(request.schema)})
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": content})
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images = [Image.fromarray(np.ascontiguousarray(rgb)) for rgb in request.images]
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        sample = request.temperature > 0
        options = {"do_sample": sample, "max_new_tokens": self.max_new_tokens}
        if sample:
            options["temperature"] = request.temperature
        tokenizer = self.processor.tokenizer
        disabled = self._lora_owner.disable_adapter() if self._lora_owner is not None else contextlib.nullcontext()
        with self._lock, torch.inference_mode(), disabled:
            out = self.model.generate(**inputs, **options, pad_token_id=tokenizer.pad_token_id)
        prompt_len = inputs["input_ids"].shape[1]
        generated = out[0, prompt_len:]
        reply = tokenizer.decode(generated, skip_special_tokens=True)
        return Completion(reply, Usage(int(prompt_len), int(generated.shape[0])))
