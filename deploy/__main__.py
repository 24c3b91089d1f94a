"""Export a Flow file to Kubernetes manifests or a docker-compose file, completed for this Flow, offline.

    python -m deploy kubernetes flows/gpu.yml k8s/ --registry REGISTRY --tag 0.1.0 [--namespace finetuner]
    python -m deploy docker-compose flow.yml docker-compose.yml --registry REGISTRY --tag 0.1.0

or step by step, with jina's own command in the middle:

    python -m deploy flow flows/gpu.yml gpu-images.yml --registry REGISTRY --tag 0.1.0
    export JINA_GATEWAY_IMAGE=REGISTRY/finetuner-validator:0.1.0
    jina export kubernetes gpu-images.yml k8s/ --k8s-namespace finetuner
    python -m deploy patch-kubernetes k8s/
    jina export docker-compose gpu-images.yml docker-compose.yml
    python -m deploy patch-docker-compose docker-compose.yml

The Flow's executors become images (deploy.images), jina exports the Flow, the result is completed (deploy.k8s,
deploy.compose) and the Kubernetes manifests are validated against the schema of ``--kubernetes-version``
(kubernetes-validate, offline). The gateway runs the validator image (the same jina, docarray and pydantic)
unless ``--gateway-image`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from deploy.compose import patch_compose
from deploy.images import Images, containerised, gpu_count, load_flow
from deploy.k8s import ClusterSettings, patch_folder, validate_folder

DEFAULT_KUBERNETES = "1.33"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
    try:
        return _run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "patch-kubernetes":
        return _patch_kubernetes(Path(args.out), args, {})
    if args.command == "patch-docker-compose":
        return _patch_compose(Path(args.out))
    images = Images(args.registry, args.tag)
    flow = containerised(load_flow(Path(args.flow)), images)
    if args.command == "flow":
        Path(args.out).write_text(yaml.safe_dump(flow, sort_keys=False), "utf-8")
        print(f"wrote {args.out}")
        return 0
    os.environ["JINA_GATEWAY_IMAGE"] = args.gateway_image or images.image("validator", cuda=False)
    jina_flow = _jina_flow(flow)
    if args.command == "kubernetes":
        jina_flow.to_kubernetes_yaml(output_base_path=args.out, k8s_namespace=args.namespace)
        return _patch_kubernetes(Path(args.out), args, {e["name"]: gpu_count(e) for e in flow["executors"]})
    jina_flow.to_docker_compose_yaml(output_path=args.out, network_name=args.network)
    return _patch_compose(Path(args.out))


def _patch_kubernetes(out: Path, args, gpus: dict[str, int]) -> int:
    settings = ClusterSettings(args.storage_size, args.storage_class, gpus)
    written = patch_folder(out, settings)
    problems = validate_folder(out, args.kubernetes_version)
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    verdict = "valid" if not problems else f"{len(problems)} problems"
    print(f"wrote {len(written)} files under {out}; Kubernetes {args.kubernetes_version} schema: {verdict}")
    return 1 if problems else 0


def _patch_compose(out: Path) -> int:
    out.write_text(yaml.safe_dump(patch_compose(yaml.safe_load(out.read_text("utf-8"))), sort_keys=False), "utf-8")
    print(f"wrote {out}")
    return 0


def _jina_flow(flow: dict):
    """The Flow object jina exports; jina would ask Docker Hub which version to label the manifests with: it
    gets the installed one instead, so that nothing goes to the network."""
    import jina
    from jina.orchestrate.deployments.config import docker_compose, k8s

    k8s.get_base_executor_version = docker_compose.get_base_executor_version = lambda: jina.__version__
    return jina.Flow.load_config(yaml.safe_dump(flow, sort_keys=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command, out_help in (
        ("kubernetes", "folder of the manifests"),
        ("docker-compose", "the docker-compose file"),
        ("flow", "the Flow file with images"),
    ):
        sub = commands.add_parser(command)
        sub.add_argument("flow", help="a Flow file (its ${{ ENV.X }} variables come from the environment)")
        sub.add_argument("out", help=out_help)
        sub.add_argument("--registry", required=True, help="the images are REGISTRY/finetuner-<executor>:TAG")
        sub.add_argument("--tag", required=True, help="image tag; executors on CUDA use TAG-cuda")
        sub.add_argument("--gateway-image", default="", help="default: the validator image")
        sub.add_argument("--namespace", default="default", help="Kubernetes namespace")
        sub.add_argument("--network", default="finetuner", help="docker-compose network")
        _cluster_arguments(sub)
    _cluster_arguments(commands.add_parser("patch-kubernetes")).add_argument("out", help="a `jina export` folder")
    commands.add_parser("patch-docker-compose").add_argument("out", help="a `jina export docker-compose` file")
    return parser


def _cluster_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--storage-size", default="100Gi", help="size of the workspace claim")
    parser.add_argument("--storage-class", default=None, help="storage class of the workspace claim")
    parser.add_argument("--kubernetes-version", default=DEFAULT_KUBERNETES, help="schema to validate against")
    return parser


if __name__ == "__main__":
    sys.exit(main())
