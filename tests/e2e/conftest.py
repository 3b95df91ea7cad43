"""e2e fixtures: headless Chromium, as `browser` (CDP) and `pw_page` (Playwright); see chromium.py."""

from chromium import browser, pw_page  # noqa: F401
