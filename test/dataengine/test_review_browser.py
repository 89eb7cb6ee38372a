"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
load, accept one with the keyboard, reject one, reload — the decisions are kept, on the page and on disk."""

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
    yield run, f"http://127.0.0.1:{server.server_address[1]}/"
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
