"""Attack: a data-plane pod or Ray worker of a documented deployment reads the control
plane's secrets (cpdb's URL and password, the cpdb envelope key), which would let whoever
compromises a data plane mint credentials and decrypt signing keys.

Both recipes are rendered as their tools would: ``kuberay/`` (every manifest of the
kustomization, environments resolved from ConfigMaps and Secrets) and ``cluster.yaml`` /
``cluster-cp.yaml`` (what ``ray up`` copies to each node). For every pod and node type the
tests list what it can read, and assert that

- the control plane's Secret reaches the control plane's pod only, and no data-plane pod or
  Ray worker holds any control-plane secret, under any name or inside any value;
- each plane's nodes have every setting their plane needs, checked by the code the
  clusters run (``apiary.startup.plane_checks.cluster_problems``), and a recipe that leaks
  the other plane's secret into a node is refused before anything starts;
- the LLM proxy and the LLM judge work with the data plane's rendered settings (the
  recipes used to omit ``APIARY_DP_ENVELOPE_KEY``, so both failed with a configuration
  error): a real provider call through the proxy, with a key sealed under the cluster's
  envelope key in a real PostgreSQL dpdb.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from _fake_llm_provider import FakeProvider
from _servers import http_server, postgres_database
from deploy._manifests import (
    CLUSTER_ENV_FILES,
    CLUSTER_FILES,
    REPO,
    Doc,
    container_env,
    fill_placeholders,
    find,
    load_documents,
    one,
    pod_templates,
)

from apiary.dataplane.db import DataPlaneDatabase
from apiary.dataplane.evaluation.proxy import credentials as vault
from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.evaluation.proxy.runtime import ProxyJudgeClient, open_chat_proxy
from apiary.errors import ConfigurationError
from apiary.event import Tenant
from apiary.outbound import OutboundPolicy
from apiary.queue import EventPublisher, NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings, load_settings
from apiary.startup.plane_checks import PLANE_SECRETS, Plane, cluster_problems

DOCS = load_documents()
RAYSERVICES: dict[Plane, str] = {"data": "apiary", "control": "apiary-cp"}
SECRET_NAMES: dict[Plane, str] = {"data": "apiary-dp-secrets", "control": "apiary-cp-secrets"}
#: Store passwords that are the control plane's (in the store credentials Secret): only the
#: store that checks them may read them.
CP_STORE_PASSWORDS = {"CPDB_PASSWORD": "StatefulSet/postgres", "REDIS_CP_PASSWORD":
                      "Deployment/redis-cp"}


def _env_names(plane: Plane) -> set[str]:
    return {f"APIARY_{field.upper()}" for field in PLANE_SECRETS[plane]}


# --- KubeRay: what each pod can read --------------------------------------------------------


def _pods(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(owner, pod template) of every pod the manifests make: Ray pods as
    ``RayService/<name>/<group>``."""
    for doc in docs:
        for group, template in pod_templates(doc):
            owner = f"{doc['kind']}/{doc['metadata']['name']}"
            yield (f"{owner}/{group}" if doc["kind"] == "RayService" else owner), template


def _readable_secrets(template: Doc) -> set[tuple[str, str | None]]:
    """(Secret, key or None for all of it) a pod can read: envFrom, secretKeyRef, secret
    and projected volumes."""
    found: set[tuple[str, str | None]] = set()
    spec = template["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                found.add((source["secretRef"]["name"], None))
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                found.add((ref["name"], ref["key"]))
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            found.add((volume["secret"]["secretName"], None))
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                found.add((source["secret"]["name"], None))
    return found


def _pod_env(docs: list[Doc], template: Doc) -> dict[str, str]:
    env: dict[str, str] = {}
    for container in template["spec"]["containers"]:
        env.update(container_env(docs, container))
    return env


def _secret_values(docs: list[Doc], name: str) -> dict[str, str]:
    return dict(one(docs, "Secret", name)["stringData"])


def _ray_env(docs: list[Doc], plane: Plane) -> dict[str, str]:
    rayservice = one(docs, "RayService", RAYSERVICES[plane])
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    return _pod_env(docs, head)


def test_data_plane_pods_and_ray_workers_cannot_read_the_control_planes_secrets() -> None:
    cp_secret = SECRET_NAMES["control"]
    cp_values = set(_secret_values(DOCS, cp_secret).values())
    readers = {owner for owner, template in _pods(DOCS)
               if any(name == cp_secret for name, _ in _readable_secrets(template))}
    # The control plane's Secret reaches exactly the control plane's own Ray pod.
    assert readers == {"RayService/apiary-cp/head"}
    data_plane_pods = [(o, t) for o, t in _pods(DOCS) if o.startswith("RayService/apiary/")]
    assert {o for o, _ in data_plane_pods} == {
        "RayService/apiary/head", "RayService/apiary/writers", "RayService/apiary/evaluators"}
    for owner, template in _pods(DOCS):
        if owner.startswith("RayService/apiary-cp/"):
            continue
        env = _pod_env(DOCS, template)
        # Under no name, and inside no value (a password copied into another URL).
        assert _env_names("control").isdisjoint(env), owner
        assert not any(secret in value for secret in cp_values for value in env.values()), owner
        for key, store in CP_STORE_PASSWORDS.items():
            if ("apiary-store-credentials", key) in _readable_secrets(template):
                assert owner == store, (owner, key)
            assert ("apiary-store-credentials", None) not in _readable_secrets(template), owner
    # Nothing in the manifests grants a pod the Kubernetes API's view of Secrets.
    assert not [d for d in DOCS if d["kind"] in ("Role", "ClusterRole", "RoleBinding",
                                                  "ClusterRoleBinding", "ServiceAccount")]


def test_the_control_planes_pod_cannot_read_the_data_planes_secrets() -> None:
    dp_secret = SECRET_NAMES["data"]
    dp_values = set(_secret_values(DOCS, dp_secret).values())
    readers = {owner for owner, template in _pods(DOCS)
               if any(name == dp_secret for name, _ in _readable_secrets(template))}
    assert readers == {"RayService/apiary/head", "RayService/apiary/writers",
                       "RayService/apiary/evaluators", "Job/apiary-create-bucket"}
    cp_env = _ray_env(DOCS, "control")
    assert _env_names("data").isdisjoint(cp_env)
    assert not any(secret in value for secret in dp_values for value in cp_env.values())
    assert "AWS_SECRET_ACCESS_KEY" not in cp_env


@pytest.mark.parametrize("plane", ["data", "control"])
def test_each_planes_pods_have_every_setting_their_plane_needs(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    rayservice = one(DOCS, "RayService", RAYSERVICES[plane])
    for _, template in _pods([rayservice]):
        settings = _settings_from(fill_placeholders(_pod_env(DOCS, template)), monkeypatch)
        assert cluster_problems(settings, plane) == []


def test_a_recipe_that_gives_a_data_plane_worker_the_control_planes_secret_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = copy.deepcopy(DOCS)
    rayservice = one(docs, "RayService", "apiary")
    writers = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]
    writers["spec"]["containers"][0]["envFrom"].append(
        {"secretRef": {"name": SECRET_NAMES["control"]}})
    settings = _settings_from(fill_placeholders(_pod_env(docs, writers)), monkeypatch)
    problems = cluster_problems(settings, "data")
    assert any(p.startswith("APIARY_CP_DATABASE_URL is set, but it is a secret of the "
                            "control plane") for p in problems), problems
    assert any(p.startswith("APIARY_CP_ENVELOPE_KEY is set") for p in problems), problems


# --- ray up: what each node type gets ---------------------------------------------------------


def _template_env(plane: Plane) -> dict[str, str]:
    """The env file ``ray up`` copies to a plane's nodes, from its template, as the shell
    that sources it would read it (``KEY=value`` lines, comments skipped)."""
    text = (REPO / f"{CLUSTER_ENV_FILES[plane]}.example").read_text()
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
            env[key] = value
    return env


def _node_files(plane: Plane) -> dict[str, str]:
    config: dict[str, Any] = yaml.safe_load(CLUSTER_FILES[plane].read_text())
    assert config["head_node_type"] in config["available_node_types"]
    # file_mounts and setup commands are the same for every node type of a cluster; no
    # node type overrides them.
    for node_type in config["available_node_types"].values():
        assert not {"file_mounts", "setup_commands", "worker_setup_commands"} & set(node_type)
    mounts: dict[str, str] = config["file_mounts"]
    return mounts


def test_ray_up_data_plane_nodes_never_get_the_control_planes_env_file() -> None:
    mounts = {plane: set(_node_files(plane).values()) for plane in CLUSTER_FILES}
    assert mounts["data"] == {"./dist", f"./{CLUSTER_ENV_FILES['data']}"}
    assert mounts["control"] == {"./dist", f"./{CLUSTER_ENV_FILES['control']}"}
    dp_env, cp_env = _template_env("data"), _template_env("control")
    assert _env_names("control").isdisjoint(dp_env)
    assert _env_names("data").isdisjoint(cp_env)
    # No value in common but the control plane's public URL.
    shared = set(cp_env.values()) & set(dp_env.values())
    assert shared == {cp_env["APIARY_CP_ISSUER"]}


@pytest.mark.parametrize("plane", ["data", "control"])
def test_ray_up_nodes_have_every_setting_their_plane_needs(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = _template_env(plane)
    problems = cluster_problems(_settings_from(template, monkeypatch), plane)
    assert problems  # a template until filled
    assert all("CHANGE-ME" in p for p in problems)
    settings = _settings_from(fill_placeholders(template), monkeypatch)
    assert cluster_problems(settings, plane) == []


# --- the LLM proxy and judge with the cluster's settings -------------------------------------


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ApiarySettings:
    """Settings as a node with exactly ``env`` reads them."""
    for key in list(os.environ):
        if key.startswith("APIARY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    with http_server(fake.app()) as url:
        yield fake, url


@pytest.fixture
async def publisher(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[EventPublisher]:
    nc = await connect(nats_server.url, name="cluster-secrets-test")
    await ensure_topology(nc.jetstream(), ApiarySettings(data_dir=tmp_path))
    yield EventPublisher(nc.jetstream(), timeout=5.0, max_message_bytes=1024 * 1024)
    await nc.close()


def _rendered_data_plane_env(source: str) -> dict[str, str]:
    if source == "kuberay":
        return fill_placeholders(_ray_env(DOCS, "data"))
    return fill_placeholders(_template_env("data"))


@pytest.mark.parametrize("source", ["kuberay", "ray-up"])
async def test_llm_proxy_and_judge_work_with_the_clusters_data_plane_settings(
    source: str, postgres: str, provider: tuple[FakeProvider, str],
    publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = provider
    env = _rendered_data_plane_env(source)
    # The recipe's dpdb (a PostgreSQL server) and provider, here on 127.0.0.1: the dpdb
    # URL points at a real local server, and the outbound policy admits the local provider.
    env["APIARY_DP_DATABASE_URL"] = postgres_database(postgres, f"dp_{uuid.uuid4().hex[:12]}")
    env["APIARY_OUTBOUND_ALLOWLIST"] = "127.0.0.1"
    settings = _settings_from(env, monkeypatch)
    assert settings.dp_envelope_key is not None

    proxy = open_chat_proxy(settings, publisher)
    envelope = envelope_from_settings(settings)  # the recipes used to fail right here
    workspace = vault.Workspace("org-cluster", "ws-cluster")
    database = DataPlaneDatabase.open(settings.dp_database)
    try:
        with database.transaction() as db:
            vault.create_credential(db, envelope, workspace, provider="openai",
                                    api_key="sk-cluster-test-key", api_base=f"{url}/v1",
                                    outbound=OutboundPolicy.from_settings(settings))
    finally:
        database.dispose()
    judge = ProxyJudgeClient(proxy)
    tenant: Tenant = {"org_id": "org-cluster", "workspace_id": "ws-cluster",
                      "project_id": "proj-cluster"}
    try:
        answer = await judge.complete(model="openai/cluster-judge",
                                      messages=[{"role": "user", "content": "ping"}],
                                      tenant=tenant)
    finally:
        await judge.aclose()
    assert answer == "echo: ping"
    assert fake.last("cluster-judge").authorization == "Bearer sk-cluster-test-key"


def test_without_the_dp_envelope_key_the_proxy_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the recipes did before: the same settings without APIARY_DP_ENVELOPE_KEY."""
    env = fill_placeholders(_ray_env(DOCS, "data"))
    del env["APIARY_DP_ENVELOPE_KEY"]
    settings = _settings_from(env, monkeypatch)
    with pytest.raises(ConfigurationError, match="APIARY_DP_ENVELOPE_KEY must be set"):
        envelope_from_settings(settings)
    assert "APIARY_DP_ENVELOPE_KEY is unset: a cluster has no embedded stores or keys" in (
        cluster_problems(settings, "data"))


def test_every_documented_secret_is_in_exactly_one_planes_secret() -> None:
    names = {plane: set(_secret_values(DOCS, SECRET_NAMES[plane])) for plane in SECRET_NAMES}
    for plane, secret_env in ((p, _env_names(p)) for p in SECRET_NAMES):
        present = secret_env & (names["data"] | names["control"])
        assert present <= names[plane], (plane, present - names[plane])
    assert find(DOCS, "Secret", "apiary-secrets") == []  # the old shared Secret is gone
