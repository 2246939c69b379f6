"""kuberay/rayservice-data-plane.yaml: a dedicated data plane, federated with a shared control
plane elsewhere, checked offline like the rest of kuberay/ (test_kuberay.py).

It is applied in the data plane's own namespace together with kustomization.yaml's documents
less the control plane's (control-plane.yaml, apiary-cp-secrets) and rayservice.yaml. Its
pods hold no control-plane secret, carry the bootstrap token and the data plane's envelope
key, name the shared control plane, mount the identity volume at the data directory, and
the head registers the identity (``python -m apiary.startup.cluster identity``) before Ray
starts."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from apiary.settings import load_settings, plane_secrets
from apiary.startup.cluster import main as cluster_main
from apiary.startup.cluster import serve_config
from apiary.startup.plane_checks import PLACEHOLDER, cluster_problems

from ._manifests import (
    CORE_KINDS,
    K8S_VERSIONS,
    KUBERAY_DIR,
    Doc,
    container_env,
    crd_errors,
    fill_placeholders,
    find,
    k8s_errors,
    load_documents,
    one,
    ray_pod_templates,
)
from .conftest import SetEnv

FILE = "rayservice-data-plane.yaml"
#: What a dedicated data plane's namespace holds besides this file.
NOT_THERE = {"rayservice.yaml", "control-plane.yaml"}


def _dedicated() -> list[Doc]:
    docs = [d for d in load_documents() if d["_file"] not in NOT_THERE
            and not (d["kind"] == "Secret" and d["metadata"]["name"] == "apiary-cp-secrets")]
    for doc in yaml.safe_load_all((KUBERAY_DIR / FILE).read_text()):
        doc["_file"] = FILE
        doc["metadata"].setdefault("namespace", "apiary-dp")
        docs.append(doc)
    return docs


DOCS = _dedicated()
OWN = [d for d in DOCS if d["_file"] == FILE]


def _rayservice() -> Doc:
    return one(DOCS, "RayService", "apiary-dp")


def _containers() -> list[tuple[str, Doc]]:
    """Every container of every Ray pod, init containers included."""
    return [(f"{group}/{c['name']}", c) for group, template in ray_pod_templates(_rayservice())
            for c in [*template["spec"].get("initContainers", []),
                      *template["spec"]["containers"]]]


def _env() -> dict[str, str]:
    return container_env(DOCS, _containers()[0][1])


def _ids(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_not_applied_with_the_shared_kustomization() -> None:
    assert FILE not in yaml.safe_load((KUBERAY_DIR / "kustomization.yaml").read_text())[
        "resources"]
    names = [(d["kind"], d["metadata"]["name"]) for d in DOCS]
    assert len(names) == len(set(names)), "a name clashes with the shared manifests"
    assert [d["metadata"]["name"] for d in find(DOCS, "RayService")] == ["apiary-dp"]


@pytest.mark.parametrize("doc", [d for d in OWN if d["kind"] == "RayService"], ids=_ids)
def test_the_rayservice_passes_the_strict_crd_schema(doc: Doc) -> None:
    assert crd_errors(doc) == []


def test_the_strict_crd_schema_catches_a_misspelt_init_container_field() -> None:
    broken = copy.deepcopy(_rayservice())
    head = broken["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head["initContainers"][0]["commnd"] = head["initContainers"][0].pop("command")
    assert any("commnd" in e for e in crd_errors(broken))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d for d in OWN if d["kind"] in CORE_KINDS], ids=_ids)
def test_its_core_documents_pass_the_kubernetes_schema(doc: Doc, version: str) -> None:
    assert k8s_errors(doc, version) == []


def test_serve_config_is_the_data_planes() -> None:
    assert yaml.safe_load(_rayservice()["spec"]["serveConfigV2"]) == serve_config("data")


def test_pods_hold_no_control_plane_secret_and_the_data_planes_own() -> None:
    forbidden = {f"APIARY_{name.upper()}" for name in plane_secrets("control")}
    envs = {name: container_env(DOCS, container) for name, container in _containers()}
    assert set(envs) == {"head/identity", "head/ray-head", "writers/ray-worker",
                         "evaluators/ray-worker"}
    for name, env in envs.items():
        assert forbidden.isdisjoint(env), (name, forbidden & set(env))
        assert env == envs["head/ray-head"], name  # every Ray process sees the same
    env = envs["head/ray-head"]
    assert "APIARY_BOOTSTRAP_TOKEN" in env
    assert "APIARY_DP_ENVELOPE_KEY" in env
    # The shared control plane, not the in-cluster one of the shared kustomization.
    assert env["APIARY_CONTROL_PLANE_URL"].startswith("https://CHANGE-ME")
    for _, container in _containers():
        refs = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        assert refs == {"apiary-dp-secrets", "apiary-dp-federation"}


def test_the_template_is_refused_until_filled_then_is_a_data_plane_configuration(
    set_env: SetEnv,
) -> None:
    set_env(_env())
    problems = cluster_problems(load_settings(), "data")
    for name in ("APIARY_BOOTSTRAP_TOKEN", "APIARY_CONTROL_PLANE_URL", "APIARY_DP_ENVELOPE_KEY"):
        assert any(p.startswith(name) and PLACEHOLDER in p for p in problems), name
    set_env(fill_placeholders(_env()))
    settings = load_settings()
    assert cluster_problems(settings, "data") == []
    assert settings.federated  # a bootstrap token: the builders need the identity


def test_every_ray_pod_mounts_the_identity_volume_at_the_data_directory() -> None:
    claim = one(DOCS, "PersistentVolumeClaim", "apiary-dp-identity")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod signs with the key
    data_dir = Path(_env()["APIARY_DATA_DIR"])
    for group, template in ray_pod_templates(_rayservice()):
        spec = template["spec"]
        [volume] = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == "apiary-dp-identity"
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]
                      if m["name"] == volume["name"]]
            assert mounts, (group, container["name"])
            assert data_dir.is_relative_to(mounts[0]), (group, container["name"])
            # A subdirectory: Apiary creates it owner-only (a mount root is not its own).
            assert data_dir != mounts[0]


def test_the_head_registers_its_identity_before_ray_starts(
    set_env: SetEnv, capsys: pytest.CaptureFixture[str],
) -> None:
    head = _rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    [init] = head["initContainers"]
    assert init["command"][:3] == ["python", "-m", "apiary.startup.cluster"]
    command = init["command"][3:]
    # The command exists, and refuses the unfilled template (exit 2, every problem named).
    set_env(_env())
    assert cluster_main(command) == 2
    assert "APIARY_BOOTSTRAP_TOKEN still holds the template placeholder" in \
        capsys.readouterr().err
    assert shlex.join(command) == "identity"


def test_the_ingest_service_reaches_http_and_otlp_grpc_on_every_ray_pod() -> None:
    service = one(DOCS, "Service", "apiary-dp-ingest")
    pods = [t for _, t in ray_pod_templates(_rayservice())]
    selector = service["spec"]["selector"]
    assert all(all(t["metadata"]["labels"].get(k) == v for k, v in selector.items())
               for t in pods)
    declared: list[set[Any]] = [{p["name"] for c in t["spec"]["containers"]
                                 for p in c["ports"]} for t in pods]
    for port in service["spec"]["ports"]:
        assert all(port["targetPort"] in names for names in declared), port
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 4317}
