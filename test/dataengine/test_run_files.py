"""Nothing stops on one bad file: every malformed run file gives a message naming it, other items go on;
a failed first start leaves no run; --resume compares normalised settings; status rewrites manifest.json;
crafted ids never become paths; credentials never reach a stored file."""

from __future__ import annotations

import json
import os
import shutil

import httpx
import pytest
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.review import make_server

SECRET = "sk-files-secret-0123456789abcdef"


@pytest.fixture
def run(scripted, photo_dir, tmp_path):
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics")) == 0
    return out


def _items(out):
    done = sorted(p.parent for p in (out / "items").glob("*/stage5_verify_prompts.json"))
    assert len(done) == 3
    return done


def test_malformed_item_files_are_named_and_isolated(run, tmp_path, capsys):
    a, b, c = _items(run)
    (a / "status.json").write_bytes(b'{"status": "done", "samples": 2, "x": "\xff"}')  # not UTF-8
    stage5 = json.loads((b / "stage5_verify_prompts.json").read_text())
    (b / "stage5_verify_prompts.json").write_text(json.dumps({"oops": stage5["samples"]}))  # a key missing
    (c / "stage5_verify_prompts.json").write_text("[" * 200000 + "]" * 200000)  # nested too deeply
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["failed_by_stage"].get("read") == 1 and status["done"] == 2
    manifest = json.loads((run / "manifest.json").read_text())
    reason = manifest["items"][a.name]["reason"]
    assert "status.json: not UTF-8 (byte 0xff" in reason and str(a) in reason

    assert main(["export", str(run), "--items", str(tmp_path / "e" / "items.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    problems = " | ".join(result["problems"])
    assert f"{b / 'stage5_verify_prompts.json'}: missing key 'samples'" in problems
    assert f"{c / 'stage5_verify_prompts.json'}: JSON nested too deeply" in problems
    assert result["exported"]["eval"] == 0  # a, b and c all skipped; the corrupt photo never had samples

    server = make_server([run], "127.0.0.1", 0)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        listing = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/api/samples",
                            headers={"X-Review-Token": server.token}, timeout=10).json()
        assert len(listing["problems"]) == 3  # the page loads, naming what it skipped
    finally:
        server.shutdown()
        server.server_close()

    assert main(["run", "--out", str(run), "--resume", "--no-progress"]) == 0  # bad files moved aside
    capsys.readouterr()
    assert (a / "quarantine" / "status.json").is_file()
    assert (b / "quarantine" / "stage5_verify_prompts.json").is_file()
    assert main(["run", "--out", str(run), "--resume", "--retry-failed", "--no-progress"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["done"] == 3 and after["failed"] == 1  # redone from their last good stage; the corrupt photo stays


def test_malformed_run_level_files_stop_with_their_name(run, tmp_path, capsys):
    (run / "review.json").write_text('{"decisions": {"x": {"decision": "maybe"}}}')
    assert main(["export", str(run), "--train", str(tmp_path / "t.jsonl")]) == 2
    assert f"{run / 'review.json'}: decision for 'x' is not accept/reject" in capsys.readouterr().err
    (run / "inputs.json").write_text('[{"id": "../../etc", "path": "x"}]')
    assert main(["status", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / "inputs.json") in err and "unsafe id" in err
    (run / "run.json").write_bytes(b"\x00\x01")
    assert main(["run", "--out", str(run), "--resume"]) == 2
    assert f"{run / 'run.json'}: not JSON" in capsys.readouterr().err


def test_failed_first_start_leaves_no_run(scripted, photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", str(tmp_path / "missing"))) == 2
    assert "is not a folder" in capsys.readouterr().err and not out.exists()
    scripted.faults = {"*": ["401"] * 50}  # a wrong key: every call says so
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics")) == 2
    assert "HTTP 401" in capsys.readouterr().err and not (out / "run.json").exists()
    scripted.faults = {}
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics")) == 0


def test_resume_normalises_status_rewrites_manifest_and_templates(scripted, photo_dir, tmp_path, capsys, caplog,
                                                                  monkeypatch):
    monkeypatch.chdir(photo_dir.parent)
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", "photos/", "--families", "physics,spatial")) == 0
    assert json.loads((out / "run.json").read_text())["config"]["images"] == [str(photo_dir)]
    assert main(["run", "--out", str(out), "--resume", "--images", "./photos", "--families", "spatial,physics",
                 "--no-progress"]) == 0
    (out / "manifest.json").unlink()
    assert main(["status", str(out)]) == 0 and (out / "manifest.json").is_file()
    info = json.loads((out / "run.json").read_text())
    assert info["package_version"] and len(info["prompt_templates"]) == 16
    info["prompt_templates"] = "0" * 16
    (out / "run.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["run", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "prompt templates changed" in json.loads(capsys.readouterr().out)["warnings"][0]


def test_crafted_sample_id_never_becomes_a_path(run, tmp_path, capsys):
    item = _items(run)[0]
    stage5 = json.loads((item / "stage5_verify_prompts.json").read_text())
    stage5["samples"][0]["id"] = "../../../escaped"
    stage5["samples"][0]["verdict"] = "accept"
    (item / "stage5_verify_prompts.json").write_text(json.dumps(stage5))
    assets = tmp_path / "x" / "y" / "assets"
    assert main(["export", str(run), "--items", str(tmp_path / "x" / "items.json"), "--assets", str(assets)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert any("unsafe sample id '../../../escaped'" in p for p in result["problems"])
    assert not list(tmp_path.rglob("escaped*"))


def test_credentials_scrubbed_from_stored_errors_and_urls(scripted, photo_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    scripted.faults = {"region_captions": ["500echo"] * 2}
    out = tmp_path / "run"
    url = scripted.openai_url.replace("http://", "http://alice:hunter2pass@") + "?key=AIzaQueryKey1234567890abcdef"
    assert main(run_args(out, url, "--images", str(photo_dir), "--families", "physics", "--retries", "2",
                         "--workers", "1")) == 0
    captured = capsys.readouterr()
    assert "not stored" in captured.err  # the warning about credentials in --base-url
    manifest = json.loads((out / "manifest.json").read_text())
    echoed = [v["reason"] for v in manifest["items"].values() if "HTTP 500" in (v.get("reason") or "")]
    assert echoed and "Authorization: ***" in echoed[0]
    stored = json.loads((out / "run.json").read_text())["config"]["base_url"]
    assert stored == scripted.openai_url
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (SECRET, "hunter2pass", "AIzaQueryKey"):
                assert secret.encode() not in data, (path, secret)
    assert SECRET not in captured.out + captured.err and "hunter2pass" not in captured.out + captured.err
    shutil.rmtree(out)
    assert os.environ["OPENAI_API_KEY"] == SECRET
