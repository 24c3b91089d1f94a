"""What `jina export kubernetes` leaves out, added to its manifests; and their validation against the schema.

The export gives each executor a Deployment (a sharded one also a head), a Service and a ConfigMap, with startup
and liveness probes. For this Flow the manifests also need:

- **the workspace**: one PersistentVolumeClaim (``finetuner-workspace``) mounted at ``/workspace`` in every
  executor pod. The workspace's SQLite databases run in WAL mode, which needs every process on one host: the
  claim is ReadWriteOnce, the trainer prefers the node of the other executors and they require the trainer's
  node (pod affinity), so all of them share one node's volume. A network file system shared across nodes is not
  safe for SQLite.
- **readiness**: a readiness probe, ``jina ping`` of the pod's own port (executors and heads; the gateway too),
  so a Service sends requests only to pods that answer. (The export's liveness probe passes
  ``"--timeout 9500"`` as one argument, which ``jina ping`` ignores; it is split so the timeout applies.)
- **the trainer**: ``terminationGracePeriodSeconds`` longer than its ``suspend_timeout_s`` (on SIGTERM it
  checkpoints its runs and leaves them QUEUED; the next trainer pod resumes them), the ``Recreate`` strategy and
  one replica (two trainers on a workspace would both resume its runs), and its GPUs (``nvidia.com/gpu``).
- ConfigMap values as strings (Kubernetes refuses numbers there).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.images import EXECUTORS, WORKSPACE_MOUNT

CLAIM = "finetuner-workspace"
VOLUME = "workspace"
SHARED_LABEL = "finetuner/workspace"
GRACE_MARGIN_S = 60  # beyond suspend_timeout_s: the last checkpoint is written and the process exits
SUSPEND_TIMEOUT_S = 120  # the trainer's default (executors/trainer/config.yml)
HOST = "kubernetes.io/hostname"


@dataclass(frozen=True)
class ClusterSettings:
    storage_size: str = "100Gi"
    storage_class: str | None = None
    gpus: dict[str, int] | None = None  # executor name -> GPUs per pod, where the export has not set them


def read_manifests(folder: Path) -> dict[Path, list[dict[str, Any]]]:
    """Every YAML file under ``folder`` and its documents."""
    return {
        path: [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]
        for path in sorted(folder.rglob("*.yml"))
    }


def write_manifests(manifests: dict[Path, list[dict[str, Any]]]) -> None:
    for path, docs in manifests.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False), "utf-8")


def patch_folder(folder: Path, settings: ClusterSettings) -> list[Path]:
    """Patch the export under ``folder`` in place and add the workspace claim; returns the files written."""
    manifests = {path: [patch(doc, settings) for doc in docs] for path, docs in read_manifests(folder).items()}
    namespaces = {d["metadata"].get("namespace", "default") for docs in manifests.values() for d in docs}
    if len(namespaces) != 1:
        raise ValueError(f"{folder}: manifests of several namespaces {sorted(namespaces)}; export one Flow at a time")
    manifests[folder / "workspace" / "workspace.yml"] = [workspace_claim(settings, namespaces.pop())]
    write_manifests(manifests)
    return list(manifests)


def patch(doc: dict[str, Any], settings: ClusterSettings) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if doc.get("kind") == "ConfigMap":
        doc["data"] = {key: str(value) for key, value in (doc.get("data") or {}).items()}
    if doc.get("kind") != "Deployment":
        return doc
    pod = doc["spec"]["template"]
    labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    _split_probe_arguments(container)
    container["readinessProbe"] = readiness_probe(container)
    name = labels.get("jina_deployment_name")
    if labels.get("pod_type") == "WORKER" and name in EXECUTORS:
        _mount_workspace(pod, container, labels)
        _request_gpus(container, (settings.gpus or {}).get(name, 0))
        pod["spec"]["affinity"] = _trainer_affinity() if name == "trainer" else _follow_trainer()
        if name == "trainer":
            _single_trainer(doc, pod)
    return doc


def readiness_probe(container: dict[str, Any]) -> dict[str, Any]:
    """``jina ping`` of the container's port, as the export's startup probe does (executor, head or gateway)."""
    command = list(container["startupProbe"]["exec"]["command"][:4])
    if "://" not in command[3]:  # a head with a uses_after gets a bare address from the export
        command[3] = f"grpc://{command[3]}"
    return {
        "exec": {"command": [*command, "--timeout", "9500"]},
        "periodSeconds": 10,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
    }


def workspace_claim(settings: ClusterSettings, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.storage_size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    metadata = {"name": CLAIM, "namespace": namespace, "labels": {"app": "finetuner"}}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def _split_probe_arguments(container: dict[str, Any]) -> None:
    for probe in ("livenessProbe", "startupProbe"):
        command = container.get(probe, {}).get("exec", {}).get("command")
        if command:
            container[probe]["exec"]["command"] = [part for arg in command for part in str(arg).split()]


def _mount_workspace(pod: dict[str, Any], container: dict[str, Any], labels: dict[str, Any]) -> None:
    labels[SHARED_LABEL] = "shared"
    volumes = [v for v in pod["spec"].get("volumes", []) if v.get("name") != VOLUME]
    pod["spec"]["volumes"] = [*volumes, {"name": VOLUME, "persistentVolumeClaim": {"claimName": CLAIM}}]
    mounts = [m for m in container.get("volumeMounts", []) if m.get("name") != VOLUME]
    container["volumeMounts"] = [*mounts, {"name": VOLUME, "mountPath": WORKSPACE_MOUNT}]
    env = [e for e in container.get("env", []) if e.get("name") != "FINETUNER_WORKSPACE"]
    container["env"] = [*env, {"name": "FINETUNER_WORKSPACE", "value": WORKSPACE_MOUNT}]


def _request_gpus(container: dict[str, Any], gpus: int) -> None:
    if gpus:
        limits = container.setdefault("resources", {}).setdefault("limits", {})
        limits["nvidia.com/gpu"] = str(gpus)


def _single_trainer(doc: dict[str, Any], pod: dict[str, Any]) -> None:
    if doc["spec"].get("replicas", 1) != 1:
        raise ValueError("the trainer must run as one replica: two trainers on a workspace would both resume its runs")
    doc["spec"]["strategy"] = {"type": "Recreate"}
    suspend_timeout_s = uses_with(pod["spec"]["containers"][0].get("args", [])).get("suspend_timeout_s")
    pod["spec"]["terminationGracePeriodSeconds"] = int(suspend_timeout_s or SUSPEND_TIMEOUT_S) + GRACE_MARGIN_S


def uses_with(arguments: list[str]) -> dict[str, Any]:
    """The executor settings (``--uses-with``) of an exported container's arguments."""
    arguments = [str(a) for a in arguments]
    if "--uses-with" not in arguments:
        return {}
    return json.loads(arguments[arguments.index("--uses-with") + 1])


def _trainer_affinity() -> dict[str, Any]:
    """The trainer prefers the node of the other executors (whose pods hold the workspace volume there)."""
    term = {"labelSelector": {"matchLabels": {SHARED_LABEL: "shared"}}, "topologyKey": HOST}
    return {
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}
    }


def _follow_trainer() -> dict[str, Any]:
    """The validator and the evaluator run on the trainer's node: one host for the workspace's SQLite files."""
    term = {"labelSelector": {"matchLabels": {"app": "trainer"}}, "topologyKey": HOST}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def validate(docs: Iterable[dict[str, Any]], version: str) -> list[str]:
    """Each document checked offline against the Kubernetes ``version`` schema (strict: unknown fields fail);
    returns the problems (none: valid)."""
    import kubernetes_validate

    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
    return problems


def validate_folder(folder: Path, version: str) -> list[str]:
    return [
        f"{path.relative_to(folder)}: {problem}"
        for path, docs in read_manifests(folder).items()
        for problem in validate(docs, version)
    ]
