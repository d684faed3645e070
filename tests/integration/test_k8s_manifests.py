"""k8s/: every overlay renders with `kubectl kustomize`; every built-in object validates against the
Kubernetes OpenAPI schema offline (kubernetes-validate, strict: unknown fields fail), the pod
templates and Service inside the RayService too; the custom resources (RayService,
ServiceMonitor) use only the fields their CRDs document and every field they require. Then what
matters to an operator: probes, requests and limits, non-root, the admin token from a Secret,
CONTRACT.md's ports, one model repository volume, GPUs and the gpu extra in the gpu overlay.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.32"  # the kubectl of this machine image; the schemas ship in the package
CUSTOM_KINDS = {"RayService", "ServiceMonitor"}
Doc = dict[str, Any]

# --- fields of the custom resources, as their CRDs document them -------------------------------
# KubeRay v1.1, CRD ray.io/v1 RayService (ray-operator/apis/ray/v1/rayservice_types.go and
# raycluster_types.go): the allowed keys of each object, and those without `omitempty` (required).
RAYSERVICE_SPEC = {
    "serveConfigV2",
    "rayClusterConfig",
    "serviceUnhealthySecondThreshold",
    "deploymentUnhealthySecondThreshold",
    "serveService",
}
RAYCLUSTER_SPEC = {
    "headGroupSpec",
    "workerGroupSpecs",
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headServiceAnnotations",
    "suspend",
}
RAYCLUSTER_REQUIRED = {"headGroupSpec"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
HEAD_GROUP_REQUIRED = {"rayStartParams", "template"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "numOfHosts",
    "rayStartParams",
    "template",
    "scaleStrategy",
}
WORKER_GROUP_REQUIRED = {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"}
AUTOSCALER_OPTIONS = {
    "resources",
    "image",
    "imagePullPolicy",
    "env",
    "envFrom",
    "volumeMounts",
    "securityContext",
    "idleTimeoutSeconds",
    "upscalingMode",
}
UPSCALING_MODES = {"Default", "Aggressive", "Conservative"}
# prometheus-operator v0.75, CRD monitoring.coreos.com/v1 ServiceMonitor
# (pkg/apis/monitoring/v1/servicemonitor_types.go; Endpoint in types.go).
SERVICEMONITOR_SPEC = {
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "endpoints",
    "selector",
    "namespaceSelector",
    "sampleLimit",
    "scrapeProtocols",
    "targetLimit",
    "labelLimit",
    "labelNameLengthLimit",
    "labelValueLengthLimit",
    "keepDroppedTargets",
    "attachMetadata",
    "scrapeClass",
    "bodySizeLimit",
}
SERVICEMONITOR_REQUIRED = {"selector"}
SERVICEMONITOR_ENDPOINT = {
    "port",
    "targetPort",
    "path",
    "scheme",
    "params",
    "interval",
    "scrapeTimeout",
    "tlsConfig",
    "bearerTokenFile",
    "bearerTokenSecret",
    "authorization",
    "honorLabels",
    "honorTimestamps",
    "trackTimestampsStaleness",
    "basicAuth",
    "oauth2",
    "metricRelabelings",
    "relabelings",
    "proxyUrl",
    "followRedirects",
    "enableHttp2",
    "filterRunning",
}
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)

# --- CONTRACT.md's ports --------------------------------------------------------------------------
PORTS = {
    "fleetserve-gateway": {8000, 8001, 8002},
    "fleetserve-nginx": {8000, 8001},
    "fleetserve-rollout": {8010},
    "fleetserve-predlog": {8011},
    "fleetserve-drift": {8012},
    "fleetserve-redis": {6380},
    "fleetserve-prometheus": {9090},
    "fleetserve-triton": {8000, 8001, 8002},
}


def _missing(program: str) -> None:
    message = f"{program} is not installed (it is part of this project's machine image / make setup)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _render(overlay: str) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        _missing("kubectl")
    done = subprocess.run(
        [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {overlay: _render(overlay) for overlay in OVERLAYS}


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def _pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc, bool]]:
    """(where, pod template, runs to completion) of every workload, the RayService's included."""
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield where, d["spec"]["template"], False
        elif d["kind"] == "Job":
            yield where, d["spec"]["template"], True
        elif d["kind"] == "CronJob":
            yield where, d["spec"]["jobTemplate"]["spec"]["template"], True
        elif d["kind"] == "RayService":
            cluster = d["spec"]["rayClusterConfig"]
            yield f"{where} head", cluster["headGroupSpec"]["template"], False
            for group in cluster.get("workerGroupSpecs", []):
                yield f"{where} worker {group['groupName']}", group["template"], False


def _job_spec(docs: list[Doc], where: str) -> Doc:
    kind, name = where.split("/")
    d = _one(docs, kind, name)
    return d["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else d["spec"]


def _containers(docs: list[Doc]) -> Iterator[tuple[str, Doc, Doc, bool]]:
    for where, template, completes in _pod_templates(docs):
        spec = template["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where} container {c['name']}", c, spec, completes


def _quantity(value: str | int | float) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_every_part(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {
        ("Deployment", "fleetserve-gateway"),
        ("Service", "fleetserve-gateway"),
        ("HorizontalPodAutoscaler", "fleetserve-gateway"),
        ("Deployment", "fleetserve-nginx"),
        ("Service", "fleetserve"),
        ("StatefulSet", "fleetserve-redis"),
        ("Deployment", "fleetserve-predlog"),
        ("Deployment", "fleetserve-drift"),
        ("Deployment", "fleetserve-rollout"),
        ("CronJob", "fleetserve-trainer"),
        ("RayService", "fleetserve-ray"),
        ("Deployment", "fleetserve-triton"),
        ("Deployment", "fleetserve-prometheus"),
        ("ServiceMonitor", "fleetserve"),
        ("PersistentVolumeClaim", "fleetserve-models"),
        ("ConfigMap", "fleetserve-grafana-dashboards"),
    }
    assert expected <= kinds, sorted(expected - kinds)
    assert any(k == "ConfigMap" and n.startswith("fleetserve-nginx") for k, n in kinds)
    assert any(k == "ConfigMap" and n.startswith("fleetserve-prometheus") for k, n in kinds)
    assert {d["metadata"].get("namespace") for d in docs} == {"fleetserve"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_against_the_openapi_schema(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    checked = 0
    for d in rendered[overlay]:
        if d["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(d, KUBERNETES_VERSION, strict=True)
        checked += 1
    # the built-in objects inside the RayService: its pod templates and its Service
    for where, template, _ in _pod_templates(rendered[overlay]):
        if where.startswith("RayService"):
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
            kubernetes_validate.validate({**wrapped, "template": template}, KUBERNETES_VERSION, strict=True)
            checked += 1
    ray = _one(rendered[overlay], "RayService", "fleetserve-ray")
    service = {"apiVersion": "v1", "kind": "Service", **ray["spec"]["serveService"]}
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    assert checked >= 30


def test_the_validator_rejects_what_the_api_server_would() -> None:
    """Strict validation is on: a misspelt field and a wrong type fail (the check can fail)."""
    good = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]},
    }
    kubernetes_validate.validate(good, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {**good, "spec": {"ports": [{"port": 80}], "selectr": {}}}, KUBERNETES_VERSION, strict=True
        )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {**good, "spec": {"ports": [{"port": "eighty"}]}}, KUBERNETES_VERSION, strict=True
        )


def _functions(module: str) -> set[str]:
    """Top-level functions of a fleetserve module, read from its source (Ray need not be installed)."""
    path = ROOT / "services" / Path(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"{module}: no {path.relative_to(ROOT)}"
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


def _fields(obj: Doc, allowed: set[str], required: set[str], where: str) -> None:
    assert set(obj) <= allowed, f"{where}: fields the CRD does not document: {sorted(set(obj) - allowed)}"
    assert required <= set(obj), f"{where}: required fields missing: {sorted(required - set(obj))}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_uses_the_fields_of_its_crd(rendered: dict[str, list[Doc]], overlay: str) -> None:
    ray = _one(rendered[overlay], "RayService", "fleetserve-ray")
    assert ray["apiVersion"] == "ray.io/v1"
    assert set(ray) == {"apiVersion", "kind", "metadata", "spec"}
    _fields(ray["spec"], RAYSERVICE_SPEC, {"serveConfigV2", "rayClusterConfig"}, "spec")
    cluster = ray["spec"]["rayClusterConfig"]
    _fields(cluster, RAYCLUSTER_SPEC, RAYCLUSTER_REQUIRED, "rayClusterConfig")
    assert isinstance(cluster["rayVersion"], str) and isinstance(cluster["enableInTreeAutoscaling"], bool)
    options = cluster["autoscalerOptions"]
    _fields(options, AUTOSCALER_OPTIONS, set(), "autoscalerOptions")
    assert options["upscalingMode"] in UPSCALING_MODES
    _fields(cluster["headGroupSpec"], HEAD_GROUP, HEAD_GROUP_REQUIRED, "headGroupSpec")
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in cluster["workerGroupSpecs"]:
        _fields(group, WORKER_GROUP, WORKER_GROUP_REQUIRED, f"workerGroupSpecs {group['groupName']}")
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for group in groups:  # map[string]string
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group["rayStartParams"]
    # the Serve config: the Ray app over the shared repository, REST 8000 and gRPC 8001
    serve = yaml.safe_load(ray["spec"]["serveConfigV2"])
    assert serve["http_options"]["port"] == 8000 and serve["grpc_options"]["port"] == 8001
    (app,) = serve["applications"]
    module, function = app["import_path"].split(":")
    assert function in _functions(module), f"{app['import_path']} is not defined"
    for path in serve["grpc_options"]["grpc_servicer_functions"]:
        module, function = path.rsplit(".", 1)
        assert function in _functions(module), f"{path} is not defined"
    for where, template, _ in _pod_templates([ray]):
        mounts = {m["mountPath"] for c in template["spec"]["containers"] for m in c.get("volumeMounts", [])}
        assert app["args"]["model_repository"] in mounts, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_servicemonitor_uses_the_fields_of_its_crd_and_finds_targets(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    monitor = _one(docs, "ServiceMonitor", "fleetserve")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    _fields(monitor["spec"], SERVICEMONITOR_SPEC, SERVICEMONITOR_REQUIRED, "spec")
    names: set[str] = set()
    for endpoint in monitor["spec"]["endpoints"]:
        _fields(endpoint, SERVICEMONITOR_ENDPOINT, set(), "endpoint")
        assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
        names.add(endpoint["port"])
    wanted = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        d
        for d in docs
        if d["kind"] == "Service" and wanted.items() <= d["metadata"].get("labels", {}).items()
    ]
    scraped = {d["metadata"]["name"] for d in selected if names & {p["name"] for p in d["spec"]["ports"]}}
    assert {"fleetserve-gateway", "fleetserve-rollout", "fleetserve-predlog", "fleetserve-drift"} <= scraped


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_limits_and_runs_as_non_root(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    seen = 0
    for where, c, pod, completes in _containers(docs):
        seen += 1
        if completes:  # a Job's pod: no readiness to speak of; a deadline ends a hung run
            spec = _job_spec(docs, where.split(" ")[0])
            assert spec.get("activeDeadlineSeconds", 0) > 0, where
        else:
            assert "livenessProbe" in c and "readinessProbe" in c, f"{where}: probes"
        for key in ("cpu", "memory"):
            request = c["resources"]["requests"][key]
            limit = c["resources"]["limits"][key]
            assert _quantity(request) <= _quantity(limit), f"{where}: {key} request over limit"
        pod_sc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{where}: uid 0"
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
    assert seen >= 11
    ray = _one(docs, "RayService", "fleetserve-ray")
    autoscaler = ray["spec"]["rayClusterConfig"]["autoscalerOptions"]  # the sidecar KubeRay adds
    assert autoscaler["securityContext"]["runAsNonRoot"] is True
    assert autoscaler["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert autoscaler["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admin_token_comes_from_a_secret_the_operator_creates(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"], "no secret value in the repository"
    holders = set()
    for where, c, _, _ in _containers(docs):
        for env in c.get("env", []):
            if env["name"] == "FLEETSERVE_ADMIN_TOKEN":
                assert "value" not in env, where
                assert env["valueFrom"]["secretKeyRef"] == {"name": "fleetserve-admin", "key": "token"}
                holders.add(where.split(" ")[0])
    assert {
        "Deployment/fleetserve-gateway",
        "Deployment/fleetserve-rollout",
        "CronJob/fleetserve-trainer",
    } <= holders


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_names_and_wiring_follow_the_contract(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    pods = {}
    for where, template, _ in _pod_templates(docs):
        pods[where] = template
        name = where.split(" ")[0].split("/")[1]
        if name in PORTS:
            ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert ports == PORTS[name], where
    # every Service selects pods of this render, on container ports they declare
    for svc in (d for d in docs if d["kind"] == "Service" and "selector" in d["spec"]):
        matching = [
            t
            for t in pods.values()
            if svc["spec"]["selector"].items() <= t["metadata"].get("labels", {}).items()
        ]
        assert matching, f"Service {svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            declared = {
                p.get("name") if isinstance(target, str) else p["containerPort"]
                for t in matching
                for c in t["spec"]["containers"]
                for p in c.get("ports", [])
            }
            assert target in declared, f"Service {svc['metadata']['name']} port {target}"
    hpa = _one(docs, "HorizontalPodAutoscaler", "fleetserve-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fleetserve-gateway"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # Redis as `fleetserve up` runs it, and everyone's URL pointing at it
    redis = _one(docs, "StatefulSet", "fleetserve-redis")["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(redis["args"])
    assert "--appendonly yes" in args and "--appendfsync everysec" in args and "--port 6380" in args
    urls = {
        env["value"]
        for _, c, _, _ in _containers(docs)
        for env in c.get("env", [])
        if env["name"] == "FLEETSERVE_REDIS_URL"
    }
    assert urls == {"redis://fleetserve-redis:6380/0"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_model_repository_volume_is_shared(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    pvc = _one(docs, "PersistentVolumeClaim", "fleetserve-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    users = set()
    for where, template, _ in _pod_templates(docs):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in template["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        for c in template["spec"]["containers"]:
            for m in c.get("volumeMounts", []):
                if claims.get(m["name"]) == "fleetserve-models":
                    assert m["mountPath"] == "/models", where
                    users.add(where.split(" ")[0])
    expected = {"Deployment/fleetserve-gateway", "CronJob/fleetserve-trainer", "Deployment/fleetserve-triton"}
    assert expected | {"RayService/fleetserve-ray"} <= users
    for name in ("fleetserve-gateway", "fleetserve-rollout", "fleetserve-drift"):
        args = _one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--model-repository") + 1] == "/models", name
    trainer = _one(docs, "CronJob", "fleetserve-trainer")["spec"]["jobTemplate"]["spec"]["template"]
    args = trainer["spec"]["containers"][0]["args"]
    assert args[args.index("--model-repository") + 1] == "/models"
    assert args[args.index("--production-data") + 1] == "/predlog"  # the predlog writer's --out
    writer = _one(docs, "Deployment", "fleetserve-predlog")["spec"]["template"]["spec"]["containers"][0]
    assert writer["args"][writer["args"].index("--out") + 1] == "/predlog"
    triton = _one(docs, "Deployment", "fleetserve-triton")["spec"]["template"]["spec"]["containers"][0]
    assert "--model-repository=/models" in triton["args"] and triton["image"].startswith("nvcr.io/nvidia/")


def _gpus(c: Doc) -> int:
    return int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0))


def _image_extras() -> dict[str, set[str]]:
    """Tag -> extras, from the build commands documented in the Dockerfile."""
    text = (K8S / "image" / "Dockerfile").read_text()
    builds = re.findall(r"--build-arg EXTRAS=(\S+).*?-t fleetserve:(\S+)", text, flags=re.S)
    return {tag: set(extras.split(",")) for extras, tag in builds}


def test_gpu_overlay_requests_gpus_and_runs_the_gpu_extra(rendered: dict[str, list[Doc]]) -> None:
    extras = _image_extras()
    for overlay, docs in rendered.items():
        tags = {
            c["image"].split(":", 1)[1]
            for _, c, _, _ in _containers(docs)
            if c["image"].split(":")[0] == "fleetserve"
        }
        assert len(tags) == 1, tags
        (tag,) = tags
        assert overlay in extras[tag] and ({"cpu", "gpu"} - {overlay}).isdisjoint(extras[tag]), (tag, extras)
        gpus = {where.split(" container")[0]: _gpus(c) for where, c, _, _ in _containers(docs)}
        if overlay == "cpu":
            assert not any(gpus.values()), gpus
            continue
        worker = [w for w in gpus if w.startswith("RayService/fleetserve-ray worker")]
        for where in ["Deployment/fleetserve-gateway", "Deployment/fleetserve-triton", *worker]:
            assert gpus[where] == 1, where
        assert worker
        for where, _, pod, _ in _containers(docs):
            if gpus[where.split(" container")[0]]:
                assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                    "tolerations"
                ], where
    dockerfile = (K8S / "image" / "Dockerfile").read_text()
    assert 'pip install ".[${EXTRAS}]"' in dockerfile and "USER 10001" in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_config_is_valid_and_scrapes_every_annotated_pod(
    tmp_path: Path, rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    (config,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fleetserve-prometheus")
    ]
    parsed = yaml.safe_load(config["data"]["prometheus.yml"])
    # Debian builds Prometheus without Kubernetes discovery, so its promtool rejects
    # kubernetes_sd_configs: check those here, and the rest (relabelling included) with promtool
    for job in parsed["scrape_configs"]:
        for sd in job.pop("kubernetes_sd_configs"):
            assert sd["role"] == "pod" and sd["namespaces"] == {"own_namespace": True}
        job["static_configs"] = [{"targets": ["10.0.0.1:8002"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(parsed))
    promtool = shutil.which("promtool")
    if promtool is None:
        _missing("promtool (Debian's prometheus package)")
    done = subprocess.run(
        [str(promtool), "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # every pod that exports metrics says where, and the port is one it declares
    annotated = set()
    for where, template, _ in _pod_templates(docs):
        notes = template["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") == "true":
            ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert int(notes["prometheus.io/port"]) in ports, where
            annotated.add(where.split(" ")[0])
    assert {
        "Deployment/fleetserve-gateway",
        "Deployment/fleetserve-rollout",
        "Deployment/fleetserve-predlog",
        "Deployment/fleetserve-drift",
        "Deployment/fleetserve-triton",
    } <= annotated
    url = next(
        a
        for _, c, _, _ in _containers(docs)
        if c["name"] == "rollout"
        for a in c["args"]
        if a.startswith("http://")
    )
    assert url == "http://fleetserve-prometheus:9090"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nginx_balances_http_and_grpc_over_every_gateway_pod(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fleetserve-nginx")
    ]
    main, site = config["data"]["nginx.conf"], config["data"]["fleetserve.conf.template"]
    assert "include /tmp/nginx/conf.d/*.conf;" in main and "pid /tmp/nginx.pid;" in main
    headless = _one(docs, "Service", "fleetserve-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    for port in (8000, 8001):
        host = f"fleetserve-gateway-headless.${{POD_NAMESPACE}}.svc.${{CLUSTER_DOMAIN}}:{port} resolve"
        assert host in site and port in {p["port"] for p in headless["spec"]["ports"]}
    assert site.count("least_conn;") == 2 and "grpc_pass grpc://fleetserve_grpc;" in site
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in site
    assert "grpc_next_upstream error timeout http_502 http_503 non_idempotent;" in site
    assert "listen 8000;" in site and "listen 8001;" in site and "http2 on;" in site
    nginx = _one(docs, "Deployment", "fleetserve-nginx")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in nginx["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"]["value"] == "/tmp/nginx/conf.d"
    # the `resolve` parameter of upstream servers is in open-source nginx from 1.27.3
    major, minor = (int(x) for x in nginx["image"].split(":")[1].split("-")[0].split(".")[:2])
    assert (major, minor) >= (1, 28)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grafana_configmap_holds_every_dashboard(rendered: dict[str, list[Doc]], overlay: str) -> None:
    cm = _one(rendered[overlay], "ConfigMap", "fleetserve-grafana-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name for p in (K8S / "grafana" / "dashboards").glob("*.json")}
    assert set(cm["data"]) == files and len(files) >= 2
