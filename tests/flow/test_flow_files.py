"""Every Flow file of the project loads, with the three executors in order and every variable it reads defined."""

from pathlib import Path

import pytest
import yaml
from jina import Flow

from conftest import ROOT

FLOW_FILES = [ROOT / "flow.yml", *sorted((ROOT / "flows").glob("*.yml"))]
EXECUTORS = ["validator", "trainer", "evaluator"]


def env_file(path: Path) -> dict[str, str]:
    """The variables of ``<flow>.env`` next to a Flow file (KEY=VALUE lines, # comments)."""
    path = path.with_suffix(".env")
    if not path.exists():
        return {}
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda path: str(Path(path).relative_to(ROOT)))
def test_flow_file_loads(path, monkeypatch):
    for name, value in env_file(path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(path.parent)
    flow = Flow.load_config(str(path))
    executors = {name: node for name, node in flow._deployment_nodes.items() if name != "gateway"}
    assert list(executors) == EXECUTORS
    for name, node in executors.items():
        settings = f"{node.args.uses} {node.args.uses_with} {node.args.env}"
        assert "$" not in settings, f"{path.name}: {name} reads an undefined variable: {settings}"
        if not str(node.args.uses).startswith("docker://"):
            assert Path(node.args.uses).resolve().exists(), f"{path.name}: {name} uses a missing {node.args.uses}"


def test_gpu_flow_puts_the_trainer_on_cuda(monkeypatch):
    for name, value in env_file(ROOT / "flows" / "gpu.yml").items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT / "flows")
    nodes = Flow.load_config("gpu.yml")._deployment_nodes
    assert (
        str(nodes["trainer"].args.env["CUDA_VISIBLE_DEVICES"])
        == env_file(ROOT / "flows" / "gpu.yml")["FINETUNER_TRAINER_GPUS"]
    )
    assert nodes["evaluator"].args.uses_with["device"] == "cuda"
    assert nodes["evaluator"].args.replicas == 2
    workspaces = {nodes[name].args.uses_with["workspace_dir"] for name in EXECUTORS}
    assert len(workspaces) == 1  # one workspace shared by the three executors


def test_jcloud_flow_declares_its_cloud_resources():
    spec = yaml.safe_load((ROOT / "flows" / "jcloud.yml").read_text())
    assert spec["jcloud"]["version"] == __import__("jina").__version__
    assert spec["jcloud"]["labels"]
    assert spec["gateway"]["jcloud"]["timeout"] >= 3600
    executors = {e["name"]: e for e in spec["executors"]}
    assert executors["trainer"]["jcloud"]["resources"]["instance"] in ("G2", "G3", "G4")  # a dedicated GPU
    for executor in executors.values():
        resources = executor["jcloud"]["resources"]
        assert resources["capacity"] in ("spot", "on-demand")
        assert resources["storage"] == {"kind": "efs", "size": "50G", "retain": True}  # shared, persistent
        assert executor["uses"].startswith("docker://")
    autoscale = executors["evaluator"]["jcloud"]["autoscale"]
    assert 1 <= autoscale["min"] <= autoscale["max"] <= 5
    assert autoscale["metric"] in ("concurrency", "rps") and autoscale["target"] >= 1
