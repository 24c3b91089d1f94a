"""Every Flow file exports (`python -m deploy`, run as a user runs it) to Kubernetes manifests that pass the
Kubernetes schema offline and strictly, and that hold what `jina export` leaves out (the workspace claim in every
executor, readiness probes, GPU requests, the trainer's grace period and single replica); and to a
docker-compose file with the expected services. jina's own `jina export` command, patched, gives the same."""

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT

REGISTRY, TAG, NAMESPACE, KUBERNETES = "registry.test/finetuner", "0.1.0", "finetuner", "1.33"
FLOWS = {
    "flow.yml": ROOT / "flow.yml",
    "gpu.yml": ROOT / "flows" / "gpu.yml",
    "jcloud.yml": ROOT / "flows" / "jcloud.yml",
    "gpu.yml, 2 shards": ROOT / "flows" / "gpu.yml",
}
SETTINGS = {"gpu.yml, 2 shards": {"FINETUNER_EVALUATOR_SHARDS": "2"}}  # the evaluator split: a head and 2 shards
CUDA = {"flow.yml": set()} | dict.fromkeys(("gpu.yml", "jcloud.yml", "gpu.yml, 2 shards"), {"trainer", "evaluator"})
EXECUTORS = ("validator", "trainer", "evaluator")
IMAGES = {"FINETUNER_REGISTRY": REGISTRY, "FINETUNER_TAG": TAG}  # the images flows/jcloud.yml names


def run(*command, cwd=ROOT, check=True, env=None):
    """A command as a user runs it, offline (no telemetry); fails the test with its output."""
    environment = os.environ | {"JINA_OPTOUT_TELEMETRY": "1"} | IMAGES | (env or {})
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def deploy(*arguments, check=True, env=None):
    return run(sys.executable, "-m", "deploy", *map(str, arguments), check=check, env=env)


def export(target, flow, out):
    arguments = ("--registry", REGISTRY, "--tag", TAG, "--namespace", NAMESPACE)
    return deploy(target, FLOWS[flow], out, *arguments, env=SETTINGS.get(flow))


def read(folder: Path) -> dict[Path, list[dict]]:
    return {p: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(folder.rglob("*.yml"))}


def uses_with(container):
    return json.loads(container["args"][container["args"].index("--uses-with") + 1])


@pytest.fixture(scope="module", params=list(FLOWS))
def manifests(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("k8s")
    export("kubernetes", request.param, out)
    docs = [doc for docs in read(out).values() for doc in docs]
    return request.param, {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def pods(docs, pod_type):
    return {
        key[1]: doc["spec"]["template"]
        for key, doc in docs.items()
        if key[0] == "Deployment" and doc["spec"]["template"]["metadata"]["labels"]["pod_type"] == pod_type
    }


def test_every_manifest_passes_the_kubernetes_schema(manifests):
    _, docs = manifests
    assert ("PersistentVolumeClaim", "finetuner-workspace") in docs
    for doc in docs.values():
        assert kubernetes_validate.validate(doc, KUBERNETES, strict=True) == KUBERNETES
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_the_workspace_claim_is_mounted_in_every_executor(manifests):
    _, docs = manifests
    assert docs[("PersistentVolumeClaim", "finetuner-workspace")]["spec"]["accessModes"] == ["ReadWriteOnce"]
    workers = pods(docs, "WORKER")
    assert {pod["metadata"]["labels"]["jina_deployment_name"] for pod in workers.values()} == set(EXECUTORS)
    for name, pod in workers.items():
        spec, container = pod["spec"], pod["spec"]["containers"][0]
        assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "finetuner-workspace"}} in spec["volumes"]
        assert {"name": "workspace", "mountPath": "/workspace"} in container["volumeMounts"]
        assert uses_with(container)["workspace_dir"] == "/workspace"
        if name != "trainer":  # the workspace's SQLite files stay on one node: the trainer's
            term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
            assert term == {
                "labelSelector": {"matchLabels": {"app": "trainer"}},
                "topologyKey": "kubernetes.io/hostname",
            }


def test_every_pod_has_a_readiness_probe_that_pings_it(manifests):
    flow, docs = manifests
    for pod_type in ("WORKER", "HEAD", "GATEWAY"):
        for name, pod in pods(docs, pod_type).items():
            container = pod["spec"]["containers"][0]
            command = container["readinessProbe"]["exec"]["command"]
            port = container["ports"][0]["containerPort"]
            kind = "gateway" if pod_type == "GATEWAY" else "executor"
            assert command[:4] == ["jina", "ping", kind, f"grpc://127.0.0.1:{port}"], name
            assert "--timeout 9500" not in container["livenessProbe"]["exec"]["command"]  # split in two arguments
    assert pods(docs, "GATEWAY")
    assert bool(pods(docs, "HEAD")) == (flow in SETTINGS)


def test_trainer_checkpoints_before_it_is_killed_runs_alone_and_gets_its_gpus(manifests):
    flow, docs = manifests
    trainer = docs[("Deployment", "trainer")]
    spec = trainer["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= uses_with(spec["containers"][0]).get("suspend_timeout_s", 120) + 60
    assert trainer["spec"]["replicas"] == 1 and trainer["spec"]["strategy"] == {"type": "Recreate"}
    for name, pod in pods(docs, "WORKER").items():
        executor = pod["metadata"]["labels"]["jina_deployment_name"]
        container = pod["spec"]["containers"][0]
        gpus = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        assert gpus == ("1" if executor in CUDA[flow] else None), name
        assert container["image"] == f"{REGISTRY}/finetuner-{executor}:{TAG}{'-cuda' if gpus else ''}"
        assert "CUDA_VISIBLE_DEVICES" not in docs[("ConfigMap", f"{name}-configmap")]["data"]  # the device plugin's
    assert pods(docs, "GATEWAY")["gateway"]["spec"]["containers"][0]["image"] == f"{REGISTRY}/finetuner-validator:{TAG}"


@pytest.mark.parametrize("flow", list(FLOWS))
def test_docker_compose_export(flow, tmp_path):
    out = tmp_path / "docker-compose.yml"
    export("docker-compose", flow, out)
    compose = yaml.safe_load(out.read_text())
    services = compose["services"]
    assert {"gateway", "validator", "trainer"} <= set(services)
    assert [name for name in services if name.startswith("evaluator")]
    for name, service in services.items():
        if name != "gateway" and not name.endswith("-head"):
            assert "finetuner-workspace:/workspace" in service["volumes"], name
    assert "finetuner-workspace" in compose["volumes"]
    assert int(services["trainer"]["stop_grace_period"].rstrip("s")) >= 180
    assert services["trainer"]["image"] == f"{REGISTRY}/finetuner-trainer:{TAG}{'-cuda' if CUDA[flow] else ''}"
    assert services["gateway"]["ports"]


@pytest.mark.slow
def test_jina_export_command_then_patch_gives_the_same_manifests(tmp_path):
    """The step-by-step way, with jina's own `jina export kubernetes` in the middle."""
    deploy("flow", FLOWS["gpu.yml"], tmp_path / "images.yml", "--registry", REGISTRY, "--tag", TAG)
    jina = str(Path(sys.executable).parent / "jina")
    gateway = f"{REGISTRY}/finetuner-validator:{TAG}"
    command = ["export", "kubernetes", "images.yml", "step", "--k8s-namespace", NAMESPACE]
    result = subprocess.run(
        [jina, *command],
        cwd=tmp_path,
        env=os.environ | {"JINA_OPTOUT_TELEMETRY": "1", "JINA_GATEWAY_IMAGE": gateway},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    deploy("patch-kubernetes", tmp_path / "step")
    once = read(tmp_path / "step")
    deploy("patch-kubernetes", tmp_path / "step")  # patching is idempotent
    assert read(tmp_path / "step") == once
    export("kubernetes", "gpu.yml", tmp_path / "direct")
    step, direct = read(tmp_path / "step"), read(tmp_path / "direct")
    assert [p.relative_to(tmp_path / "step") for p in step] == [p.relative_to(tmp_path / "direct") for p in direct]
    assert list(step.values()) == list(direct.values())


def test_invalid_manifests_and_settings_are_refused(tmp_path):
    folder = tmp_path / "k8s"
    export("kubernetes", "flow.yml", folder)
    service = folder / "validator" / "validator.yml"
    docs = list(yaml.safe_load_all(service.read_text()))
    docs[1]["spec"]["portz"] = docs[1]["spec"].pop("ports")  # a typo Kubernetes would refuse
    service.write_text(yaml.safe_dump_all(docs))
    result = deploy("patch-kubernetes", folder, check=False)
    assert result.returncode == 1 and "portz" in result.stderr
    trainer = folder / "trainer" / "trainer.yml"
    docs = list(yaml.safe_load_all(trainer.read_text()))
    docs[2]["spec"]["replicas"] = 2
    trainer.write_text(yaml.safe_dump_all(docs))
    result = deploy("patch-kubernetes", folder, check=False)
    assert result.returncode == 2 and "one replica" in result.stderr
    flow = tmp_path / "flow.yml"
    flow.write_text("jtype: Flow\nexecutors:\n  - name: validator\n    uses: docker://${{ ENV.NOT_SET_HERE }}/v\n")
    result = deploy("flow", flow, tmp_path / "out.yml", "--registry", REGISTRY, "--tag", TAG, check=False)
    assert result.returncode == 2 and "NOT_SET_HERE" in result.stderr
