"""Every example runs end to end through its own Flow, at reduced sizes."""

import importlib.util

import pytest

from conftest import ROOT, unused_port

pytestmark = pytest.mark.slow


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name,arguments",
    [
        ("text_banking77", ["--train-size", "160", "--eval-size", "120", "--max-steps", "2"]),
        (
            "image_cifar10",
            ["--train-per-class", "4", "--eval-per-class", "3", "--image-size", "32", "--max-steps", "2"],
        ),
        ("clip_cifar10", ["--train-per-class", "4", "--eval-per-class", "3", "--image-size", "32", "--max-steps", "2"]),
        ("scored_stsb", ["--train-size", "64", "--eval-size", "60", "--max-steps", "2"]),
    ],
)
def test_example_runs(name, arguments, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = load(name).main(["--data-dir", str(data_dir), "--port", str(unused_port()), "--out", str(out), *arguments])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert ("spearman" if name == "scored_stsb" else "precision@1") in printed and "Flow stopped." in printed
    assert (out / "model" / "finetuner.json").exists()
