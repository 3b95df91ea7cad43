"""e2e fixtures: the headless Chromium `browser` (see chromium.py)."""

from chromium import browser  # noqa: F401
