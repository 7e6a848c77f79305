"""A real headless Chromium for the viewer's tests (selenium + Debian's
``chromium`` and ``chromium-driver``), and reading its screenshots."""

from __future__ import annotations

import io
import os
import shutil
from typing import Any, Iterator, Tuple

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: the page's size in CSS pixels (= screenshot pixels: the scale factor is forced to 1)
WINDOW = (1400, 1000)
WAIT_S = 60  # generous: seven processes share two cores


def _binary(path: str, name: str) -> str:
    return path if os.path.exists(path) else (shutil.which(name) or "")


def chrome(tmp_path: Any) -> Iterator[Any]:
    """A headless Chromium driven by chromedriver; quit in ``finally``.
    Skips when the packages are missing."""
    chromium, driver_path = _binary(CHROMIUM, "chromium"), _binary(CHROMEDRIVER, "chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("the viewer's browser tests need selenium (pip install selenium)")
    if not chromium or not driver_path:
        pytest.skip(
            "the viewer's browser tests need Debian's chromium and chromium-driver packages "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them when it runs as root)"
        )
    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--force-device-scale-factor=1", "--force-color-profile=srgb", "--hide-scrollbars",
        "--autoplay-policy=no-user-gesture-required", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.set_window_size(*WINDOW)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    """Waits (on the DOM, polling) until ``condition(driver)`` is truthy; returns it."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message=f"waiting for {what}")


def screenshot(driver: Any) -> np.ndarray:
    """The viewport as a uint8 ``(H, W, 3)`` array."""
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))


def parse_rgb(text: str) -> Tuple[int, int, int]:
    """``"rgb(1, 2, 3)"`` -> ``(1, 2, 3)``."""
    parts = text[text.index("(") + 1 : text.index(")")].split(",")
    return tuple(int(float(p)) for p in parts[:3])  # type: ignore[return-value]


def near(shot: np.ndarray, x: float, y: float, color: Tuple[int, int, int], radius: int = 2, tol: float = 30.0) -> bool:
    """Whether a pixel within ``radius`` of ``(x, y)`` has ``color`` (within ``tol``, Euclidean)."""
    xi, yi = int(round(x)), int(round(y))
    patch = shot[max(yi - radius, 0) : yi + radius + 1, max(xi - radius, 0) : xi + radius + 1].astype(float)
    return bool((np.linalg.norm(patch - np.asarray(color, float), axis=-1) <= tol).any())
