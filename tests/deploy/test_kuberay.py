"""kuberay/: every document checked offline as an API server with strict field validation
would check it, plus the cross-references no schema sees.

- RayService (and any RayCluster/RayJob): the KubeRay CRD's openAPIV3Schema from
  tests/fixtures/kuberay-crds/ (KubeRay v1.7.0+, vendored), made strict
  (:func:`._manifests.strict_schema`: undeclared fields rejected), and its metadata against
  Kubernetes' ObjectMeta.
- Core kinds: Kubernetes' strict JSON schemas shipped by kubernetes-validate (offline).
- serveConfigV2: Ray Serve's own schema, strict, and equal to what the code deploys.
- Cross-references: Service selectors and ports, ConfigMap/Secret references, env var names
  against the settings object, store URLs against Services and credentials, NATS config
  (checked by nats-server itself), the autoscaler's view of the worker groups, and the
  PostgreSQL init script run against a real server.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import re
import secrets
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import ray
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from apiary.deployments.control_plane import ROUTE_PREFIX as CP_ROUTE_PREFIX
from apiary.queue import NatsServer, nats_server_binary
from apiary.settings import ApiarySettings, load_settings
from apiary.startup.cluster import (
    EVALUATOR_RESOURCE,
    SERVE_HTTP_PORT,
    WRITER_RESOURCE,
    cluster_serve_environment,
    serve_config,
)
from apiary.startup.plane_checks import PLACEHOLDER, Plane, cluster_problems

from ._manifests import (
    CORE_KINDS,
    K8S_VERSIONS,
    KUBERAY_DIR,
    REPO,
    Doc,
    container_env,
    crd_errors,
    data_of,
    fill_placeholders,
    find,
    k8s_errors,
    kustomization,
    load_documents,
    object_meta_errors,
    one,
    pod_templates,
    ray_pod_templates,
    strict_schema,
)
from .conftest import SetEnv

DOCS = load_documents()
RAY_KINDS = {"RayService", "RayCluster", "RayJob"}
AWS_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
#: The RayService (a Ray cluster of its own) of each plane.
RAYSERVICES: dict[Plane, str] = {"data": "apiary", "control": "apiary-cp"}


def _ids(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _rayservice(docs: list[Doc], plane: Plane = "data") -> Doc:
    return one(docs, "RayService", RAYSERVICES[plane])


def _ray_containers(docs: list[Doc], plane: Plane = "data") -> list[tuple[str, Doc]]:
    return [
        (group, container)
        for group, template in ray_pod_templates(_rayservice(docs, plane))
        for container in template["spec"]["containers"]
    ]


def _ray_env(docs: list[Doc], plane: Plane = "data") -> dict[str, str]:
    return container_env(docs, _ray_containers(docs, plane)[0][1])


def _nats_conf(docs: list[Doc]) -> str:
    return data_of(docs, "ConfigMap", "nats-config")["nats.conf"]


# --- the set of files -----------------------------------------------------------------------


def test_kustomization_applies_every_manifest_and_only_known_kinds(docs: list[Doc]) -> None:
    listed = set(kustomization()["resources"])
    # A dedicated data plane's RayService goes to another namespace, instead of
    # rayservice.yaml and control-plane.yaml (test_kuberay_data_plane.py).
    on_disk = {p.name for p in KUBERAY_DIR.glob("*.yaml")} - {
        "kustomization.yaml", "rayservice-data-plane.yaml"}
    assert listed == on_disk
    kinds = {d["kind"] for d in docs}
    assert kinds <= CORE_KINDS | RAY_KINDS, kinds - (CORE_KINDS | RAY_KINDS)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate kind/name"
    assert all(d["metadata"].get("namespace") == "apiary" for d in docs if d["kind"] != "Namespace")


# --- KubeRay CRDs, strict -------------------------------------------------------------------


@pytest.mark.parametrize("doc", [d for d in DOCS if d["kind"] in RAY_KINDS], ids=_ids)
def test_ray_documents_pass_the_strict_crd_schema(doc: Doc) -> None:
    assert crd_errors(doc) == []
    for version in K8S_VERSIONS:
        assert object_meta_errors(doc["metadata"], version) == []


def test_there_is_a_rayservice_per_plane(docs: list[Doc]) -> None:
    assert sorted(d["metadata"]["name"] for d in find(docs, "RayService")) == sorted(
        RAYSERVICES.values())
    # The control plane's Ray cluster: its head only, with Ray's token authentication.
    cluster = _rayservice(docs, "control")["spec"]["rayClusterConfig"]
    assert cluster.get("workerGroupSpecs", []) == []
    assert cluster["authOptions"] == {"mode": "token"}


INJECTIONS = [
    # (path to an object in the RayService, misspelt or invented field)
    (("spec",), "serveConfig"),
    (("spec", "rayClusterConfig"), "enableInTreeAutoscalling"),
    (("spec", "rayClusterConfig", "autoscalerOptions"), "idleTimeout"),
    (("spec", "rayClusterConfig", "headGroupSpec"), "rayStartParam"),
    (("spec", "rayClusterConfig", "headGroupSpec", "template", "metadata"), "label"),
    (("spec", "rayClusterConfig", "headGroupSpec", "template", "spec"), "container"),
    (("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0),
     "envFromm"),
    (("spec", "rayClusterConfig", "workerGroupSpecs", 0), "minReplica"),
    (("spec", "rayClusterConfig", "workerGroupSpecs", 1, "template", "spec", "containers", 0,
      "resources"), "limit"),
]


@pytest.mark.parametrize(("path", "field"), INJECTIONS, ids=[f for _, f in INJECTIONS])
def test_strict_checker_rejects_an_unknown_field(
    docs: list[Doc], path: tuple[Any, ...], field: str
) -> None:
    doc = copy.deepcopy(_rayservice(docs))
    node: Any = doc
    for key in path:
        node = node[key]
    node[field] = {"x": 1} if field != "label" else "x"
    errors = crd_errors(doc)
    assert len(errors) == 1, errors
    assert "/".join(str(p) for p in path) in errors[0]
    assert repr(field) in errors[0]
    # The published schema alone lets it through (it would be silently pruned): the
    # rejection is the strict checker's doing.
    assert crd_errors(doc, strict=False) == []


def test_strict_checker_rejects_unknown_metadata_fields(docs: list[Doc]) -> None:
    meta = dict(_rayservice(docs)["metadata"], labelz={"a": "b"})
    assert any("labelz" in e for e in object_meta_errors(meta, K8S_VERSIONS[-1]))


def test_strict_checker_still_checks_types(docs: list[Doc]) -> None:
    doc = copy.deepcopy(_rayservice(docs))
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "4"
    assert any("maxReplicas" in e and "integer" in e for e in crd_errors(doc))


def test_strict_checker_accepts_keys_of_declared_maps(docs: list[Doc]) -> None:
    doc = copy.deepcopy(_rayservice(docs))
    cluster = doc["spec"]["rayClusterConfig"]
    cluster["headGroupSpec"]["rayStartParams"]["metrics-export-port"] = "8080"
    cluster["workerGroupSpecs"][1]["resources"]["evaluator-gpu"] = "1"
    cluster["workerGroupSpecs"][1]["template"]["metadata"]["labels"]["team"] = "ml"
    assert crd_errors(doc) == []


def test_strict_schema_honours_preserve_unknown_fields() -> None:
    schema = {
        "type": "object",
        "properties": {
            "strict": {"type": "object", "properties": {"a": {"type": "string"}}},
            "open": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"a": {"type": "string"}},
            },
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "bare": {"type": "object"},
        },
    }
    validator = jsonschema.Draft4Validator(strict_schema(schema))
    assert validator.is_valid({"open": {"a": "x", "b": 1}, "map": {"k": "v"}, "bare": {}})
    assert not validator.is_valid({"strict": {"a": "x", "b": "y"}})
    assert not validator.is_valid({"bare": {"k": "v"}})
    assert not validator.is_valid({"other": 1})
    assert "additionalProperties" not in schema  # the input schema is left alone


# --- core kinds against Kubernetes' schemas ---------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d for d in DOCS if d["kind"] in CORE_KINDS], ids=_ids)
def test_core_documents_pass_the_kubernetes_schema(doc: Doc, version: str) -> None:
    assert k8s_errors(doc, version) == []


def test_kubernetes_schema_rejects_unknown_and_mistyped_fields(docs: list[Doc]) -> None:
    statefulset = copy.deepcopy(one(docs, "StatefulSet", "nats"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    assert any("envv" in e for e in k8s_errors(statefulset, K8S_VERSIONS[-1]))
    service = copy.deepcopy(one(docs, "Service", "nats"))
    service["spec"]["ports"][0]["port"] = "4222"
    assert k8s_errors(service, K8S_VERSIONS[-1]) != []


# --- serveConfigV2 ------------------------------------------------------------------------


def _strict_serve_schema() -> dict[str, Any]:
    schema = ServeDeploySchema.model_json_schema()
    for node in [schema, *schema["$defs"].values()]:
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
    return schema


def serve_config_errors(config: Any) -> list[str]:
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft202012Validator(_strict_serve_schema()).iter_errors(config)
    ]
    try:
        ServeDeploySchema.model_validate(config)
    except Exception as exc:
        errors.append(str(exc))
    return errors


@pytest.mark.parametrize("plane", ["data", "control"])
def test_serve_config_v2_is_valid_and_is_what_the_code_deploys(
    docs: list[Doc], plane: Plane
) -> None:
    config = yaml.safe_load(_rayservice(docs, plane)["spec"]["serveConfigV2"])
    assert serve_config_errors(config) == []
    assert config == serve_config(plane)
    routes = {app["name"]: app["route_prefix"] for app in config["applications"]}
    if plane == "data":
        assert routes == {"data-plane": "/", "pools": None}
    else:
        assert routes == {"control-plane": CP_ROUTE_PREFIX, "federation": None}
        assert CP_ROUTE_PREFIX == "/cp"
    assert config["http_options"]["port"] == SERVE_HTTP_PORT


def test_serve_config_check_rejects_unknown_keys(docs: list[Doc]) -> None:
    config = yaml.safe_load(_rayservice(docs)["spec"]["serveConfigV2"])
    config["applications"][0]["import_paht"] = config["applications"][0]["import_path"]
    assert any("import_paht" in e for e in serve_config_errors(config))


@pytest.mark.parametrize("plane", ["data", "control"])
def test_serve_import_paths_build_applications_from_the_manifest_env(
    docs: list[Doc], set_env: SetEnv, plane: Plane
) -> None:
    set_env(fill_placeholders(_ray_env(docs, plane)))
    config = yaml.safe_load(_rayservice(docs, plane)["spec"]["serveConfigV2"])
    for app in config["applications"]:
        module_name, _, attr = app["import_path"].partition(":")
        builder = getattr(importlib.import_module(module_name), attr)
        assert inspect.isfunction(builder)
        assert len(inspect.signature(builder).parameters) == 1
        assert isinstance(builder(app.get("args", {})), Application), app["name"]


# --- environment of the Ray pods ---------------------------------------------------------------


def _ray_serve_constants() -> str:
    import ray.serve._private.constants as constants

    return Path(constants.__file__).read_text()


def test_env_var_names_exist(docs: list[Doc]) -> None:
    """An APIARY_* (or RAY_SERVE_*) name nothing reads is silently ignored: catch typos."""
    settings_env = {f"APIARY_{name.upper()}" for name in ApiarySettings.model_fields}
    serve_constants = _ray_serve_constants()
    serve_env = set(cluster_serve_environment())
    names: set[str] = set()
    for plane in RAYSERVICES:
        for _, container in _ray_containers(docs, plane):
            names |= set(container_env(docs, container))
    job = one(docs, "Job", "apiary-create-bucket")["spec"]["template"]["spec"]["containers"][0]
    names |= {entry["name"] for entry in job["env"]}
    unknown = {
        n for n in names
        if not (
            (n.startswith("APIARY_") and n in settings_env)
            or (n.startswith("RAY_SERVE_") and f'"{n}"' in serve_constants)
            or n in AWS_ENV
            or n in serve_env  # read by Serve's HTTP servers (uvicorn), not by Ray's constants
        )
    }
    assert unknown == set()
    assert {"APIARY_NATS_URL", "APIARY_NATS_REPLICAS", "RAY_SERVE_ENABLE_HA_PROXY"} <= names


def test_env_var_name_check_catches_a_typo() -> None:
    settings_env = {f"APIARY_{name.upper()}" for name in ApiarySettings.model_fields}
    assert "APIARY_NATS_URL" in settings_env
    assert "APIARY_NATS_URLS" not in settings_env
    assert '"RAY_SERVE_ENABLE_HAPROXY"' not in _ray_serve_constants()


def test_every_ray_node_of_a_plane_starts_with_the_same_env_and_the_serve_env(
    docs: list[Doc],
) -> None:
    groups = {"data": {"head", "writers", "evaluators"}, "control": {"head"}}
    serve_env = cluster_serve_environment()
    for plane in RAYSERVICES:
        containers = _ray_containers(docs, plane)
        assert {group for group, _ in containers} == groups[plane]
        envs = [container_env(docs, c) for _, c in containers]
        assert all(env == envs[0] for env in envs)
        assert {k: envs[0].get(k) for k in serve_env} == serve_env
        assert envs[0]["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert data_of(docs, "ConfigMap", "apiary-ray-serve-env") == serve_env


@pytest.mark.parametrize(("plane", "secrets"), [
    ("data", ("APIARY_NATS_URL", "APIARY_CLICKHOUSE_URL", "APIARY_DP_DATABASE_URL",
              "APIARY_REDIS_URL", "APIARY_DP_ENVELOPE_KEY")),
    ("control", ("APIARY_CP_DATABASE_URL", "APIARY_REDIS_URL", "APIARY_CP_ENVELOPE_KEY")),
])
def test_the_template_is_refused_until_its_placeholders_are_replaced(
    docs: list[Doc], set_env: SetEnv, plane: Plane, secrets: tuple[str, ...]
) -> None:
    set_env(_ray_env(docs, plane))
    problems = cluster_problems(load_settings(), plane)
    for env in secrets:
        assert any(p.startswith(env) and PLACEHOLDER in p for p in problems), env
    set_env(fill_placeholders(_ray_env(docs, plane)))
    assert cluster_problems(load_settings(), plane) == []


def test_every_secret_value_is_a_marked_placeholder(docs: list[Doc]) -> None:
    secrets = find(docs, "Secret")
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "templates use stringData, readable and editable"
        assert secret["stringData"]
        for key, value in secret["stringData"].items():
            assert PLACEHOLDER in value, f"{secret['metadata']['name']}.{key}"


# --- cross-references ------------------------------------------------------------------------


def _services(docs: list[Doc]) -> dict[str, set[int]]:
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
                for d in find(docs, "Service")}
    # KubeRay creates <RayService>-serve-svc on Serve's HTTP port.
    for rayservice in find(docs, "RayService"):
        services[f"{rayservice['metadata']['name']}-serve-svc"] = {SERVE_HTTP_PORT}
    return services


def _urls(env: dict[str, str]) -> dict[str, Any]:
    return {k: urlparse(v) for k, v in env.items() if k.endswith("_URL") and "://" in v}


def test_store_urls_name_services_ports_and_matching_credentials(docs: list[Doc]) -> None:
    env, cp_env = _ray_env(docs), _ray_env(docs, "control")
    creds = data_of(docs, "Secret", "apiary-store-credentials")
    services = _services(docs)
    urls, cp_urls = _urls(env), _urls(cp_env)
    urls.pop("APIARY_OBJECT_STORE_URL")
    assert set(urls) == {
        "APIARY_NATS_URL", "APIARY_CLICKHOUSE_URL", "APIARY_DP_DATABASE_URL",
        "APIARY_REDIS_URL", "APIARY_S3_ENDPOINT_URL", "APIARY_CONTROL_PLANE_URL",
    }
    assert set(cp_urls) == {"APIARY_CP_DATABASE_URL", "APIARY_REDIS_URL"}
    for name, url in [*urls.items(), *cp_urls.items()]:
        assert url.hostname in services, name
        assert url.port in services[url.hostname], name
    # Each plane has a Redis of its own, with its own password.
    assert urls["APIARY_REDIS_URL"].hostname != cp_urls["APIARY_REDIS_URL"].hostname
    assert cp_urls["APIARY_REDIS_URL"].password == creds["REDIS_CP_PASSWORD"]
    urls["APIARY_CP_DATABASE_URL"] = cp_urls["APIARY_CP_DATABASE_URL"]

    nats = urls["APIARY_NATS_URL"]
    assert re.search(rf"^\s*user:\s*{nats.username}\s*$", _nats_conf(docs), re.M)
    assert nats.password == creds["NATS_PASSWORD"]

    clickhouse = urls["APIARY_CLICKHOUSE_URL"]
    ch_env = container_env(
        docs, one(docs, "StatefulSet", "clickhouse")["spec"]["template"]["spec"]["containers"][0]
    )
    assert (clickhouse.username, clickhouse.password) == (
        ch_env["CLICKHOUSE_USER"], ch_env["CLICKHOUSE_PASSWORD"])
    assert env["APIARY_CLICKHOUSE_DATABASE"] == ch_env["CLICKHOUSE_DB"]

    init = data_of(docs, "ConfigMap", "postgres-init")["10-apiary-databases.sh"]
    for name, password in (("APIARY_CP_DATABASE_URL", "CPDB_PASSWORD"),
                           ("APIARY_DP_DATABASE_URL", "DPDB_PASSWORD")):
        database = urls[name]
        assert f"CREATE DATABASE {database.path.lstrip('/')} OWNER {database.username};" in init
        assert database.password == creds[password]

    assert urls["APIARY_REDIS_URL"].password == creds["REDIS_PASSWORD"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        creds["MINIO_ROOT_USER"], creds["MINIO_ROOT_PASSWORD"])

    # The data plane reaches the control plane's own RayService, as the issuer it signs as.
    control_plane = urls["APIARY_CONTROL_PLANE_URL"]
    assert control_plane.path == CP_ROUTE_PREFIX
    assert control_plane.hostname == f"{RAYSERVICES['control']}-serve-svc"
    assert env["APIARY_CP_ISSUER"] == cp_env["APIARY_CP_ISSUER"] == env[
        "APIARY_CONTROL_PLANE_URL"]


def _pods(docs: list[Doc]) -> list[tuple[str, Doc]]:
    return [(f"{d['kind']}/{name}", t) for d in docs for name, t in pod_templates(d)]


def _selects(selector: dict[str, str], template: Doc) -> bool:
    labels = template["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_pods_and_ports(docs: list[Doc]) -> None:
    pods = _pods(docs)
    for service in find(docs, "Service"):
        selected = [t for _, t in pods if _selects(service["spec"]["selector"], t)]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for template in selected:
                declared = {
                    p.get("name") if isinstance(target, str) else p["containerPort"]
                    for c in template["spec"]["containers"] for p in c.get("ports", [])
                }
                assert target in declared, (service["metadata"]["name"], target)
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment"):
            assert _selects(doc["spec"]["selector"]["matchLabels"], doc["spec"]["template"])
        if doc["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = doc["spec"].get("selector") or doc["spec"]["podSelector"]
            assert any(_selects(selector["matchLabels"], t) for _, t in pods), _ids(doc)
        if doc["kind"] == "NetworkPolicy":
            for rule in doc["spec"]["ingress"]:
                for peer in rule.get("from", []):
                    if "namespaceSelector" in peer:
                        continue  # pods of another namespace (the KubeRay operator)
                    labels = peer["podSelector"]["matchLabels"]
                    assert any(_selects(labels, t) for _, t in pods), (_ids(doc), labels)


def _admits(docs: list[Doc], policy_name: str, labels: dict[str, str], port: int) -> bool:
    """Whether NetworkPolicy ``policy_name`` admits a pod of this namespace with ``labels``
    on ``port`` (a rule without ``from`` admits everyone, one without ``ports`` every port)."""
    pod = {"metadata": {"labels": labels}}
    for rule in one(docs, "NetworkPolicy", policy_name)["spec"]["ingress"]:
        peers = rule.get("from")
        admitted = peers is None or any(
            "namespaceSelector" not in peer and _selects(peer["podSelector"]["matchLabels"], pod)
            for peer in peers)
        ports = rule.get("ports")
        if admitted and (ports is None or port in {p["port"] for p in ports}):
            return True
    return False


def test_network_policies_let_each_planes_pods_reach_its_stores_only(docs: list[Doc]) -> None:
    labels = {plane: next(ray_pod_templates(_rayservice(docs, plane)))[1]["metadata"]["labels"]
              for plane in RAYSERVICES}
    reach = {plane: {str(url.hostname): url.port
                     for k, url in _urls(_ray_env(docs, plane)).items()
                     if k not in ("APIARY_OBJECT_STORE_URL", "APIARY_CONTROL_PLANE_URL")}
             for plane in RAYSERVICES}
    assert set(reach["control"]) == {"postgres", "redis-cp"}
    for plane, stores in reach.items():
        for host, port in stores.items():
            assert port is not None
            assert _admits(docs, host, labels[plane], port), (plane, host)
    # Neither plane's pods reach the other plane's stores (PostgreSQL is shared; its roles
    # keep the databases apart: test_postgres_init_script_creates_cpdb_and_dpdb).
    for host in ("nats", "clickhouse", "redis", "minio"):
        port = reach["data"][host]
        assert port is not None
        assert not _admits(docs, host, labels["control"], port), host
    assert not _admits(docs, "redis-cp", labels["data"], 6379)
    # Data-plane pods reach the control plane's API and federation endpoint, and none of
    # its Ray ports.
    assert _admits(docs, "apiary-cp", labels["data"], SERVE_HTTP_PORT)
    assert _admits(docs, "apiary-cp", labels["data"], 4320)
    for port in (6379, 8265, 10001, 52365):
        assert not _admits(docs, "apiary-cp", labels["data"], port), port
        assert _admits(docs, "apiary-cp", labels["control"], port), port


def test_references_to_configmaps_secrets_volumes_and_services_resolve(
    docs: list[Doc],
) -> None:
    services = {d["metadata"]["name"]: d for d in find(docs, "Service")}
    for owner, template in _pods(docs):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert find(docs, "ConfigMap", volume["configMap"]["name"]), owner
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                kind, key = (("ConfigMap", "configMapRef") if "configMapRef" in source
                             else ("Secret", "secretRef"))
                assert find(docs, kind, source[key]["name"]), (owner, source)
            for entry in container.get("env", []):
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = entry.get("valueFrom", {}).get(key)
                    if ref is not None:
                        assert ref["key"] in data_of(docs, kind, ref["name"]) or ref.get(
                            "optional"), (owner, ref)
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= set(volumes) | {"data"}, (owner, mounts - set(volumes))
    for statefulset in find(docs, "StatefulSet"):
        service = services[statefulset["spec"]["serviceName"]]
        assert service["spec"].get("clusterIP") == "None", "a StatefulSet's service is headless"
        claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
        assert claims == {"data"}


# --- NATS JetStream -----------------------------------------------------------------------------


def _nats_config_check(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "nats.conf"
    path.write_text(config)
    env = {**os.environ, "SERVER_NAME": "nats-0", "NATS_PASSWORD": "secret",
           "NATS_JETSTREAM_KEY": secrets.token_hex(32)}
    return subprocess.run([nats_server_binary(), "-t", "-c", str(path)],
                          capture_output=True, text=True, env=env, timeout=30)


def test_nats_is_three_fsyncing_jetstream_servers(docs: list[Doc], tmp_path: Path) -> None:
    statefulset = one(docs, "StatefulSet", "nats")
    config = _nats_conf(docs)
    assert statefulset["spec"]["replicas"] == 3
    assert int(_ray_env(docs)["APIARY_NATS_REPLICAS"]) == 3
    jetstream = re.search(r"^jetstream \{(.*?)^\}", config, re.M | re.S)
    assert jetstream is not None
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream.group(1), re.M)
    routes = re.findall(r"nats://(nats-\d+)\.([a-z-]+):6222", config)
    headless = statefulset["spec"]["serviceName"]
    assert routes == [(f"nats-{i}", headless) for i in range(3)]
    assert one(docs, "Service", headless)["spec"]["publishNotReadyAddresses"] is True
    max_payload = re.search(r"^max_payload:\s*(\d+)\s*$", config, re.M)
    assert max_payload is not None
    assert int(max_payload.group(1)) == NatsServer(tmp_path).max_payload
    # nats-server itself parses the config (unknown fields and bad values are errors).
    check = _nats_config_check(config, tmp_path)
    assert check.returncode == 0, check.stderr + check.stdout
    # The image runs the same nats-server version that checked the config.
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True,
                             text=True, timeout=30).stdout.strip().rpartition("v")[2]
    image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"nats:{version}-alpine"


def test_nats_encrypts_its_store_with_a_key_from_the_store_credentials(
        docs: list[Doc]) -> None:
    jetstream = re.search(r"^jetstream \{(.*?)^\}", _nats_conf(docs), re.M | re.S)
    assert jetstream is not None
    assert re.search(r"^\s*cipher:\s*aes\s*$", jetstream.group(1), re.M)
    # Unquoted: a quoted "$NATS_JETSTREAM_KEY" would be that text, the same key everywhere.
    assert re.search(r"^\s*key:\s*\$NATS_JETSTREAM_KEY\s*$", jetstream.group(1), re.M)
    container = one(docs, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0]
    (entry,) = [e for e in container["env"] if e["name"] == "NATS_JETSTREAM_KEY"]
    assert entry["valueFrom"]["secretKeyRef"] == {"name": "apiary-store-credentials",
                                                  "key": "NATS_JETSTREAM_KEY"}
    assert "NATS_JETSTREAM_KEY" in data_of(docs, "Secret", "apiary-store-credentials")


def test_nats_config_check_rejects_a_misspelt_field(docs: list[Doc], tmp_path: Path) -> None:
    config = _nats_conf(docs).replace("sync_interval:", "sync_intervall:")
    check = _nats_config_check(config, tmp_path)
    assert check.returncode != 0
    assert "sync_intervall" in check.stderr + check.stdout


# --- Ray cluster: versions, images, autoscaling ------------------------------------------------


def test_ray_version_and_images_agree(docs: list[Doc]) -> None:
    cluster = _rayservice(docs)["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"ray[serve]=={ray.__version__}" in pyproject["project"]["dependencies"]
    dockerfile = (KUBERAY_DIR / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base is not None
    assert base.group(1) == f"rayproject/ray:{ray.__version__}-py311"
    image_names = {entry["name"] for entry in kustomization()["images"]}
    for plane in RAYSERVICES:
        assert _rayservice(docs, plane)["spec"]["rayClusterConfig"]["rayVersion"] == (
            ray.__version__)
        for _, container in _ray_containers(docs, plane):
            assert container["image"] in image_names
    job = one(docs, "Job", "apiary-create-bucket")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] in image_names


def test_the_autoscaler_sees_writer_and_evaluator_groups(docs: list[Doc]) -> None:
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    rayservice = _rayservice(docs)
    cluster = rayservice["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    # What Ray's autoscaler derives from the RayCluster KubeRay makes of this spec (it also
    # runs Ray's own cluster-config validation on the result).
    config = _derive_autoscaling_config_from_ray_cr(
        {"metadata": rayservice["metadata"], "spec": copy.deepcopy(cluster)}
    )
    types = config["available_node_types"]
    writers, evaluators = types["writers"], types["evaluators"]
    assert writers["resources"][WRITER_RESOURCE] == 4
    assert writers["resources"]["CPU"] == 4
    assert evaluators["resources"][EVALUATOR_RESOURCE] == 4
    assert (writers["min_workers"], writers["max_workers"]) == (1, 4)
    assert (evaluators["min_workers"], evaluators["max_workers"]) == (0, 10)
    head = types["headgroup"]["resources"]
    assert WRITER_RESOURCE not in head
    assert EVALUATOR_RESOURCE not in head
    assert config["idle_timeout_minutes"] == 5


# --- stores' own setup ---------------------------------------------------------------------------


def test_postgres_init_script_creates_cpdb_and_dpdb(docs: list[Doc], tmp_path: Path) -> None:
    import psycopg
    from _servers import postgres_server

    from apiary.control.db import upgrade as upgrade_cpdb
    from apiary.dataplane.db.migrate import upgrade as upgrade_dpdb

    script = tmp_path / "init.sh"
    script.write_text(data_of(docs, "ConfigMap", "postgres-init")["10-apiary-databases.sh"])
    with postgres_server() as url:
        server = urlparse(url)
        env = {**os.environ, "POSTGRES_USER": "postgres", "CPDB_PASSWORD": "cp-pw",
               "DPDB_PASSWORD": "dp-pw", "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
        run = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                             timeout=60)
        assert run.returncode == 0, run.stderr

        def connect(user: str, db: str) -> psycopg.Connection[Any]:
            return psycopg.connect(host="127.0.0.1", port=server.port, user=user, dbname=db,
                                   autocommit=True)

        # Each role owns its database and may apply Apiary's migrations to it...
        upgrade_cpdb(f"postgresql+psycopg://apiary_cp@127.0.0.1:{server.port}/cpdb")
        upgrade_dpdb(f"postgresql+psycopg://apiary_dp@127.0.0.1:{server.port}/dpdb")
        # ...and cannot connect to the other's.
        for user, db in (("apiary_cp", "dpdb"), ("apiary_dp", "cpdb")):
            with pytest.raises(psycopg.OperationalError, match="permission denied"):
                connect(user, db).close()
        # Running it again (a second init) fails loudly rather than half-applying.
        again = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                               env=env, timeout=60)
        assert again.returncode != 0


def test_bucket_job_script_compiles(docs: list[Doc]) -> None:
    container = one(docs, "Job", "apiary-create-bucket")["spec"]["template"]["spec"][
        "containers"][0]
    assert container["command"] == ["python", "-c"]
    code = compile(container["args"][0], "create-bucket", "exec")
    read = {c for c in code.co_consts if isinstance(c, str) and c.startswith("APIARY_")}
    assert read == {"APIARY_OBJECT_STORE_URL", "APIARY_S3_ENDPOINT_URL"}
    assert read <= {entry["name"] for entry in container["env"]}
