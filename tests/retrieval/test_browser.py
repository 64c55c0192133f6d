"""``dim-search serve`` in a real browser: Debian's Chromium, driven by Selenium.

The page is loaded from a real server (on a free port, in a thread) over a tiny
index of the planted-duplicates folder with the test-only thumbnail features.
Skipped where Chromium or chromedriver is missing, except under ``CI=true``,
where a missing browser fails. The screenshot is saved in the test's temporary
folder; set ``DIM_SEARCH_SCREENSHOT=docs/images/dim-search-serve.png`` to also
write it where the docs show it.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

from retrieval.index import Index
from retrieval.serve import start_server
from tests.retrieval.conftest import PLANTED_DUPLICATES, thumbnail_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_SECONDS = 20


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI installs it with `apt-get install -y chromium chromium-driver` (see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        _missing(f"no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(duplicates_dir: Path, tmp_path: Path):
    index = Index.build(thumbnail_model(), duplicates_dir, tmp_path / "index", num_workers=0)
    server = start_server(index, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index, f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_click_walk_upload_share_and_screenshot(browser, served, duplicates_dir: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    index, url = served
    wait = WebDriverWait(browser, WAIT_SECONDS)

    def texts(selector: str) -> list[str]:
        return [node.text for node in browser.find_elements(By.CSS_SELECTOR, selector)]

    def query_is(text: str) -> None:
        wait.until(seen.text_to_be_present_in_element((By.ID, "query-path"), text))

    browser.get(url)
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile img")) == len(index))
    wait.until(lambda driver: all(image.get_property("naturalWidth") > 0
                                  for image in driver.find_elements(By.CSS_SELECTOR, "#grid .tile img")))

    # Click an image: its neighbours, with scores, itself first; the view is in the URL.
    browser.find_element(By.CSS_SELECTOR, '#grid .tile[title="a/photo00.png"]').click()
    query_is("a/photo00.png")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .tile")) == 10)
    scores = [float(score) for score in texts("#results .tile .score")]
    assert scores[0] == pytest.approx(1.0, abs=1e-3) and scores == sorted(scores, reverse=True)
    assert texts("#results .tile .name")[:2] == ["a/photo00.png", PLANTED_DUPLICATES["a/photo00.png"]]
    assert scores[1] >= 0.95
    first_id = next(record.id for record in index.records if record.path == "a/photo00.png")
    assert f"id={first_id}" in browser.current_url

    Select(browser.find_element(By.ID, "k")).select_by_visible_text("5")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .tile")) == 5)
    assert f"id={first_id}&k=5" in browser.current_url
    original = browser.find_element(By.LINK_TEXT, "open the original").get_attribute("href")
    assert original == f"{url}images/{first_id}"

    # Walk on to a neighbour, then back.
    browser.find_elements(By.CSS_SELECTOR, "#results .tile")[2].click()
    wait.until(lambda driver: driver.find_element(By.ID, "query-path").text != "a/photo00.png")
    walked_to = browser.find_element(By.ID, "query-path").text
    assert texts("#results .tile .name")[0] == walked_to
    browser.back()
    query_is("a/photo00.png")

    # Upload a query through the file input: the re-encoded copy finds its original.
    browser.find_element(By.ID, "upload").send_keys(str(duplicates_dir / PLANTED_DUPLICATES["a/photo03.png"]))
    query_is("uploaded: photo03.jpg")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .tile")) == 5)
    assert set(texts("#results .tile .name")[:2]) == {"a/photo03.png", PLANTED_DUPLICATES["a/photo03.png"]}

    # Follow a shared URL.
    second_id = next(record.id for record in index.records if record.path == "b/photo07.png")
    browser.get(f"{url}?id={second_id}&k=3")
    query_is("b/photo07.png")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .tile")) == 3)
    assert texts("#results .tile .name")[0] == "b/photo07.png"

    # The near-duplicate tab.
    browser.find_element(By.ID, "tab-duplicates").click()
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#groups .group")) == 2)

    browser.get(f"{url}?id={first_id}&k=10")
    query_is("a/photo00.png")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .tile img")) == 10)
    wait.until(lambda driver: all(image.get_property("naturalWidth") > 0
                                  for image in driver.find_elements(By.CSS_SELECTOR, "#results .tile img")))
    assert not browser.find_element(By.ID, "message").text  # no error shown anywhere on the way
    screenshot = tmp_path / "dim-search-serve.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG" and picture.width >= 800
    if os.environ.get("DIM_SEARCH_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["DIM_SEARCH_SCREENSHOT"])
