"""The tiny preset's Qwen2.5-VL as a local transformers VLM, end to end: its replies are noise, and the run
must still finish with every image accounted for (and SAM2 shared with the same preset's model)."""

from __future__ import annotations

import json

import numpy as np

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.models import load_net
from converseg_ros.dataengine.vlm import VLMRequest
from converseg_ros.dataengine.vlm.local import TransformersBackend


def test_tiny_local_vlm_run_accounts_for_every_image(photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--out", str(out), "--images", str(photo_dir), "--vlm", "transformers", "--model", "tiny",
                 "--device", "cpu", "--precision", "fp32", "--max-tokens", "12", "--retries", "2",
                 "--workers", "2", "--no-progress"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["total"] == 4 and manifest["counts"]["pending"] == 0
    assert sum(manifest["counts"].values()) == 4
    for item_id, entry in manifest["items"].items():
        assert entry["status"] in ("done", "failed")
        if entry["status"] == "failed":
            assert entry["reason"], item_id
    (corrupt,) = [k for k in manifest["items"] if k.startswith("img_corrupt_")]
    assert manifest["items"][corrupt]["stage"] == "load"
    summary = json.loads((out / "summary.json").read_text())["total"]
    assert summary["attempts"] >= 3  # every readable image asked the model at least once
    assert summary["input_tokens"] > 0 and summary["output_tokens"] > 0
    assert summary["cost_usd"] == 0.0  # a local model is not billed
    run = json.loads((out / "run.json").read_text())["config"]
    assert run["sam2"] == "tiny"  # the local preset's own SAM2
    printed = json.loads(capsys.readouterr().out)
    assert printed["total"] == 4


def test_local_backend_generates_text_with_lora_off():
    backend = TransformersBackend.from_preset_or_path("tiny", device="cpu", precision="fp32", max_new_tokens=6)
    net = load_net("tiny", "cpu", "fp32")
    assert backend.model is net.adapter.backbone.base_model.model  # the preset's Qwen, not a second copy
    image = np.full((56, 84, 3), 100, np.uint8)
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    request = VLMRequest("t", "say something", [image], schema, temperature=0.0)
    first = backend.complete(request, timeout=10)
    again = backend.complete(request, timeout=10)
    assert first.text == again.text  # greedy decoding is deterministic
    assert 0 < first.usage.output_tokens <= 6 and first.usage.input_tokens > 20
    lora = next(m for n, m in net.adapter.backbone.named_modules() if n.endswith("q_proj") and hasattr(m, "lora_A"))
    assert not lora.disable_adapters  # LoRA is switched back on after generating (the segmenter needs it)
