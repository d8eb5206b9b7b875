"""Open a real report in headless Chromium: no console errors, the sections are there, the page is not blank."""

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deepscope.report import SECTIONS, Figure, Section, Text, audit, figure_to_svg, new_figure, register_section

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _browser_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


if not _browser_available() and not os.environ.get("DEEPSCOPE_REQUIRE_BROWSER"):
    pytest.skip(
        "headless Chromium is not installed (apt-get install -y chromium chromium-driver); "
        "set DEEPSCOPE_REQUIRE_BROWSER=1 to make this a failure instead of a skip",
        allow_module_level=True,
    )


def _curve_section(context):
    figure, axes = new_figure(5, 3)
    steps = np.arange(20)
    axes.plot(steps, np.exp(-steps / 5.0), label="train")
    axes.plot(steps, np.exp(-steps / 8.0) + 0.1, label="test")
    axes.legend()
    axes.set_xlabel("epoch")
    return Section(
        summary="A test figure drawn into the report.",
        blocks=[Text("Two curves."), Figure(figure_to_svg(figure), caption="loss")],
    )


def _failing_section(context):
    raise RuntimeError("this section fails on purpose")


@pytest.fixture
def report(tmp_path):
    """A quick audit of a tiny CNN with every registered section plus a figure and a failing section."""
    register_section("zz_browser_curve", title="Browser curve", order=1001)(_curve_section)
    register_section("zz_browser_failing", title="Browser failing", order=1002)(_failing_section)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
        )
        train = (torch.rand(48, 1, 8, 8), torch.randint(0, 3, (48,)))
        test = (torch.rand(24, 1, 8, 8), torch.randint(0, 3, (24,)))
        # The cheap built-in sections plus the two test ones; every section is checked in the slow demo test.
        keys = [key for key in ("model_card", "training") if key in SECTIONS] + [
            "zz_browser_curve",
            "zz_browser_failing",
        ]
        paths = audit(model, (train, test), out=tmp_path / "report", sections=keys, model_name="tiny cnn")
        titles = [entry["title"] for entry in json.loads(paths.json.read_text())["sections"].values()]
        yield paths, titles
    finally:
        SECTIONS.pop("zz_browser_curve", None)
        SECTIONS.pop("zz_browser_failing", None)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not _browser_available():
        pytest.fail(
            f"DEEPSCOPE_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing: "
            "apt-get install -y chromium chromium-driver (scripts/test.sh does this)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1600",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def check_renders(browser, html_path: Path, titles: list[str]) -> None:
    """No console errors, nothing fetched, the section headings in order, an SVG, a non-blank screenshot."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    browser.get(html_path.resolve().as_uri())
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
    # Nothing was fetched over the network (resource timing lists every http(s) font, image, script, style).
    assert browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
    assert "http://" not in browser.page_source and "https://" not in browser.page_source
    headings = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "section h2")]
    assert headings == titles
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg")) >= 1
    assert browser.find_element(By.CSS_SELECTOR, "h1").text.startswith("deepscope report: ")
    # The screenshot is not blank: pixels vary (a blank page is one uniform colour, variance 0).
    pixels = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L"), dtype=float)
    assert pixels.std() > 5.0, pixels.std()
    assert len(np.unique(pixels)) > 16


def test_report_renders_in_headless_chromium(report, browser):
    paths, titles = report
    assert "Browser curve" in titles and "Browser failing" in titles
    check_renders(browser, paths.html, titles)


@pytest.mark.slow
def test_demo_report_renders_with_every_section(browser, tmp_path):
    from deepscope.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "3"]) == 0
    sections = json.loads((out / "results.json").read_text())["sections"]
    assert list(sections) == [key for key, _ in sorted(SECTIONS.items(), key=lambda item: (item[1].order, item[0]))]
    check_renders(browser, out / "report.html", [entry["title"] for entry in sections.values()])
