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
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--log-level", default="info")


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model, gate it against production and publish it")
    p.add_argument("--model")
    p.add_argument("--model-repository", type=Path)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--production-data", type=Path, help="the predlog writer's --out folder")
    p.add_argument("--production-weight", type=float, help="draws of each production sample per epoch")
    p.add_argument("--production-eval-fraction", type=float, help="recent share held out to evaluate on")
    p.add_argument("--min-production-rows", type=int, help="labelled production rows needed to train")
    p.add_argument("--wait-for-rows-s", type=float, help="how long to wait for them (labels come later)")
    p.add_argument("--register", metavar="URL", help="rollout controller: compare, hand over")
    p.add_argument("--reason", choices=["manual", "drift"])
    p.add_argument("--gate-margin", type=float, help="held-out accuracy it may lose (0.01 = 1 point)")
    p.add_argument("--augment-invert", type=float, help="share of training images inverted by augmentation")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _rollout_parser(sub: Any) -> None:
    p = sub.add_parser("rollout", help="the rollout controller (serve) and its commands")
    rsub = p.add_subparsers(dest="rollout_command", required=True)
    serve = rsub.add_parser("serve", help="run the rollout controller (HTTP API and /metrics)")
    serve.add_argument("--model-repository", type=Path)
    serve.add_argument("--prometheus-url")
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument("--redis-url")
    serve.add_argument("--log-level", default="info")
    for name, text in (
        ("status", "a model's plan, versions and automated run (no MODEL: every model with a plan)"),
        ("stage", "shadow VERSION"),
        ("canary", "make VERSION the canary at --weight percent"),
        ("promote", "make VERSION (default: the canary) production"),
        ("rollback", "take the canary and shadows (or VERSION) out of traffic"),
        ("auto", "shadow, canary steps and promote VERSION while guardrails hold"),
    ):
        c = rsub.add_parser(name, help=text)
        c.add_argument("model", nargs="?" if name == "status" else None)
        needs_version = name in ("stage", "canary", "auto")
        c.add_argument("version", type=int, nargs=None if needs_version else "?")
        c.add_argument("--controller")
        if name == "canary":
            c.add_argument("--weight", type=float, required=True)
        if name in ("stage", "canary", "promote", "rollback"):
            c.add_argument("--reason")
        if name == "auto":
            c.add_argument("--steps")
            c.add_argument("--shadow-requests", type=int)
            c.add_argument("--dwell-s", type=float)
            c.add_argument("--poll-s", type=float)
            c.add_argument("--timeout-s", type=float)
            c.add_argument(
                "--no-judge-agreement",
                dest="judge_agreement",
                action="store_const",
                const=False,
                help="measure shadow agreement but do not judge it (a candidate expected to disagree)",
            )
            c.add_argument(
                "--require-accuracy",
                action="store_const",
                const=True,
                help="each canary step waits for enough labels to judge live accuracy",
            )
            c.add_argument("--wait", action="store_true", help="follow the run; exit 0 only when promoted")


def _up_parser(sub: Any) -> None:
    p = sub.add_parser("up", help="run the local cluster: nginx, replicas, Redis, Prometheus, sidecars")
    p.add_argument("--model-repository", type=Path)
    p.add_argument("--replicas", type=int, help="gateway replicas behind nginx (default: one per core)")
    p.add_argument("--data-dir", type=Path, help="logs, configs and state of every process (default .data)")
    p.add_argument("--no-nginx", action="store_true", default=None, help="one replica on the front ports")
    p.add_argument("--host")
    p.add_argument("--http-port", type=int, help="front HTTP (nginx) port, default 8000")
    p.add_argument("--grpc-port", type=int, help="front gRPC (nginx) port, default 8001")
    p.add_argument("--metrics-port", type=int, help="metrics of the single replica without nginx, 8002")
    p.add_argument("--replica-base-port", type=int, help="replica i: base + 10 i (HTTP), +1 gRPC, +2 metrics")
    p.add_argument("--redis-port", type=int)
    p.add_argument("--prometheus-port", type=int)
    p.add_argument("--rollout-port", type=int)
    p.add_argument("--predlog-port", type=int)
    p.add_argument("--drift-port", type=int)
    p.add_argument("--port-offset", type=int, help="added to every port (a second cluster, tests)")
    p.add_argument("--scrape-interval-s", type=float)


def _up(args: argparse.Namespace) -> int:
    from fleetserve.cluster.launcher import up
    from fleetserve.cluster.settings import UpSettings

    names = (
        "model_repository",
        "replicas",
        "data_dir",
        "no_nginx",
        "host",
        "http_port",
        "grpc_port",
        "metrics_port",
        "replica_base_port",
        "redis_port",
        "prometheus_port",
        "rollout_port",
        "predlog_port",
        "drift_port",
        "port_offset",
        "scrape_interval_s",
    )
    return up(UpSettings(**_given(args, *names)))


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
            "data_dir",
        )
    )
    if not settings.model_repository.is_dir():
        print(f"fleetserve: model repository {settings.model_repository} is not a folder", file=sys.stderr)
        return 2
    if settings.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            print(
                "fleetserve: the ray engine needs ray[serve]: pip install 'fleetserve[ray]'", file=sys.stderr
            )
            return 2
        from fleetserve.engines.ray_engine import serve
    try:
        serve(settings)
    except PortTaken as exc:
        print(f"fleetserve: {exc}", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from fleetserve.trainer.command import train
    from fleetserve.trainer.settings import TrainSettings

    names: tuple[str, ...] = ("model", "model_repository", "epochs", "seed", "production_data")
    names += ("production_weight",)
    names += ("production_eval_fraction", "register", "reason", "gate_margin", "augment_invert", "threads")
    names += ("min_production_rows", "wait_for_rows_s")
    try:
        settings = TrainSettings(**_given(args, *names))
    except ValidationError as exc:
        print(f"fleetserve train: {exc}", file=sys.stderr)
        return 2
    return train(settings, progress=not args.no_progress)


def _rollout(args: argparse.Namespace) -> int:
    from fleetserve.rollout import client
    from fleetserve.rollout.settings import RolloutSettings

    names = ("model_repository", "prometheus_url", "port", "host", "redis_url", "controller")
    settings = RolloutSettings(**_given(args, *names))
    cmd = args.rollout_command
    if cmd == "serve":
        from fleetserve.engines.ports import PortTaken
        from fleetserve.rollout.service import serve

        if not settings.model_repository.is_dir():
            print(
                f"fleetserve: model repository {settings.model_repository} is not a folder", file=sys.stderr
            )
            return 2
        try:
            serve(
                settings.model_repository,
                settings.prometheus_url,
                settings.port,
                settings.host,
                settings.redis_url,
                settings.token(),
                settings.guardrails,
                settings.auto,
            )
        except PortTaken as exc:
            print(f"fleetserve: {exc}", file=sys.stderr)
            return 1
        return 0
    if cmd == "status":
        return client.status(settings.controller, args.model)
    if cmd == "auto":
        try:
            steps = client.parse_steps(args.steps) if args.steps else None
        except ValueError as exc:
            print(f"fleetserve: {exc}", file=sys.stderr)
            return 2
        given = _given(
            args, "shadow_requests", "dwell_s", "poll_s", "timeout_s", "judge_agreement", "require_accuracy"
        )
        options = {"steps": steps, **given}
        return client.auto(
            settings.controller, settings.token(), args.model, args.version, options, args.wait
        )
    body = {"version": args.version, "weight": getattr(args, "weight", None), "reason": args.reason}
    return client.command(settings.controller, settings.token(), args.model, cmd, body)


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    import runpy

    sys.argv = ["loadtests.bench", *rest]
    runpy.run_module("loadtests.bench", run_name="__main__")
    return 0


def _feedback_parser(sub: Any) -> None:
    p = sub.add_parser("feedback", help="send ground-truth labels from a JSONL file to a gateway")
    p.add_argument("file", type=Path, help='one {"request_id": ..., "label": ..., "index": 0} per line')
    p.add_argument("--url", default="http://127.0.0.1:8000")


def _drift_parser(sub: Any) -> None:
    p = sub.add_parser("drift", help="run the drift / quality monitor (metrics on 8012)")
    p.add_argument("--model-repository", type=Path)
    p.add_argument("--redis-url")
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--host")
    p.add_argument("--stream-start", help="stream id to start at: $ (new records, default) or 0 (all)")
    p.add_argument("--records-dir", type=Path, help="read a gateway's file sink (--data-dir)")
    p.add_argument("--drift-window-items", type=int, help="items in each version's drift window")
    p.add_argument("--drift-retrain-command", help="argv to run when drift persists (no shell)")
    p.add_argument("--drift-retrain-after-s", type=float, help="seconds an alert must last before retraining")
    p.add_argument("--drift-retrain-cooldown-s", type=float, help="seconds between retrainings of a model")
    p.add_argument("--drift-retrain-retry-s", type=float, help="seconds before a failed retrain reruns")
    p.add_argument("--log-level", default="info")


DRIFT_FLAGS: tuple[str, ...] = ("model_repository", "redis_url", "metrics_port", "host", "stream_start")
DRIFT_FLAGS += ("records_dir",)
DRIFT_FLAGS += ("drift_window_items", "drift_retrain_command", "drift_retrain_after_s")
DRIFT_FLAGS += ("drift_retrain_cooldown_s", "drift_retrain_retry_s")


def _predlog_parser(sub: Any) -> None:
    p = sub.add_parser("predlog", help="run the predlog writer: streams -> Parquet (metrics on 8011)")
    p.add_argument("--out", type=Path)
    p.add_argument("--redis-url")
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--host")
    p.add_argument("--consumer", help="consumer name in the group; keep it across restarts")
    p.add_argument("--log-level", default="info")


def _predlog(args: argparse.Namespace) -> int:
    from fleetserve.engines.ports import PortTaken
    from fleetserve.predlog.settings import WriterSettings
    from fleetserve.predlog.writer import serve

    try:
        serve(WriterSettings(**_given(args, "out", "redis_url", "metrics_port", "host", "consumer")))
    except PortTaken as exc:
        print(f"fleetserve: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetserve` console script."""
    parser = argparse.ArgumentParser(prog="fleetserve")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _up_parser(sub)
    _train_parser(sub)
    _rollout_parser(sub)
    _feedback_parser(sub)
    _drift_parser(sub)
    _predlog_parser(sub)
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
    if args.command == "up":
        return _up(args)
    if args.command == "rollout":
        return _rollout(args)
    if args.command == "feedback":
        from fleetserve.predlog.feedback_client import run

        return run(args.file, args.url)
    if args.command == "drift":
        from fleetserve.drift.service import main as drift

        return drift(_given(args, *DRIFT_FLAGS))
    if args.command == "predlog":
        return _predlog(args)
    return _train(args)


if __name__ == "__main__":
    raise SystemExit(main())
