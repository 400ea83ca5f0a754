"""deploy/: every YAML parses and carries the fields the tools need (cluster launcher, KubeRay, runtime_env)."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RAY_IMAGE = re.compile(r"^rayproject/ray:(\d+\.\d+\.\d+)-py311(-cpu)?$")
CLUSTERS = ["cluster-aws.yaml", "cluster-gcp.yaml", "cluster-onprem.yaml"]


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def test_every_yaml_parses():
    files = sorted(DEPLOY.glob("*.yaml"))
    assert {f.name for f in files} >= set(CLUSTERS) | {
        "kuberay-raycluster.yaml", "kuberay-rayjob.yaml", "kuberay-storage.yaml", "runtime_env.yaml"}
    for f in files:
        docs = _docs(f.name)
        assert docs and all(isinstance(d, dict) for d in docs), f.name


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_launcher_configs(name):
    cfg = yaml.safe_load((DEPLOY / name).read_text())
    assert cfg["cluster_name"].startswith("gamma-ray-dist")
    m = RAY_IMAGE.match(cfg["docker"]["image"])
    assert m, cfg["docker"]["image"]  # pinned, never :latest
    version = m.group(1)
    assert any(f'"ray[default]=={version}"' in c for c in cfg["setup_commands"])
    assert any("/data" in o and ":ro" in o for o in cfg["docker"]["run_options"])
    assert "-e GAMMAPY_DATA=/data" in cfg["docker"]["run_options"]
    assert cfg["file_mounts"] == {"/home/ray/gamma_ray_dist": ".",
                                  "/home/ray/.ray/auth_token": "~/.ray/auth_token"}  # the Ray token
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    if cfg["provider"]["type"] == "local":
        # the on-prem provider defines node types itself
        assert "available_node_types" not in cfg and "head_node_type" not in cfg
        assert cfg["max_workers"] == len(cfg["provider"]["worker_ips"])
    else:
        head = cfg["head_node_type"]
        assert head in cfg["available_node_types"]
        workers = [t for t in cfg["available_node_types"] if t != head]
        assert workers and all(cfg["available_node_types"][w]["max_workers"] <= cfg["max_workers"]
                               for w in workers)


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_configs_pass_ray_schema(name):
    util = pytest.importorskip("ray.autoscaler._private.util")
    pytest.importorskip("jsonschema")
    cfg = yaml.safe_load((DEPLOY / name).read_text())
    prepared = util.prepare_config(copy.deepcopy(cfg))  # what `ray up` does before launching
    util.validate_config(prepared)


def test_dockerfile_pins_ray_and_installs_package():
    text = (DEPLOY / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    m = RAY_IMAGE.match(base)
    assert m, base
    assert f"ARG RAY_VERSION={m.group(1)}" in text
    assert re.search(r"pip install .*\s\.\s", text)
    assert "/data" in text and "GAMMAPY_DATA=/data" in text


def _ray_image_versions(pod_spec: dict) -> list[str]:
    return [c["image"] for c in pod_spec["containers"]]


def test_kuberay_raycluster():
    (rc,) = _docs("kuberay-raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    spec = rc["spec"]
    groups = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    for g in groups:
        pod = g["template"]["spec"]
        for image in _ray_image_versions(pod):
            assert ":" in image and not image.endswith(":latest")
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert "gamma-dl3-data" in claims
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert "/data" in mounts
    w = spec["workerGroupSpecs"][0]
    assert w["minReplicas"] <= w["replicas"] <= w["maxReplicas"]


def test_kuberay_rayjob_and_its_config():
    docs = {d["kind"]: d for d in _docs("kuberay-rayjob.yaml")}
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    entry = job["spec"]["entrypoint"]
    assert entry.startswith("gamma-ray-dist run /config/analysis.yaml")
    assert "--out /results" in entry and "--models /config/models.yaml" in entry
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["GAMMAPY_DATA"] == "/data"
    assert "working_dir" not in job["spec"]["runtimeEnvYAML"]  # RayJob cannot upload a directory
    head_pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in head_pod["containers"][0]["volumeMounts"]}
    assert {"/config", "/data", "/results"} <= mounts
    cm = docs["ConfigMap"]
    assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in head_pod["volumes"])
    # the embedded configs are valid for us (and the models YAML parses)
    from gamma_ray_dist.config import AnalysisConfig

    cfg = AnalysisConfig.from_yaml(cm["data"]["analysis.yaml"])
    assert cfg.observations.datastore == "/data/hess-dl3-dr1"
    models = yaml.safe_load(cm["data"]["models.yaml"])
    assert models["components"][0]["name"] == cfg.flux_points.source == "crab"


def test_kuberay_storage():
    docs = _docs("kuberay-storage.yaml")
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert names == {"gamma-dl3-data", "gamma-results"}


def test_runtime_env():
    env = yaml.safe_load((DEPLOY / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "."
    assert ".git/" in env["excludes"]
    assert env["env_vars"]["GAMMAPY_DATA"] == "/data"
    assert all(isinstance(v, str) for v in env["env_vars"].values())  # Ray requires string env vars
    assert set(env) <= {"working_dir", "excludes", "env_vars", "py_modules", "pip"}


def test_readme_has_the_commands():
    text = (DEPLOY / "README.md").read_text()
    for cmd in ("ray up deploy/cluster-aws.yaml", "ray job submit --address", "--runtime-env deploy/runtime_env.yaml",
                "ray submit deploy/cluster-aws.yaml", "kubectl apply -f deploy/kuberay-rayjob.yaml",
                "gamma-ray-dist run", "max_in_flight"):
        assert cmd in text, cmd


# ---------------------------------------------------------------------------------------------
# Security (issue 15): nothing is exposed beyond the cluster but SSH; the job API needs the token
# ---------------------------------------------------------------------------------------------
WORLD = {"0.0.0.0/0", "::/0"}
EXPOSED_SERVICE_TYPES = {"LoadBalancer", "NodePort"}


def _walk(node, where="$"):
    """Every mapping in a parsed YAML document, with its path."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")


def _world_ranges(rule: dict) -> set[str]:
    """Address ranges open to everyone in a firewall rule (AWS IpPermissions or GCP firewall style)."""
    ranges = {r.get("CidrIp") for r in rule.get("IpRanges", []) if isinstance(r, dict)}
    ranges |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", []) if isinstance(r, dict)}
    ranges |= set(rule.get("sourceRanges", []) or [])
    return ranges & WORLD


def _is_ssh_only(rule: dict) -> bool:
    if "FromPort" in rule or "ToPort" in rule:  # AWS
        return rule.get("FromPort") == rule.get("ToPort") == 22 and rule.get("IpProtocol") == "tcp"
    allowed = rule.get("allowed")  # GCP: [{IPProtocol: tcp, ports: ["22"]}]
    return bool(allowed) and all(a.get("IPProtocol") == "tcp" and [str(x) for x in a.get("ports", [])] == ["22"]
                                 for a in allowed)


def exposures(doc) -> list[str]:
    """What in one parsed YAML document is reachable from beyond the cluster (empty: nothing)."""
    found = []
    for where, node in _walk(doc):
        if node.get("kind") in ("Service",) and node.get("spec", {}).get("type") in EXPOSED_SERVICE_TYPES:
            found.append(f"{where}: Service of type {node['spec']['type']}")
        if node.get("kind") == "Service" and node.get("spec", {}).get("externalIPs"):
            found.append(f"{where}: Service with externalIPs")
        if node.get("kind") in ("Ingress", "Gateway"):
            found.append(f"{where}: {node['kind']}")
        if "serviceType" in node and node["serviceType"] != "ClusterIP":  # KubeRay headGroupSpec
            found.append(f"{where}.serviceType: {node['serviceType']}")
        if node.get("enableIngress") is True:  # KubeRay headGroupSpec
            found.append(f"{where}.enableIngress: true")
        if node.get("hostNetwork") is True:
            found.append(f"{where}.hostNetwork: true")
        if "containerPort" in node and "hostPort" in node:
            found.append(f"{where}.hostPort: {node['hostPort']}")
        if _world_ranges(node) and not _is_ssh_only(node):
            found.append(f"{where}: rule open to {sorted(_world_ranges(node))} beyond SSH")
    return found


def test_exposure_check_catches_what_it_must():
    # Without this the test below could pass by checking nothing.
    bad = [
        {"kind": "Service", "spec": {"type": "LoadBalancer"}},
        {"kind": "Service", "spec": {"type": "NodePort"}},
        {"kind": "RayCluster", "spec": {"headGroupSpec": {"serviceType": "LoadBalancer"}}},
        {"kind": "RayCluster", "spec": {"headGroupSpec": {"enableIngress": True}}},
        {"kind": "Ingress", "spec": {}},
        {"spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 8265, "hostPort": 8265}]}]}}}},
        {"provider": {"security_group": {"IpPermissions": [
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}}},
        {"provider": {"security_group": {"IpPermissions": [
            {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]}}},
        {"name": "fw", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22", "8265"]}]},
    ]
    for doc in bad:
        assert exposures(doc), doc
    ok = [
        {"kind": "Service", "spec": {"type": "ClusterIP"}},
        {"provider": {"security_group": {"IpPermissions": [
            {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}]}}},
        {"name": "fw", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]},
    ]
    for doc in ok:
        assert exposures(doc) == [], doc


@pytest.mark.parametrize("name", sorted(f.name for f in DEPLOY.glob("*.yaml")))
def test_no_yaml_exposes_a_service_beyond_the_cluster(name):
    for i, doc in enumerate(_docs(name)):
        assert exposures(doc) == [], f"{name} document {i}"


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_launcher_security(name):
    cfg = yaml.safe_load((DEPLOY / name).read_text())
    start = " ".join(cfg["head_start_ray_commands"])
    # The dashboard (job API: runs any command) on the head's loopback only: `ray dashboard` tunnels to it.
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    assert "0.0.0.0" not in " ".join(cfg["worker_start_ray_commands"])
    assert "-e RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]  # token auth on every node
    assert "RAY_AUTH_TOKEN=" not in (DEPLOY / name).read_text()  # the token is never in the config
    if cfg["provider"]["type"] == "aws":
        # Ray's launcher adds intra-cluster + SSH to the group it creates, then these: none.
        assert cfg["provider"]["security_group"] == {"GroupName": "gamma-ray-dist-nodes", "IpPermissions": []}
    if cfg["provider"]["type"] == "gcp":
        # no firewall rules in the launcher: every node is pinned to the subnetwork that has them
        for node_type in cfg["available_node_types"].values():
            (iface,) = node_type["node_config"]["networkInterfaces"]
            assert iface["subnetwork"].endswith("/subnetworks/gamma-ray-dist-us-west1")


def test_kuberay_head_services_are_cluster_ip_and_the_raycluster_needs_the_token():
    (rc,) = _docs("kuberay-raycluster.yaml")
    job = {d["kind"]: d for d in _docs("kuberay-rayjob.yaml")}["RayJob"]
    for head in (rc["spec"]["headGroupSpec"], job["spec"]["rayClusterSpec"]["headGroupSpec"]):
        assert head["serviceType"] == "ClusterIP"
    groups = [rc["spec"]["headGroupSpec"]] + rc["spec"]["workerGroupSpecs"]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gamma-ray-dist-ray-token",
                                                                         "key": "auth_token"}


def test_readme_security_section():
    text = (DEPLOY / "README.md").read_text()
    section = text[text.index("## Security"):]
    for needed in ("8265", "6379", "10001", "RAY_AUTH_MODE=token", "ray get-auth-token --generate",
                   "ray dashboard deploy/cluster-aws.yaml", "kubectl port-forward", "ClusterIP",
                   "--dashboard-host=127.0.0.1", "security_group", "checkpoint"):
        assert needed in section, needed
