"""The `fleetserve` commands of CONTRACT.md: wiring only."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run a gateway replica (REST, gRPC, metrics)")
    p.add_argument("--model-repository", type=Path)
    p.add_argument("--http-port", type=int)
    p.add_argument("--grpc-port", type=int)
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--host")
    p.add_argument("--model-control-mode", choices=["none", "poll", "explicit"])
    p.add_argument("--repository-poll-secs", type=float)
    p.add_argument("--load-model", action="append")
    p.add_argument("--engine", choices=["local", "ray"])
    p.add_argument("--log-level", default="info")


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model and publish it as a new version")
    p.add_argument("--model", default="digits")
    p.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _serve(args: argparse.Namespace) -> int:
    from fleetserve.common.settings import ServeSettings
    from fleetserve.engines.local import serve
    from fleetserve.engines.ports import PortTaken

    settings = ServeSettings(
        **_given(
            args,
            "model_repository",
            "http_port",
            "grpc_port",
            "metrics_port",
            "host",
            "model_control_mode",
            "repository_poll_secs",
            "load_model",
            "engine",
        )
    )
    if settings.engine != "local":
        print("fleetserve: the ray engine is not available yet; use --engine local", file=sys.stderr)
        return 2
    if not settings.model_repository.is_dir():
        print(f"fleetserve: model repository {settings.model_repository} is not a folder", file=sys.stderr)
        return 2
    try:
        serve(settings)
    except PortTaken as exc:
        print(f"fleetserve: {exc}", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    from fleetserve.trainer.pipeline import run

    kwargs: dict[str, Any] = {"model": args.model, "repository": args.model_repository, "seed": args.seed}
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    version_dir = run(**kwargs)
    print(f"published {version_dir}")
    return 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    import runpy

    sys.argv = ["loadtests.bench", *rest]
    runpy.run_module("loadtests.bench", run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetserve` console script."""
    parser = argparse.ArgumentParser(prog="fleetserve")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _train_parser(sub)
    sub.add_parser("bench", help="run loadtests/bench.py (arguments pass through)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(args, rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return _serve(args)
    return _train(args)


if __name__ == "__main__":
    raise SystemExit(main())
