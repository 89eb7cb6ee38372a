"""The language adapter: Qwen2.5-VL (+LoRA) hidden states -> SAM2 sparse tokens and dense bias.

Parameter names and registration order follow the authors' ``LanguageAdapter`` so that its state dict
(the release's ``plm`` file) loads unchanged: ``scale``, ``temp``, ``backbone.*`` (a PEFT model around
``Qwen2_5_VLForConditionalGeneration``), ``to_sparse``, ``to_dense.{0,2}``, ``txt_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from converseg_ros.modeling.qwen_config import qwen_config_value
from converseg_ros.modeling.token_selection import non_text_token_ids, select_text_positions

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA as in the reference: every q/k/v/o/gate/up/down projection, vision-tower MLPs included."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap a Qwen2.5-VL model in a PEFT feature-extraction model with fresh LoRA weights."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules), bias="none", task_type="FEATURE_EXTRACTION",
    )
    return get_peft_model(model, config)


class LanguageAdapter(nn.Module):
    """Reads image + prompt with Qwen2.5-VL and produces ConverSeg's language prompts for SAM2."""

    def __init__(self, qwen: nn.Module, tokenizer, transformer_dim: int, lora: LoraSettings | None = None):
        super().__init__()
        hidden = qwen_config_value(qwen.config, "hidden_size")
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.temp = nn.Parameter(torch.tensor(1.0))
        self.backbone = apply_lora(qwen, lora or LoraSettings())
        self.to_sparse = nn.Linear(hidden, transformer_dim)
        self.to_dense = nn.Sequential(
            nn.Linear(hidden, transformer_dim), nn.SiLU(), nn.Linear(transformer_dim, transformer_dim)
        )
        self.txt_norm = nn.LayerNorm(hidden)
        for linear in (self.to_sparse, self.to_dense[0], self.to_dense[2]):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.eos_id = tokenizer.eos_token_id
        self.register_buffer(
            "non_text_ids", torch.tensor(non_text_token_ids(tokenizer), dtype=torch.long), persistent=False
        )

    @property
    def qwen(self) -> nn.Module:
        """The inner ``Qwen2_5_VLModel`` (no LM head: vocabulary logits are never computed)."""
        return self.backbone.base_model.model.model

    def hidden_states(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Final (post-RMSNorm) hidden states [B, T, D] of a full image + prompt sequence."""
        return self.qwen(**inputs, use_cache=False).last_hidden_state

    def project(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states -> (sparse [B, N, C], dense [B, C]).

        Rows with fewer text positions than the longest are zero-filled before projection, as in the
        reference, so their padded slots carry ``to_sparse.bias * scale``.
        """
        normed = self.txt_norm(hidden.to(self.txt_norm.weight.dtype))
        text, eos_pos = select_text_positions(input_ids, attention_mask, self.eos_id, self.non_text_ids)
        counts = text.sum(dim=1)
        batch = hidden.shape[0]
        tokens = normed.new_zeros(batch, max(int(counts.max()), 1), normed.shape[-1])
        for row in range(batch):
            tokens[row, : counts[row]] = normed[row, text[row]]
        sparse = self.to_sparse(tokens) * self.scale
        eos_hidden = normed[torch.arange(batch, device=normed.device), eos_pos]
        dense = self.to_dense(eos_hidden) * self.temp.clamp(min=0.01)
        return sparse, dense

    def forward(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full uncached pass over processor outputs (input_ids, attention_mask, pixel_values, ...)."""
        hidden = self.hidden_states(**inputs)
        return self.project(hidden, inputs["input_ids"], inputs["attention_mask"])
