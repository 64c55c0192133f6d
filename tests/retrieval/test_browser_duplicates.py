"""The duplicates tab in a real browser: review the groups with the keyboard, then apply with confirmation.

Runs like ``test_browser.py`` (Debian's Chromium through Selenium, skipped where it
is missing unless ``CI=true``), on the planted-duplicates folder plus one exact copy.
The screenshot of the review is saved in the test's temporary folder; set
``DIM_SEARCH_DUPLICATES_SCREENSHOT=docs/images/dim-search-duplicates.png`` to also
write it where the guide shows it.
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
from tests.retrieval.conftest import thumbnail_model
from tests.retrieval.test_browser import WAIT_SECONDS, browser  # noqa: F401 - the browser fixture


@pytest.fixture
def served(duplicates_dir: Path, tmp_path: Path):
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-copy.png")
    index = Index.build(thumbnail_model(), duplicates_dir, tmp_path / "index", num_workers=0)
    server = start_server(index, "127.0.0.1", 0, move_to=tmp_path / "quarantine")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index, f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_review_with_the_keyboard_then_apply(  # noqa: F811 - browser is the imported fixture
    browser, served, duplicates_dir: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    index, url = served
    wait = WebDriverWait(browser, WAIT_SECONDS)

    def press(*keys: str) -> None:
        for key in keys:
            ActionChains(browser).send_keys(key).perform()

    def roles(number: int) -> dict[str, str]:
        """Path -> the role shown on each copy of group ``number`` (keep, move, or nothing when skipped)."""
        box = browser.find_element(By.CSS_SELECTOR, f'#groups .group[data-group="{number}"]')
        return {tile.get_attribute("title"): tile.find_element(By.CSS_SELECTOR, ".role").text.lower()
                for tile in box.find_elements(By.CSS_SELECTOR, ".copy")}

    def current() -> str:
        return browser.find_element(By.CSS_SELECTOR, "#groups .group.current").get_attribute("data-group")

    browser.set_window_size(1280, 1040)
    browser.get(f"{url}?tab=duplicates")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#groups .group")) == 3)
    wait.until(lambda driver: all(image.get_property("naturalWidth") > 0
                                  for image in driver.find_elements(By.CSS_SELECTOR, "#groups img")))
    titles = [node.text for node in browser.find_elements(By.CSS_SELECTOR, "#groups .section-title")]
    assert titles == ["Exact duplicates (same bytes)", "Near-duplicates"]
    assert browser.find_elements(By.CSS_SELECTOR, "#histogram-bars .bar.over")  # the duplicates' scores, in red
    assert "6 of 15 images at or above 0.95" in browser.find_element(By.ID, "histogram-caption").text.replace("\n", " ")
    facts = [node.text for node in browser.find_elements(By.CSS_SELECTOR, '[title="copies/photo00-small.png"] .facts')]
    size = (duplicates_dir / "copies/photo00-small.png").stat().st_size
    assert facts[0] == f"40×40 · {size / 1000:.1f} kB" and facts[1].startswith("20")  # pixels, bytes, date

    # Review: the rule (largest) marked a keeper in every group; change one, skip one.
    assert current() == "1" and roles(1) == {"b/photo07.png": "keep", "copies/photo07-copy.png": "move"}
    press("j")
    assert current() == "2" and roles(2) == {"a/photo00.png": "keep", "copies/photo00-small.png": "move"}
    press("2")
    assert roles(2) == {"a/photo00.png": "move", "copies/photo00-small.png": "keep"}
    press(Keys.ARROW_RIGHT)  # on to the next copy, round to the first
    assert roles(2) == {"a/photo00.png": "keep", "copies/photo00-small.png": "move"}
    press(Keys.ARROW_DOWN, "s")
    assert current() == "3" and set(roles(3).values()) == {""}
    assert "skipped" in browser.find_element(By.CSS_SELECTOR, '#groups .group[data-group="3"]').get_attribute("class")
    press("k")
    assert current() == "2" and browser.find_element(By.ID, "apply-moves").text == "Apply… (2 copies)"

    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = tmp_path / "dim-search-duplicates.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG" and picture.width >= 800
    if os.environ.get("DIM_SEARCH_DUPLICATES_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["DIM_SEARCH_DUPLICATES_SCREENSHOT"])

    # Apply asks first: Escape cancels, Enter confirms.
    press("a")
    wait.until(lambda driver: driver.find_element(By.ID, "confirm").get_attribute("open") is not None)
    assert "Move 2 copies from 2 groups to " in browser.find_element(By.ID, "confirm-text").text
    press(Keys.ESCAPE)
    wait.until(lambda driver: driver.find_element(By.ID, "confirm").get_attribute("open") is None)
    assert not (tmp_path / "quarantine").exists()
    press("a")
    wait.until(lambda driver: driver.find_element(By.ID, "confirm").get_attribute("open") is not None)
    press(Keys.ENTER)
    wait.until(lambda driver: "moved 2 copies from 2 groups" in driver.find_element(By.ID, "message").text)
    assert f"dim-search undo {index.directory}" in browser.find_element(By.ID, "message").text
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#groups .group")) == 1)
    quarantine = tmp_path / "quarantine"
    moved = sorted(path.relative_to(quarantine).as_posix() for path in quarantine.rglob("*.*"))
    assert moved == ["copies/photo00-small.png", "copies/photo07-copy.png"]
    assert (duplicates_dir / "a/photo00.png").is_file() and (duplicates_dir / "copies/photo03.jpg").is_file()
    assert len(Index.load(index.directory, model=thumbnail_model())) == 13
