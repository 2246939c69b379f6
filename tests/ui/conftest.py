"""The browser tests' fixtures, from tests/ui/_browser.py (one installation, one sign-in,
a signed-in page per test)."""

from _browser import installation, page, signed_in_state

__all__ = ["installation", "page", "signed_in_state"]
