"""Every Flow file of the project loads, with the three executors in order."""

from pathlib import Path

import pytest
from jina import Flow

from conftest import ROOT

FLOW_FILES = [ROOT / "flow.yml", *sorted((ROOT / "flows").glob("*.yml"))]


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda path: str(Path(path).relative_to(ROOT)))
def test_flow_file_loads(path, monkeypatch):
    monkeypatch.setenv("FINETUNER_PORT", "54321")
    monkeypatch.chdir(path.parent)
    flow = Flow.load_config(str(path))
    assert [name for name in flow._deployment_nodes if name != "gateway"] == ["validator", "trainer", "evaluator"]
