"""``python -m apiary.settings [--markdown]``: print every setting's help, by plane."""

from __future__ import annotations

import argparse

from apiary.settings._help import settings_reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apiary.settings",
        description="Print every APIARY_* setting: its plane, default and description.",
    )
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/configuration.md (Markdown tables)")
    args = parser.parse_args(argv)
    print(settings_reference(markdown=args.markdown), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
