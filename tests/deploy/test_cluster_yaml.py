"""cluster.yaml: checked the way `ray up` checks it, and a little further.

`ray up` runs ``prepare_config`` (merges the provider's defaults, fills node type bounds) and
then ``validate_config`` (Ray's ray-schema.json, which rejects unknown fields at the top
level and in node types, docker, auth; plus head/worker consistency) before it touches the
cloud. The tests run exactly those two. What Ray does not check offline, the AWS
``node_config`` (passed as is to EC2 RunInstances), is checked against botocore's EC2 model,
which rejects unknown parameters. The rest ties the file to the code: Ray version, custom
resource names, and the commands that install and start Apiary.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from typing import Any

import botocore.session
import jsonschema
import pytest
import ray
import yaml
from botocore.validate import ParamValidator
from ray.autoscaler._private.util import prepare_config, validate_config

from apiary.startup.cluster import EVALUATOR_RESOURCE, WRITER_RESOURCE

from ._manifests import CLUSTER_ENV_FILES, CLUSTER_FILES, CLUSTER_YAML

Config = dict[str, Any]
PLANES = sorted(CLUSTER_FILES)


def load(plane: str = "data") -> Config:
    config: Config = yaml.safe_load(
        (CLUSTER_YAML if plane == "data" else CLUSTER_FILES[plane]).read_text())
    return config


def ray_validate(config: Config) -> Config:
    """What `ray up` does with the file before it calls the cloud provider."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation() -> None:
    prepared = ray_validate(load())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == "head"
    assert set(prepared["available_node_types"]) == {"head", "writers", "evaluators"}


def test_the_control_planes_cluster_passes_rays_validation_and_is_a_cluster_of_its_own(
) -> None:
    prepared = ray_validate(load("control"))
    assert prepared["head_node_type"] == "head"
    assert set(prepared["available_node_types"]) == {"head"}
    assert prepared["max_workers"] == 0
    data = load()
    # Another Ray cluster (name), in another security group: the data plane's nodes are not
    # members of it and reach it only on the ports its group opens (the API).
    assert prepared["cluster_name"] != data["cluster_name"]
    assert (prepared["provider"]["security_group"]["GroupName"]
            != data["provider"]["security_group"]["GroupName"])


def _set(config: Config, path: tuple[str, ...], value: Any) -> Config:
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


INVALID = [
    # (path, value, what Ray says)
    (("idle_timeout_minute",), 5, "idle_timeout_minute"),
    (("available_node_types", "writers", "max_worker"), 4, "max_worker"),
    (("available_node_types", "evaluators", "min_workers"), "0", "'0'"),
    (("docker", "imag"), "rayproject/ray", "imag"),
    (("auth", "ssh_usr"), "ubuntu", "ssh_usr"),
    (("provider", "security_group", "Name"), "x", "Name"),
    (("upscaling_speed",), -1, "less than the minimum"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID, ids=[i[2] for i in INVALID])
def test_rays_validation_rejects_an_invalid_field(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    config = _set(load(), path, value)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        ray_validate(config)


def test_rays_validation_rejects_inconsistent_bounds_and_head() -> None:
    config = load()
    config["available_node_types"]["writers"]["min_workers"] = config["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(config)
    config = load()
    config["head_node_type"] = "ray.head.default"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_validate(config)


def _run_instances_errors(node_config: Config) -> str:
    """What botocore says of the node config as Ray's AWS provider passes it to EC2
    (RunInstances, after adding the counts and the image it resolves)."""
    ec2 = botocore.session.get_session().get_service_model("ec2")
    params = dict(node_config, MinCount=1, MaxCount=1, ImageId="ami-0123456789abcdef0")
    report = ParamValidator().validate(params, ec2.operation_model("RunInstances").input_shape)
    return str(report.generate_report())


def test_node_configs_are_valid_ec2_run_instances_parameters() -> None:
    for plane in PLANES:
        for name, node_type in load(plane)["available_node_types"].items():
            assert _run_instances_errors(node_type["node_config"]) == "", (plane, name)
    broken = dict(load()["available_node_types"]["writers"]["node_config"],
                  InstanceTyp="m6i.xlarge")
    assert "InstanceTyp" in _run_instances_errors(broken)


@pytest.mark.parametrize("plane", PLANES)
def test_security_group_rules_are_valid_ec2_parameters(plane: str) -> None:
    ec2 = botocore.session.get_session().get_service_model("ec2")
    shape = ec2.operation_model("AuthorizeSecurityGroupIngress").input_shape
    rules = load(plane)["provider"]["security_group"]["IpPermissions"]
    report = ParamValidator().validate({"GroupId": "sg-0", "IpPermissions": rules}, shape)
    assert not report.has_errors(), report.generate_report()
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(8000, 8000)]
    assert all(not r["CidrIp"].endswith("/0") for rule in rules for r in rule["IpRanges"])


def test_worker_types_offer_the_resources_apiary_requests() -> None:
    prepared = ray_validate(load())
    types = prepared["available_node_types"]
    writers, evaluators, head = types["writers"], types["evaluators"], types["head"]
    assert writers["resources"][WRITER_RESOURCE] == writers["resources"]["CPU"] == 4
    assert evaluators["resources"][EVALUATOR_RESOURCE] == 4
    assert WRITER_RESOURCE not in head["resources"]
    assert EVALUATOR_RESOURCE not in head["resources"]
    assert (writers["min_workers"], writers["max_workers"]) == (1, 4)
    assert (evaluators["min_workers"], evaluators["max_workers"]) == (0, 10)
    assert prepared["max_workers"] == writers["max_workers"] + evaluators["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0


def test_nodes_run_the_ray_version_apiary_pins() -> None:
    for plane in PLANES:
        assert load(plane)["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311"


def _all_commands(config: Config) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands",
            "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return [cmd for key in keys for cmd in config[key]]


@pytest.mark.parametrize("plane", PLANES)
def test_commands_are_valid_shell(plane: str) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for command in _all_commands(load(plane)):
        check = subprocess.run([bash, "-n", "-c", command], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, (command, check.stderr)


@pytest.mark.parametrize("plane", PLANES)
def test_commands_install_configure_and_start_apiary(plane: str) -> None:
    config = load(plane)
    env_file = CLUSTER_ENV_FILES[plane]
    mounts = config["file_mounts"]
    # The wheel and the plane's own env file; nothing else reaches the nodes.
    assert mounts == {"~/apiary-dist": "./dist", f"~/{env_file}": f"./{env_file}"}
    setup = config["setup_commands"]
    assert any(c.startswith("pip install") and "~/apiary-dist/apiary-" in c for c in setup)
    assert "python -m apiary.startup.cluster env > ~/apiary-serve.env" in setup
    assert f"chmod 600 ~/{env_file}" in setup
    # Every later command, `ray start` included, sees Apiary's and Serve's environment.
    assert any(f". ~/{env_file}; . ~/apiary-serve.env" in c and "~/.bashrc" in c
               for c in setup)
    head = config["head_start_ray_commands"]
    assert head[0] == "ray stop"
    assert head[1].startswith("ray start --head")
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head[1]
    assert head[2] == f"python -m apiary.startup.cluster check --plane {plane}"
    assert f"apiary.startup.cluster config --plane {plane} > ~/apiary-serve.yaml" in head[3]
    assert "serve deploy ~/apiary-serve.yaml" in head[3]
    workers = config["worker_start_ray_commands"]
    assert workers[-1].startswith("ray start --address=$RAY_HEAD_IP:6379")
    # Custom resources come from the node types (Ray passes them to `ray start` itself).
    assert not any("--resources" in c for c in head + workers)
    # No embedded stores on a cluster: nothing here starts a store of its own.
    assert not any(re.search(r"nats-server|clickhouse|postgres|redis-server|apiary up", c)
                   for c in _all_commands(config))
