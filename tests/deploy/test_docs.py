"""docs/deploy.md names only real settings and files, and every setting a cluster requires."""

from __future__ import annotations

import re

from apiary.settings import ApiarySettings
from apiary.startup.plane_checks import PLANES, cluster_problems

from ._manifests import REPO
from .conftest import SetEnv

DOC = (REPO / "docs" / "deploy.md").read_text()


def test_every_apiary_variable_in_the_doc_is_a_setting() -> None:
    named = set(re.findall(r"\bAPIARY_[A-Z0-9_]+\b", DOC))
    settings_env = {f"APIARY_{name.upper()}" for name in ApiarySettings.model_fields}
    assert named - settings_env == set()
    assert len(named) > 10


def test_the_doc_lists_every_variable_a_cluster_requires(set_env: SetEnv) -> None:
    set_env({})
    required = {p.split(" ", 1)[0] for plane in PLANES
                for p in cluster_problems(ApiarySettings(), plane) if " is unset" in p}
    table = set(re.findall(r"^\| `(APIARY_[A-Z0-9_]+)`", DOC, re.M))
    assert required
    assert required <= table


def test_the_files_the_doc_names_exist() -> None:
    for path in set(re.findall(
            r"`((?:kuberay|docs)/[\w./-]+|cluster(?:-cp)?\.yaml|apiary-[cd]p\.env\.example)`",
            DOC)):
        if path.endswith("/"):
            assert (REPO / path).is_dir(), path
        else:
            assert (REPO / path).is_file(), path
