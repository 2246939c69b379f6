"""Loading and checking the deployment files offline: kuberay/ manifests, CRD schemas.

:func:`strict_schema` turns a CRD's openAPIV3Schema into one that rejects unknown fields the
way a Kubernetes API server with strict field validation does: wherever the schema declares
an object's ``properties`` (and neither ``additionalProperties`` nor
``x-kubernetes-preserve-unknown-fields``), any other key is an error. An object declaring
neither properties nor additionalProperties would be pruned to ``{}`` by the API server, so
it accepts no keys either. Value constraints inside ``allOf``/``anyOf``/``oneOf``/``not``
are left alone: a structural schema declares no fields there.
"""

from __future__ import annotations

import base64
import copy
import functools
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY_DIR = REPO / "kuberay"
CLUSTER_YAML = REPO / "cluster.yaml"
#: `ray up` recipes, one Ray cluster per plane, and the env file each copies to its nodes
#: (templates: <env file>.example).
CLUSTER_FILES = {"data": REPO / "cluster.yaml", "control": REPO / "cluster-cp.yaml"}
CLUSTER_ENV_FILES = {"data": "apiary-dp.env", "control": "apiary-cp.env"}
CRD_DIR = REPO / "tests" / "fixtures" / "kuberay-crds"
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
#: Kubernetes versions whose schemas (from kubernetes-validate) the core kinds must pass.
K8S_VERSIONS = ("1.30", "1.37")
CORE_KINDS = {
    "Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment", "Job",
    "PersistentVolumeClaim", "PodDisruptionBudget", "NetworkPolicy",
}
#: Where a pod template sits in each kind that has one.
POD_TEMPLATE_PATHS = {
    "StatefulSet": ("spec", "template"),
    "Deployment": ("spec", "template"),
    "Job": ("spec", "template"),
}
Doc = dict[str, Any]


def kustomization() -> Doc:
    doc: Doc = yaml.safe_load((KUBERAY_DIR / "kustomization.yaml").read_text())
    return doc


def load_documents() -> list[Doc]:
    """Every resource of kuberay/kustomization.yaml, with the kustomization's namespace set
    (as ``kubectl apply -k`` would) on all but cluster-scoped kinds."""
    kust = kustomization()
    docs: list[Doc] = []
    for name in kust["resources"]:
        for doc in yaml.safe_load_all((KUBERAY_DIR / name).read_text()):
            if doc is None:
                continue
            doc["_file"] = name
            if doc["kind"] != "Namespace":
                doc["metadata"].setdefault("namespace", kust["namespace"])
            docs.append(doc)
    return docs


def without_file(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "_file"}


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# --- CRD schemas ------------------------------------------------------------------------


@functools.cache
def crd_schema(kind: str, version: str = "v1") -> Doc:
    """The openAPIV3Schema the API server applies to ``kind`` at ``version`` (as published)."""
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: Doc = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{kind} has no version {version}")


def strict_schema(schema: Doc) -> Doc:
    """A copy of ``schema`` that rejects undeclared fields (module docstring)."""
    strict = copy.deepcopy(schema)

    def walk(node: Any, *, root: bool = False) -> None:
        if not isinstance(node, dict):
            return
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        declares_fields = "properties" in node
        bare_object = node.get("type") == "object" and not node.get(
            "x-kubernetes-embedded-resource")
        if not preserve and "additionalProperties" not in node and (
            declares_fields or bare_object
        ):
            node["additionalProperties"] = False
        for name, child in node.get("properties", {}).items():
            if root and name == "metadata":
                continue  # ObjectMeta: checked against Kubernetes' own schema instead
            walk(child)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(strict, root=True)
    return strict


@functools.cache
def strict_crd_validator(kind: str, version: str = "v1") -> jsonschema.protocols.Validator:
    schema = strict_schema(crd_schema(kind, version))
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    validator: jsonschema.protocols.Validator = validator_cls(schema)
    return validator


def crd_errors(doc: Doc, *, strict: bool = True) -> list[str]:
    """Errors of a RayService/RayCluster/RayJob document against its CRD schema."""
    kind = doc["kind"]
    group, _, version = doc["apiVersion"].partition("/")
    assert group == "ray.io", doc["apiVersion"]
    if strict:
        validator = strict_crd_validator(kind, version)
    else:
        schema = crd_schema(kind, version)
        validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(without_file(doc))
    ]


# --- Kubernetes' own schemas ------------------------------------------------------------


def k8s_errors(doc: Doc, k8s_version: str) -> list[str]:
    """Errors of a core-kind document against Kubernetes' strict JSON schema (unknown
    fields rejected), from the schemas that kubernetes-validate ships."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(without_file(doc), k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path) or "<root>"
        return [f"{path}: {exc.message}"]
    return []


def object_meta_errors(meta: Doc, k8s_version: str) -> list[str]:
    """Errors of ``meta`` as an ObjectMeta (checked by wrapping it in a ConfigMap)."""
    return k8s_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, k8s_version)


# --- pods and their environment ---------------------------------------------------------


def pod_templates(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """(label, pod template) of every pod a document makes."""
    if doc["kind"] in POD_TEMPLATE_PATHS:
        node: Any = doc
        for key in POD_TEMPLATE_PATHS[doc["kind"]]:
            node = node[key]
        yield doc["metadata"]["name"], node
    elif doc["kind"] == "RayService":
        yield from ray_pod_templates(doc)


def ray_pod_templates(rayservice: Doc) -> Iterator[tuple[str, Doc]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]


def data_of(docs: list[Doc], kind: str, name: str) -> dict[str, str]:
    doc = one(docs, kind, name)
    data: dict[str, str] = dict(doc.get("data", {}))
    data.update(doc.get("stringData", {}))
    return data


def container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container starts with: envFrom sources, then env entries (values
    from ConfigMaps and Secrets resolved; fieldRefs as ``<fieldRef:path>``)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(data_of(docs, "ConfigMap", source["configMapRef"]["name"]))
        else:
            env.update(data_of(docs, "Secret", source["secretRef"]["name"]))
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]
        if "fieldRef" in ref:
            env[entry["name"]] = f"<fieldRef:{ref['fieldRef']['fieldPath']}>"
            continue
        kind, key = ("ConfigMap", "configMapKeyRef") if "configMapKeyRef" in ref else (
            "Secret", "secretKeyRef")
        data = data_of(docs, kind, ref[key]["name"])
        if ref[key]["key"] in data:
            env[entry["name"]] = data[ref[key]["key"]]
    return env


# --- settings -----------------------------------------------------------------------------

PLACEHOLDER_TOKEN = re.compile(r"CHANGE-ME[-A-Za-z0-9_]*")


def fill_placeholders(env: dict[str, str]) -> dict[str, str]:
    """``env`` with every CHANGE-ME token replaced as an operator would: the same token by
    the same value everywhere (so passwords stay consistent), the envelope key by a key."""
    chosen: dict[str, str] = {}

    def value_for(match: re.Match[str]) -> str:
        token = match.group(0)
        if token not in chosen:
            chosen[token] = (
                base64.urlsafe_b64encode(os.urandom(32)).decode()
                if "envelope" in token
                else "x" + secrets.token_hex(12)
            )
        return chosen[token]

    return {k: PLACEHOLDER_TOKEN.sub(value_for, v) for k, v in env.items()}
