"""What ``apiary up`` says of the web UI: the URL when the build it serves is there (the
package's, or ``APIARY_UI_DIR``), else why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.cli import _web_ui_line
from apiary.settings import ApiarySettings


def test_the_ui_dir_setting_is_read_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApiarySettings(data_dir=tmp_path).ui_dir is None  # the package's build
    monkeypatch.setenv("APIARY_UI_DIR", str(tmp_path / "build"))
    assert ApiarySettings(data_dir=tmp_path).ui_dir == tmp_path / "build"


def test_the_web_ui_line_names_the_url_only_when_the_build_is_there(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    cp = "http://127.0.0.1:8080/cp"
    assert _web_ui_line(cp, build).startswith("not built")
    (build / "index.html").write_text("<!doctype html>")
    assert _web_ui_line(cp, build) == f"{cp}/  (sign in with the admin account)"
    assert _web_ui_line("", build) == "-"
