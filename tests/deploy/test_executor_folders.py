"""Each executor folder follows Jina Hub's layout, and its Dockerfiles and requirements agree with the repository.
(No Docker engine runs here: the images are not built; what they copy and install is checked.)"""

import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from conftest import ROOT
from finetuner_protocol import endpoints as protocol_endpoints

EXECUTORS = ("validator", "trainer", "evaluator")
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
IGNORED = set((ROOT / ".dockerignore").read_text().splitlines())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def instructions(path):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_folder_has_the_hub_files(executor):
    folder = ROOT / "executors" / executor
    for name in ("config.yml", "executor.py", "README.md", "requirements.txt", *DOCKERFILES):
        assert (folder / name).is_file(), f"executors/{executor}/{name} is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_dockerfile_copies_existing_files_and_starts_the_executor(executor, dockerfile):
    steps = instructions(ROOT / "executors" / executor / dockerfile)
    copies = [args.split() for kind, args in steps if kind == "COPY"]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert not source.startswith("--"), "no COPY --from: everything comes from the build context"
            assert (ROOT / source).exists(), f"{executor}/{dockerfile}: COPY source {source} is not in the repository"
            assert source.rstrip("/") not in IGNORED, f"{source} is left out of the build context (.dockerignore)"
    assert [f"executors/{executor}/requirements.txt", "/tmp/requirements.txt"] in copies  # its own requirements
    assert [f"executors/{executor}/", "/workdir/"] in copies
    assert ("WORKDIR", "/workdir") in steps  # not /app: jina's docker-compose export mounts its cache there
    assert steps[-1] == ("ENTRYPOINT", '["jina", "executor", "--uses", "config.yml"]')
    runs = " ".join(args for kind, args in steps if kind == "RUN")
    assert "-r /tmp/requirements.txt" in runs and "--no-deps /src" in runs
    python = re.search(r"<(\d+\.\d+)", PYPROJECT["requires-python"]).group(1)
    minor = f"3.{int(python.split('.')[1]) - 1}"  # the one Python version the project supports (>=3.11,<3.12)
    base = next(args for kind, args in steps if kind == "FROM")
    if dockerfile == "Dockerfile":
        assert base.startswith(f"python:{minor}-")
    else:
        assert f"python{minor}" in runs and "nvidia/cuda:" in " ".join(args for kind, args in steps if kind == "ARG")


def test_requirements_are_generated_from_pyproject_now():
    result = subprocess.run(
        [sys.executable, "scripts/requirements.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("executor", EXECUTORS)
def test_requirements_pin_what_pyproject_pins(executor):
    lines = [
        line
        for line in (ROOT / "executors" / executor / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    declared = set(PYPROJECT["dependencies"]) | {
        line for extra in PYPROJECT["optional-dependencies"].values() for line in extra
    }
    client = {line for line in PYPROJECT["dependencies"] if line.startswith("finetuner==")}  # from /src/client
    assert set(PYPROJECT["dependencies"]) - client <= set(lines)
    for line in lines:
        assert line in declared, f"{executor}: {line} is not in pyproject.toml"
    pins = dict(line.split("==") for line in lines if "==" in line)
    assert (
        pins["jina"] == __import__("jina").__version__
        and pins["torch"] == __import__("torch").__version__.split("+")[0]
    )


@pytest.mark.parametrize("executor", EXECUTORS)
def test_readme_names_every_endpoint_and_setting(executor):
    folder = ROOT / "executors" / executor
    readme = (folder / "README.md").read_text()
    names = re.findall(r"@requests\(on=endpoints\.([A-Z_]+)\)", (folder / "executor.py").read_text())
    endpoints = [getattr(protocol_endpoints, name) for name in names]
    assert endpoints
    for endpoint in endpoints:
        assert f"`{endpoint}`" in readme, f"executors/{executor}/README.md does not describe {endpoint}"
    settings = yaml.safe_load((folder / "config.yml").read_text())["with"]
    assert settings
    for setting in settings:
        assert f"`{setting}`" in readme, f"executors/{executor}/README.md does not describe the setting {setting}"
