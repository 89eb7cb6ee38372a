"""converseg-eval end to end with the tiny preset: reports, saved predictions, bad items, decode modes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from converseg_ros.data.demo import write_demo_dataset
from converseg_ros.data.readers import read_dataset
from converseg_ros.engine import ConverSegEngine
from converseg_ros.evaluation.cli import main
from converseg_ros.evaluation.metrics import SplitMetrics, score_item
from converseg_ros.evaluation.report import build_report, render_markdown
from converseg_ros.evaluation.runner import evaluate_split
from converseg_ros.modeling.presets import load_preset


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A demo items.json plus one corrupt mask and one mask of the wrong size; a ReasonSeg folder."""
    root = write_demo_dataset(tmp_path_factory.mktemp("bench"), max_side=96)
    items = json.loads((root / "items.json").read_text())
    (root / "masks" / "corrupt.png").write_bytes(b"\x89PNG not a png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "small.png")
    items["items"] += [
        {"id": "bad_corrupt", "image": "images/coffee.png", "mask": "masks/corrupt.png", "prompt": "cup"},
        {
            "id": "bad_size",
            "image": "images/rocket.png",
            "mask": "masks/small.png",
            "prompt": "sky",
            "concept": "physics",
        },
    ]
    (root / "items.json").write_text(json.dumps(items))
    rs = root / "reasonseg"
    rs.mkdir()
    Image.fromarray(cv2.resize(skdata.chelsea(), (90, 60))).save(rs / "cat.jpg")
    (rs / "cat.json").write_text(
        json.dumps(
            {
                "text": ["what would purr if stroked?"],
                "is_sentence": True,
                "shapes": [{"label": "target", "points": [[10, 5], [80, 5], [80, 60], [10, 60]]}],
            }
        )
    )
    return root


def test_eval_cli_reports_and_saves_predictions(bench, tmp_path):
    preds, out = tmp_path / "preds", tmp_path / "report"
    code = main(
        [
            "--preset",
            "tiny",
            "--items",
            str(bench / "items.json"),
            "--reasonseg",
            str(bench / "reasonseg"),
            "--save-preds",
            str(preds),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--precision",
            "fp32",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    split = bench.name
    assert set(report["giou"]) == {split, "reasonseg"}
    assert report["count"][split]["all"] == 6 and report["count"][split]["spatial"] == 2
    failed = report["failed"][split]
    assert len(failed) == 2 and "bad_corrupt" in failed[0] and "mask is 5x5" in failed[1]
    assert "paper" not in report  # the tiny preset is not a release

    # the report agrees with metrics recomputed from the saved 0/255 prediction PNGs
    recomputed = SplitMetrics()
    for sample in read_dataset(bench / "items.json").samples:
        if sample.id.startswith("bad_"):
            continue
        pred = cv2.imread(str(preds / split / f"{sample.id}_pred.png"), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(pred)) <= {0, 255}
        gt, _ = sample.load_target(pred.shape)
        recomputed.add(score_item(sample.id, pred > 0, gt, sample.concept))
        assert (preds / split / f"{sample.id}_panel.png").is_file()
    summary = recomputed.summary()
    for group, values in summary.items():
        assert report["giou"][split][group] == pytest.approx(values["giou"])
        assert report["ciou"][split][group] == pytest.approx(values["ciou"])
    assert (preds / "reasonseg" / "cat_0_pred.png").is_file()
    md = (out / "report.md").read_text()
    assert f"## {split}" in md and "| entities | 2 |" in md and "bad_corrupt" in md
    assert len((out / "items.jsonl").read_text().splitlines()) == 9


def test_decode_modes_choose_different_outputs(bench, tiny_net):
    samples = read_dataset(bench / "items.json").samples[:3]
    first, _ = evaluate_split(ConverSegEngine(tiny_net, decode_mode="first"), samples, "x")
    multi, items = evaluate_split(ConverSegEngine(tiny_net, decode_mode="multimask"), samples, "x")
    assert first.summary()["all"]["count"] == multi.summary()["all"]["count"] == 3
    assert first.summary()["all"]["ciou"] != multi.summary()["all"]["ciou"]
    assert all(0.0 <= i.iou <= 1.0 for i in items)


def test_release_preset_shows_paper_numbers():
    metrics = SplitMetrics()
    metrics.add(score_item("a", np.ones((2, 2), bool), np.ones((2, 2), bool), "entities"))
    spec = load_preset("converseg-3b")
    report = build_report(
        {"sam_seeded": metrics}, {"preset": spec.name, "decode_mode": "multimask"}, spec.paper
    )
    assert report["paper"]["giou"]["sam_seeded"]["all"] == pytest.approx(0.705)
    assert report["paper"]["ciou"]["sam_seeded"]["physics"] == pytest.approx(0.613)
    md = render_markdown(report)
    assert "paper gIoU" in md and "| all | 1 | 100.0 | 100.0 | 70.5 | 71.0 |" in md


def test_no_data_is_a_clear_error(tmp_path, capsys):
    assert main(["--preset", "tiny", "--out", str(tmp_path)]) == 2
    assert "no data" in capsys.readouterr().err
