"""The real VLM clients against a real local HTTP server with scripted replies (OpenAI and Gemini protocols)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from converseg_ros.dataengine.stages.captions import schema as captions_schema
from converseg_ros.dataengine.stages.captions import to_pixels
from converseg_ros.dataengine.stages.context import ItemFiles, StageContext
from converseg_ros.dataengine.stages.verify_masks import CHECK_SCHEMA
from converseg_ros.dataengine.vlm import (
    Accounting,
    FatalVLMError,
    Prices,
    ReplyError,
    RetryPolicy,
    TransientError,
    VLMClient,
    VLMRequest,
)
from converseg_ros.dataengine.vlm.gemini import GeminiBackend
from converseg_ros.dataengine.vlm.openai_http import OpenAIBackend, parse_retry_after

SECRET = "sk-test-0123456789-do-not-log"
IMAGE = np.full((60, 80, 3), 128, np.uint8)


def _client(server, attempts=3, timeout=5.0, concurrency=4, prices=None, key=True, monkeypatch=None):
    if key:
        monkeypatch.setenv("DATAENGINE_TEST_KEY", SECRET)
    backend = OpenAIBackend(server.openai_url, "scripted", key_env="DATAENGINE_TEST_KEY")
    policy = RetryPolicy(attempts=attempts, timeout=timeout, backoff=0.05, max_backoff=0.2)
    return VLMClient(backend, policy, concurrency, Accounting(prices or Prices(0.3, 2.5)))


def _check_request() -> VLMRequest:
    return VLMRequest("mask_check", "Check: text: \"a cup\"", [IMAGE], CHECK_SCHEMA)


def test_valid_reply_structured_output_and_key_only_in_header(scripted, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    client = _client(scripted, monkeypatch=monkeypatch)
    reply = client.ask(_check_request())
    assert reply == {"output": True, "description": "the a cup"}
    (req,) = scripted.requests
    assert req["auth"] == f"Bearer {SECRET}"
    fmt = req["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["output", "description"]
    assert req["images"] == [(80, 60)]
    acc = client.accounting.summary()
    assert acc["calls"] == 1 and acc["attempts"] == 1 and acc["retries"] == 0
    assert acc["input_tokens"] > 258 and acc["output_tokens"] > 0
    assert acc["cost_usd"] == pytest.approx((acc["input_tokens"] * 0.3 + acc["output_tokens"] * 2.5) / 1e6)
    assert SECRET not in caplog.text and SECRET not in repr(client.backend)


@pytest.mark.parametrize("fault,kind", [("nonjson", "not_json"), ("wrongschema", "wrong_schema")])
def test_bad_replies_are_retried_then_given_up(scripted, monkeypatch, fault, kind):
    scripted.faults = {"mask_check": [fault]}
    client = _client(scripted, monkeypatch=monkeypatch)
    assert client.ask(_check_request())["output"] is True  # second attempt is valid
    acc = client.accounting.summary()
    assert acc["attempts"] == 2 and acc["retries"] == 1 and acc["errors"] == {kind: 1}

    scripted.faults = {"mask_check": [fault] * 5}
    with pytest.raises(ReplyError, match="gave up after 3 attempts"):
        client.ask(_check_request())
    assert client.accounting.summary()["failed_calls"] == 1


def test_box_outside_the_image_is_rejected_and_retried(scripted, monkeypatch, tmp_path):
    scripted.faults = {"region_captions": ["outside", "outside"]}
    client = _client(scripted, monkeypatch=monkeypatch, attempts=2)
    from converseg_ros.dataengine.stages import captions

    ctx = StageContext("x", IMAGE, IMAGE, 1.0, client, ItemFiles(tmp_path))
    with pytest.raises(ReplyError, match=r"lies outside the 80x60 image"):
        captions.run(ctx, {})
    assert client.accounting.summary()["errors"] == {"box_outside": 2}
    scripted.faults = {"region_captions": ["outside"]}
    out = captions.run(ctx, {})
    assert len(out["regions"]) == 3
    for region in out["regions"]:
        x0, y0, x1, y1 = region["box"]
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 60


def test_429_waits_retry_after(scripted, monkeypatch):
    scripted.faults = {"mask_check": ["429:1"]}
    client = _client(scripted, monkeypatch=monkeypatch)
    start = time.monotonic()
    assert client.ask(_check_request())["output"] is True
    assert time.monotonic() - start >= 0.95  # the server's Retry-After, not the 0.05 s backoff
    acc = client.accounting.summary()
    assert acc["errors"] == {"http_429": 1} and acc["retry_wait_s"] == pytest.approx(1.0)
    times = [r["time"] for r in scripted.requests]
    assert times[1] - times[0] >= 0.95


def test_503_and_500_back_off_then_fail(scripted, monkeypatch):
    scripted.faults = {"mask_check": ["503:0.2", "500"]}
    client = _client(scripted, monkeypatch=monkeypatch)
    assert client.ask(_check_request())["output"] is True
    assert client.accounting.summary()["errors"] == {"http_5xx": 2}
    scripted.faults = {"mask_check": ["500"] * 3}
    with pytest.raises(TransientError, match="HTTP 500"):
        client.ask(_check_request())


def test_slow_reply_past_the_timeout_is_retried(scripted, monkeypatch):
    scripted.faults = {"mask_check": ["slow:3"]}
    client = _client(scripted, monkeypatch=monkeypatch, timeout=0.5)
    start = time.monotonic()
    assert client.ask(_check_request())["output"] is True
    assert time.monotonic() - start < 2.5  # did not wait for the slow reply
    assert client.accounting.summary()["errors"] == {"timeout": 1}


def test_auth_failure_stops_at_once(scripted, monkeypatch):
    scripted.faults = {"mask_check": ["401", "401"]}
    client = _client(scripted, monkeypatch=monkeypatch)
    with pytest.raises(FatalVLMError, match="HTTP 401"):
        client.ask(_check_request())
    assert len(scripted.requests) == 1


def test_concurrency_limit_holds(scripted, monkeypatch):
    scripted.faults = {"mask_check": ["slow:0.3"] * 6}
    client = _client(scripted, monkeypatch=monkeypatch, concurrency=2)
    threads = [threading.Thread(target=client.ask, args=(_check_request(),)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(scripted.requests) == 6 and scripted.max_inflight == 2


def test_no_key_no_header(scripted, monkeypatch):
    monkeypatch.delenv("DATAENGINE_TEST_KEY", raising=False)
    client = _client(scripted, key=False, monkeypatch=monkeypatch)
    client.ask(_check_request())
    assert scripted.requests[0]["auth"] is None


def test_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_box_formats_map_to_original_pixels():
    # pixel boxes on a half-size view double; Gemini's [ymin, xmin, ymax, xmax] / 1000 scale to the image
    assert to_pixels([10, 20, 30, 40], "pixel_xyxy", 100, 50, 0.5) == [20, 40, 60, 80]
    assert to_pixels([100, 200, 500, 1000], "norm1000_yxyx", 100, 50, 0.5) == pytest.approx([40, 10, 200, 50])
    with pytest.raises(ReplyError, match="inverted"):
        to_pixels([30, 20, 10, 40], "pixel_xyxy", 100, 50, 1.0)
    with pytest.raises(ReplyError, match="outside"):
        to_pixels([0, 0, 1200, 10], "norm1000_yxyx", 100, 50, 1.0)


def test_gemini_backend_speaks_generate_content(scripted, monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    scripted.faults = {"region_captions": ["429:0.5"]}
    backend = GeminiBackend("gemini-2.5-flash", base_url=scripted.gemini_url, timeout=10)
    client = VLMClient(backend, RetryPolicy(attempts=3, timeout=10, backoff=0.05), 2, Accounting())
    request = VLMRequest("region_captions", "label regions", [IMAGE], captions_schema(8))
    reply = client.ask(request)
    assert len(reply["regions"]) == 3
    first, second = scripted.requests
    assert first["protocol"] == "gemini" and ":generateContent" in first["path"] and "gemini-2.5-flash" in first["path"]
    assert first["auth"] == SECRET  # x-goog-api-key header, never the URL
    assert SECRET not in first["path"]
    config = second["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and "regions" in config["responseSchema"]["properties"]
    assert second["time"] - first["time"] >= 0.45  # Retry-After honoured through the SDK's error
    acc = client.accounting.summary()
    assert acc["errors"] == {"http_429": 1} and acc["input_tokens"] > 0
    assert backend.box_format == "norm1000_yxyx"


def test_a_key_given_as_the_variable_name_is_refused_without_echo():
    from converseg_ros.dataengine.config import resolve_config
    from converseg_ros.errors import ConverSegError

    with pytest.raises(ConverSegError) as err:
        resolve_config({"vlm": "openai", "model": "m", "api_key_env": SECRET}, None)
    assert SECRET not in str(err.value) and "NAME of an environment variable" in str(err.value)
    assert resolve_config({"vlm": "openai", "model": "m", "api_key_env": "MY_KEY"}, None)["api_key_env"] == "MY_KEY"
