"""Headless Chromium from Debian's packages, driven by Selenium through Debian's
chromedriver: both paths are given, so Selenium Manager never downloads a browser or a
driver (``make browser-tools`` installs the packages)."""

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def require_browser() -> None:
    """Skip when the packages are missing, except in CI, where that is a failure."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    packages = "apt-get install chromium chromium-driver"
    message = f"{', '.join(missing)} missing: run `make browser-tools` ({packages})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def chromium(download_dir: Path) -> webdriver.Chrome:
    """A headless Chromium, 1280 x 1000, in its own profile."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        f"--user-data-dir={download_dir}",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
