"""The page at / in a real headless Chromium, against the real server."""
import json
import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
try:
    from playwright import sync_api as playwright_api
except ImportError:
    playwright_api = None
MISSING = ("playwright is not installed (pip install -r requirements-dev.txt)" if playwright_api is None
           else f"no browser at {CHROMIUM}: apt-get install chromium (.ci/run does)" if not CHROMIUM.exists() else "")
if MISSING and os.environ.get("CI"):  # in CI the page must be tested: a missing browser fails
    raise RuntimeError(f"the page tests cannot run in CI: {MISSING}")
if MISSING:
    pytest.skip(MISSING, allow_module_level=True)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM), headless=True, viewport={"width": 390, "height": 844},  # a phone
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.goto(server["base"] + "/")
        yield page
        browser.close()


def test_typing_a_name_shows_language_bars(page):
    page.fill("#name", "Ślusàrski")
    page.wait_for_selector("#bars .bar")
    rows = page.locator("#bars .bar")
    assert rows.count() == 5
    assert page.text_content("#normalised") == "Read as: Slusarski"
    widths = [float(rows.nth(i).locator(".fill").evaluate("e => e.style.width").rstrip("%")) for i in range(5)]
    assert widths == sorted(widths, reverse=True) and 0 < sum(widths) <= 100.5
    assert page.text_content("#name-error") == ""
    page.wait_for_selector("#letters span")  # each letter of the name as read, shaded by its score
    assert "".join(page.locator("#letters span").all_text_contents()) == "Slusarski"
    assert page.text_content("#like").startswith("Like: ") and page.text_content("#like").count("(") == 3
    verdict = page.text_content("#verdict")  # the sure mark: the server's flag, shown in words
    assert verdict.startswith("✓ Sure") or verdict.startswith("? Not sure")


def test_the_page_takes_its_limits_from_the_server(page, server):
    page.wait_for_function("document.querySelector('#name').maxLength === 50")
    assert page.get_attribute("#temperature", "min") == "0.1" and page.get_attribute("#temperature", "max") == "2"


def test_generating_names_and_clicking_one_classifies_it(page):
    page.wait_for_function("document.querySelectorAll('#language option').length > 0")
    page.select_option("#language", "Russian")
    page.fill("#start", "RUS")
    page.click("#generate")
    page.wait_for_selector("#samples button")
    names = page.locator("#samples button").all_text_contents()
    assert [n[0] for n in names] == ["R", "U", "S"]
    page.evaluate("document.querySelector('#bars').replaceChildren()")  # bars left by an earlier test must not count
    page.locator("#samples button").first.click()
    page.wait_for_function(f"document.querySelector('#name').value === {json.dumps(names[0])}")
    page.wait_for_selector("#bars .bar")
    assert page.locator("#bars .bar").count() == 5


def test_a_name_without_letters_shows_the_error(page):
    page.fill("#name", "1234")
    page.wait_for_function("document.querySelector('#name-error').textContent.length > 0")
    assert "no letters" in page.text_content("#name-error")
    assert page.locator("#bars .bar").count() == 0
    page.fill("#start", "R2")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#sample-error').textContent.length > 0")
    assert "A-Z" in page.text_content("#sample-error")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing overflows a phone's width
