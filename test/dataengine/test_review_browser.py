"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
load, accept one with the keyboard, reject one, reload — the decisions are kept, on the page and on disk.
Forgeries from a page on another origin (another local port) and from a file:// page — an auto-submitted
text/plain form, no-cors and CORS fetches, even knowing the token — change nothing, and the sample the
verifier rejected stays out of the exported training set."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.review import make_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium/chromedriver (scripts/bootstrap.sh installs Debian's chromium + chromium-driver as root)",
)


@pytest.fixture
def review(scripted, photo_dir, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(run, scripted.openai_url, "--images", str(photo_dir), "--families", "spatial,physics")) == 0
    server = make_server([run], "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield run, server.url
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _current(driver) -> str:
    return driver.find_element("id", "sample").get_attribute("data-id")


def _press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def test_accept_reject_reload(review, browser):
    run, url = review
    browser.get(url)
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    total = len(browser.find_elements("css selector", "#list li"))
    assert total > 2
    assert browser.find_element("id", "prompt").text
    assert browser.execute_script("return document.getElementById('overlay').naturalWidth") > 0

    first = _current(browser)
    _press(browser, "a")  # accept: saved, then the page moves to the next undecided sample
    _wait(browser, lambda d: _current(d) != first)
    second = _current(browser)
    _press(browser, "r")
    _wait(browser, lambda d: _current(d) != second)
    screenshots = os.environ.get("CONVERSEG_SCREENSHOT_DIR")
    if screenshots:
        browser.save_screenshot(str(Path(screenshots) / "review_page.png"))

    browser.refresh()
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    marks = {li.get_attribute("data-id"): li.get_attribute("class").split()
             for li in browser.find_elements("css selector", "#list li")}
    assert "accept" in marks[first] and "reject" in marks[second]
    assert sum("accept" in c or "reject" in c for c in marks.values()) == 2
    browser.find_element("css selector", f'#list li[data-id="{first}"]').click()
    _wait(browser, lambda d: d.find_element("id", "decision").get_attribute("data-decision") == "accept")
    counts = browser.find_element("id", "counts").text
    assert counts == f"{total} samples · 1 accepted · 1 rejected · {total - 2} undecided"

    saved = json.loads((run / "review.json").read_text())["decisions"]
    assert {k: v["decision"] for k, v in saved.items()} == {first: "accept", second: "reject"}

    browser.find_element("id", "undo").click()  # the button path too: undo clears the decision
    _wait(browser, lambda d: d.find_element("id", "decision").get_attribute("data-decision") == "")
    saved = json.loads((run / "review.json").read_text())["decisions"]
    assert set(saved) == {second}


ATTACK = """<!doctype html><html><body>
<form id="f" method="POST" action="{base}api/decision?token={token}" enctype="text/plain">
<input name='{{"id":"{sid}","decision":"accept","pad":"' value='"}}'></form>
<script>
const log = (t) => {{ document.body.dataset.log = (document.body.dataset.log || "") + t + ";"; }};
const body = JSON.stringify({{id: "{sid}", decision: "accept"}});
fetch("{base}api/decision?token={token}", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body}}).then(() => log("no-cors sent"), () => log("no-cors failed"));
fetch("{base}api/decision", {{method: "POST", headers: {{"Content-Type": "application/json",
  "X-Review-Token": "{token}"}}, body}}).then((r) => log("cors " + r.status), () => log("cors blocked"));
fetch("{base}api/samples", {{headers: {{"X-Review-Token": "{token}"}}}})
  .then((r) => r.text()).then((t) => log("samples readable " + t.length), () => log("samples blocked"));
setTimeout(() => {{ document.getElementById("f").submit(); }}, 3000);
</script></body></html>"""


def _serve(folder: Path):
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_forgeries_from_other_origins_change_nothing(review, browser, tmp_path, caplog, capsys):
    import logging
    from urllib.parse import urlsplit

    from converseg_ros.dataengine.samples import collect_samples, expand_runs

    run, url = review
    parts = urlsplit(url)
    base, token = f"http://{parts.netloc}/", parts.query.split("=", 1)[1]
    records, _, _ = collect_samples(expand_runs([run]))
    target = next(r for r in records if r.data["verdict"] == "reject")  # the verifier said no
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "attack.html").write_text(ATTACK.format(base=base, token=token, sid=target.id))
    caplog.set_level(logging.DEBUG, logger="converseg_ros.dataengine.review")
    other = _serve(evil)
    answers = {}
    try:
        for name, page in (("other origin", f"http://127.0.0.1:{other.server_address[1]}/attack.html"),
                           ("file://", (evil / "attack.html").as_uri())):
            caplog.clear()
            browser.get(page)

            def fetched(d):
                text = d.find_element("tag name", "body").get_attribute("data-log") or ""
                return text if text.count(";") >= 3 else False

            log = _wait(browser, fetched)  # the three fetches answered (or failed) before the form goes
            _wait(browser, lambda d: "attack" not in d.current_url)  # the form submission's answer page
            answers[name] = {"page": log, "form_answer": browser.find_element("tag name", "body").text[:200],
                             "server": [r.getMessage() for r in caplog.records]}
    finally:
        other.shutdown()
        other.server_close()
    for name, seen in answers.items():
        decisions = [m for m in seen["server"] if "/api/decision" in m]
        assert decisions and all(" 200 " not in m for m in decisions), (name, seen)
        assert "samples readable" not in seen["page"] and "cors 200" not in seen["page"], (name, seen)
    report = os.environ.get("CONVERSEG_REPORT_DIR")
    if report:
        Path(report, "forgeries.json").write_text(json.dumps(answers, indent=1))
    saved = json.loads((run / "review.json").read_text())["decisions"] if (run / "review.json").is_file() else {}
    assert target.id not in saved  # nothing was written
    assert main(["export", str(run), "--train", str(tmp_path / "out" / "dataset.jsonl")]) == 0
    rows = (tmp_path / "out" / "dataset.jsonl").read_text()
    assert target.id not in rows  # the verifier's reject stands
    capsys.readouterr()

    browser.get(url)  # the real page still works
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    first = _current(browser)
    _press(browser, "a")
    _wait(browser, lambda d: _current(d) != first)
    assert json.loads((run / "review.json").read_text())["decisions"][first]["decision"] == "accept"
