"""The Ray Serve application of fleetserve: the ingress deployment over a model repository.

`fleetserve serve --engine ray` deploys it on a single-node cluster it starts (or on
FLEETSERVE_RAY_ADDRESS); a KubeRay RayService deploys it with

    import_path: fleetserve.engines.ray_app:build
    args: {model_repository: /models}              # any `fleetserve serve` setting, by its name

and Serve's `grpcOptions.grpcServicerFunctions` set to `ray_grpc.SERVICER_FUNCTIONS`.
"""

from __future__ import annotations

from typing import Any

from fleetserve.common.settings import ServeSettings

from .ray_settings import RaySettings

INGRESS_APP = "fleetserve"
INGRESS_DEPLOYMENT = "gateway"
# Requests one ingress replica takes at once: it only queues them into its batchers, so this is
# the bound on waiting requests (Serve's default of 5 would cap the whole server at 5).
INGRESS_MAX_ONGOING = 4096


def settings_args(settings: ServeSettings) -> dict[str, Any]:
    """The gateway settings as the ingress replica's arguments: paths absolute (a replica's
    working directory is not the caller's); the admin token stays in the environment."""
    args = settings.model_dump(mode="json", exclude={"admin_token", "engine"})
    args["model_repository"] = str(settings.model_repository.resolve())
    args["data_dir"] = str(settings.data_dir.resolve())
    return args


def application(settings: ServeSettings, ray_settings: RaySettings) -> Any:
    """The bound ingress deployment (one replica: it owns its model versions' deployments)."""
    from ray import serve

    from .ray_ingress import Gateway

    deployment: Any = serve.deployment(Gateway, name=INGRESS_DEPLOYMENT)
    deployment = deployment.options(
        num_replicas=1,
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        ray_actor_options={"num_cpus": ray_settings.ingress_cpus},
        graceful_shutdown_timeout_s=3,
        graceful_shutdown_wait_loop_s=0.5,
        health_check_period_s=5,
        logging_config={"enable_access_log": False},  # the gateway has its own metrics per request
    )
    return deployment.bind(settings_args(settings), ray_settings.replica_cpus)


def build(args: dict[str, Any]) -> Any:
    """Application builder for `serve run` / RayService `import_path`: `args` are gateway settings."""
    return application(ServeSettings(**args), RaySettings())
