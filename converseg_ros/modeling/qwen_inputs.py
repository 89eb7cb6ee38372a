"""Qwen2.5-VL inputs exactly as the authors build them, split into an image prefix and a text suffix.

The conversation is one user turn, image first then the prompt, with the template's default system
prompt. Everything up to ``<|vision_end|>`` depends only on the image (the *prefix*); the prompt and the
closing ``<|im_end|>\\n`` follow (the *suffix*). Special tokens split BPE words, so tokenising the suffix
alone gives the same ids as tokenising the whole text.
"""

from __future__ import annotations

import numpy as np
import torch

from converseg_ros.errors import QueryError

MAX_PROMPT_TOKENS = 256  # the reference truncates prompts to this many tokens
MAX_PROMPT_CHARS = 4096  # refuse longer queries outright (bounded input)
VISION_END = "<|vision_end|>"


class QwenInputs:
    """Builds processor inputs for images and prompts (prefix/suffix or whole sequences)."""

    def __init__(self, processor, max_pixels: int | None = None):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        # HWC arrays: without this a 1 x 1 x 3 image would be read as channels-first
        self.image_options: dict = {"input_data_format": "channels_last"}
        if max_pixels:  # documented deviation: cap Qwen's view for speed (off by default)
            minimum = processor.image_processor.size["shortest_edge"]
            self.image_options["size"] = {"shortest_edge": minimum, "longest_edge": int(max_pixels)}

    def clean_prompt(self, prompt: str) -> str:
        """Truncate to 256 tokens and drop special-token strings, as the reference does."""
        if not isinstance(prompt, str):
            raise QueryError(f"query must be text, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise QueryError(f"query of {len(prompt)} characters exceeds {MAX_PROMPT_CHARS}")
        if not prompt.strip():
            raise QueryError("query is empty")
        ids = self.tokenizer(prompt, add_special_tokens=False, truncation=True, max_length=MAX_PROMPT_TOKENS)
        cleaned = self.tokenizer.decode(ids["input_ids"], skip_special_tokens=True)
        if not cleaned.strip():
            raise QueryError("query holds nothing but special tokens")
        return cleaned

    def conversation_text(self, prompt: str) -> str:
        """The chat-templated text of one image + prompt turn (one ``<|image_pad|>`` placeholder)."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=False, tokenize=False)

    def split(self, prompt: str) -> tuple[str, str]:
        """(prefix text ending with ``<|vision_end|>``, suffix text) of a cleaned prompt."""
        head, sep, tail = self.conversation_text(prompt).partition(VISION_END)
        if not sep:
            raise RuntimeError("chat template produced no image placeholder")
        return head + sep, tail

    def prefix(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        """Processor outputs for the image prefix: input_ids [1, P], attention_mask, mm_token_type_ids,
        pixel_values [patches, dim], image_grid_thw [1, 3]."""
        prefix_text, _ = self.split("x")
        return dict(
            self.processor(
                text=[prefix_text], images=[rgb], return_tensors="pt", **self.image_options
            )
        )

    def suffixes(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded suffix ids [B, L] and their attention mask, for cleaned prompts."""
        texts = [self.split(p)[1] for p in prompts]
        encoded = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def batch(self, images: list[np.ndarray], prompts: list[str]) -> dict[str, torch.Tensor]:
        """Whole (uncached) right-padded sequences for image/prompt pairs, for training and parity."""
        texts = [self.conversation_text(self.clean_prompt(p)) for p in prompts]
        self.tokenizer.padding_side = "right"
        return dict(
            self.processor(
                text=texts, images=list(images), return_tensors="pt", padding=True,
                **self.image_options,
            )
        )
