"""What `jina export docker-compose` leaves out, added to its file: the shared workspace and the trainer's stop.

Every executor service mounts the named volume ``finetuner-workspace`` at ``/workspace`` (one host: the
workspace's SQLite files are safe); the trainer gets ``stop_grace_period`` longer than its ``suspend_timeout_s``,
so that ``docker compose stop`` lets it checkpoint its runs (they resume when it starts again).
"""

from __future__ import annotations

import copy
from typing import Any

from deploy.images import EXECUTORS, WORKSPACE_MOUNT
from deploy.k8s import GRACE_MARGIN_S, SUSPEND_TIMEOUT_S, uses_with

VOLUME = "finetuner-workspace"


def executor_of(service: str) -> str | None:
    """The executor a compose service runs: ``trainer``, ``evaluator-0`` (a shard), ``evaluator-rep-1``, ...;
    a shards' head (``evaluator-head``) and the gateway hold no workspace."""
    if service.endswith("-head"):
        return None
    return next((name for name in EXECUTORS if service == name or service.startswith(f"{name}-")), None)


def patch_compose(compose: dict[str, Any]) -> dict[str, Any]:
    compose = copy.deepcopy(compose)
    for service_name, service in compose["services"].items():
        executor = executor_of(service_name)
        if executor is None:
            continue
        volumes = [v for v in service.get("volumes", []) if not str(v).startswith(f"{VOLUME}:")]
        service["volumes"] = [*volumes, f"{VOLUME}:{WORKSPACE_MOUNT}"]
        environment = [e for e in service.get("environment", []) if not str(e).startswith("FINETUNER_WORKSPACE=")]
        service["environment"] = [*environment, f"FINETUNER_WORKSPACE={WORKSPACE_MOUNT}"]
        if executor == "trainer":
            suspend_timeout_s = uses_with(service.get("command", [])).get("suspend_timeout_s") or SUSPEND_TIMEOUT_S
            service["stop_grace_period"] = f"{int(suspend_timeout_s) + GRACE_MARGIN_S}s"
    compose.setdefault("volumes", {})[VOLUME] = {}
    return compose
