"""The plan of `fleetserve up`: CONTRACT.md's ports, the offset, what runs in which order, and
what is left out (with the command that adds it) when a program is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from fleetserve.cluster import components, layout, prometheus
from fleetserve.cluster.layout import PortPlan, ReplicaPorts
from fleetserve.cluster.settings import UpSettings
from fleetserve.drift.retrain import parse_command

# an executable file that stands in for nginx / redis-server / prometheus: the plan only looks
PRESENT = sys.executable
ABSENT = "/nonexistent/program"


def _settings(tmp_path: Path, **kw: object) -> UpSettings:
    base: dict[str, object] = {
        "model_repository": tmp_path / "models",
        "data_dir": tmp_path / "data",
        "nginx_bin": PRESENT,
        "redis_bin": PRESENT,
        "prometheus_bin": PRESENT,
    }
    return UpSettings(**{**base, **kw})


def test_contract_ports_by_default() -> None:
    plan = PortPlan.of(UpSettings(), 3, behind_nginx=True)
    assert (plan.http, plan.grpc) == (8000, 8001)
    assert plan.replicas == (
        ReplicaPorts(18000, 18001, 18002),
        ReplicaPorts(18010, 18011, 18012),
        ReplicaPorts(18020, 18021, 18022),
    )
    assert (plan.redis, plan.prometheus, plan.rollout, plan.predlog, plan.drift) == (
        6380,
        9090,
        8010,
        8011,
        8012,
    )


def test_the_offset_shifts_every_port_and_without_nginx_the_replica_takes_the_front() -> None:
    plan = PortPlan.of(UpSettings(port_offset=100), 1, behind_nginx=False)
    assert plan.replicas == (ReplicaPorts(8100, 8101, 8102),)
    assert (plan.http, plan.redis, plan.prometheus, plan.drift) == (8100, 6480, 9190, 8112)


def test_replicas_default_to_one_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert UpSettings().replica_count() == 6
    assert UpSettings(replicas=2).replica_count() == 2


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETSERVE_REPLICAS", "3")
    monkeypatch.setenv("FLEETSERVE_NO_NGINX", "true")
    assert UpSettings().replica_count() == 3 and UpSettings().no_nginx
    assert UpSettings(replicas=1).replicas == 1  # a flag wins over the environment


def test_full_plan_runs_everything_in_start_order(tmp_path: Path) -> None:
    cluster = components.build(_settings(tmp_path, replicas=2))
    assert [(c.name, c.stage) for c in cluster.components] == [
        ("redis", 0),
        ("prometheus", 0),
        ("replica-0", 1),
        ("replica-1", 1),
        ("nginx", 2),
        ("rollout", 3),
        ("predlog", 3),
        ("drift", 3),
    ]
    assert cluster.left_out == [] and cluster.redis_url == "redis://127.0.0.1:6380/0"
    r1 = cluster.replicas[1]
    assert r1.env["FLEETSERVE_REDIS_URL"] == "redis://127.0.0.1:6380/0"
    assert r1.env["FLEETSERVE_DATA_DIR"] == str((tmp_path / "data" / "replicas" / "1").resolve())
    assert r1.cmd[r1.cmd.index("--http-port") + 1] == "18010"
    assert [lst.port for lst in r1.listeners] == [18010, 18011, 18012]
    redis = cluster.components[0].cmd
    assert (
        redis[redis.index("--appendonly") + 1] == "yes"
        and redis[redis.index("--appendfsync") + 1] == "everysec"
    )
    predlog = cluster.components[6].cmd
    assert predlog[predlog.index("--out") + 1] == str((tmp_path / "data" / "predlog").resolve())
    rollout = cluster.components[5].cmd
    assert rollout[rollout.index("--redis-url") + 1] == cluster.redis_url
    logs = {c.log for c in cluster.components}
    assert len(logs) == 8 and all(p.parent == (tmp_path / "data" / "logs").resolve() for p in logs)


def test_missing_programs_are_left_out_with_the_command_that_adds_them(tmp_path: Path) -> None:
    s = _settings(tmp_path, replicas=4, nginx_bin=ABSENT, redis_bin=ABSENT, prometheus_bin=ABSENT)
    cluster = components.build(s)
    assert [c.name for c in cluster.components] == ["replica-0", "rollout"]
    assert [lst.port for lst in cluster.replicas[0].listeners] == [8000, 8001, 8002]
    assert "FLEETSERVE_REDIS_URL" not in cluster.replicas[0].env and cluster.redis_url is None
    assert "--redis-url" not in cluster.components[1].cmd
    assert [(x.part, x.remedy) for x in cluster.left_out] == [
        ("nginx", "sudo apt-get install nginx"),
        ("redis-server", "sudo apt-get install redis-server"),
        ("prometheus", "sudo apt-get install prometheus"),
    ]
    assert "--replicas 4 needs nginx" in cluster.left_out[0].consequence


def test_no_nginx_asked_is_left_out_without_an_install_command(tmp_path: Path) -> None:
    cluster = components.build(_settings(tmp_path, no_nginx=True, replicas=2))
    assert [(x.part, x.remedy) for x in cluster.left_out] == [("nginx", None)]
    assert len(cluster.replicas) == 1 and "nginx" not in [c.name for c in cluster.components]


def test_the_environment_does_not_leak_a_redis_url_into_a_cluster_without_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETSERVE_REDIS_URL", "redis://elsewhere:1/0")
    cluster = components.build(_settings(tmp_path, redis_bin=ABSENT, replicas=1))
    assert "FLEETSERVE_REDIS_URL" not in cluster.replicas[0].env


def test_prometheus_scrapes_every_process(tmp_path: Path) -> None:
    s = _settings(tmp_path, replicas=2, scrape_interval_s=1.5)
    cluster = components.build(s)
    cluster.prepare_steps[1]()  # redis folder, then prometheus.yml
    config = yaml.safe_load((tmp_path / "data" / "prometheus" / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "1500ms"
    jobs = {
        j["job_name"]: [(t["targets"][0], t["labels"]["process"]) for t in j["static_configs"]]
        for j in config["scrape_configs"]
    }
    assert jobs == {
        "fleetserve": [("127.0.0.1:18002", "replica-0"), ("127.0.0.1:18012", "replica-1")],
        "rollout": [("127.0.0.1:8010", "rollout")],
        "predlog": [("127.0.0.1:8011", "predlog")],
        "drift": [("127.0.0.1:8012", "drift")],
        "prometheus": [("127.0.0.1:9090", "prometheus")],
    }


def test_prometheus_durations() -> None:
    text = prometheus.render([prometheus.Job("x", [prometheus.Target("h:1", "x")])], 5.0)
    assert "scrape_interval: 5s" in text and "scrape_timeout: 5s" in text
    text = prometheus.render([], 30.0)
    assert "scrape_interval: 30s" in text and "scrape_timeout: 10s" in text


def test_the_cluster_closes_the_loop_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETSERVE_DRIFT_RETRAIN_COMMAND", raising=False)
    monkeypatch.delenv("FLEETSERVE_PREDLOG_TENSOR_SAMPLE_RATE", raising=False)
    cluster = components.build(_settings(tmp_path, replicas=2))
    by_name = {c.name: c for c in cluster.components}
    assert by_name["replica-0"].env["FLEETSERVE_PREDLOG_TENSOR_SAMPLE_RATE"] == "0.1"
    argv = parse_command(by_name["drift"].env["FLEETSERVE_DRIFT_RETRAIN_COMMAND"])
    assert argv is not None
    at = argv.index("train")
    options = dict(zip(argv[at + 1 :: 2], argv[at + 2 :: 2], strict=False))
    assert options["--model"] == "{model}"
    assert options["--reason"] == "drift"
    assert options["--register"] == f"http://127.0.0.1:{cluster.ports.rollout}"
    assert options["--production-data"] == str(tmp_path / "data" / "predlog")
    # the user's own choices win
    monkeypatch.setenv("FLEETSERVE_DRIFT_RETRAIN_COMMAND", "my-retrain {model}")
    monkeypatch.setenv("FLEETSERVE_PREDLOG_TENSOR_SAMPLE_RATE", "0")
    mine = {c.name: c for c in components.build(_settings(tmp_path, replicas=2)).components}
    assert mine["drift"].env["FLEETSERVE_DRIFT_RETRAIN_COMMAND"] == "my-retrain {model}"
    assert mine["replica-1"].env["FLEETSERVE_PREDLOG_TENSOR_SAMPLE_RATE"] == "0"


def test_cluster_ports_cover_both_layouts_at_the_offset() -> None:
    ports = layout.cluster_ports(UpSettings(port_offset=100), 2)
    assert sorted(ports) == sorted(
        [8100, 8101, 8102, 18100, 18101, 18102, 18110, 18111, 18112, 6480, 9190, 8110, 8111, 8112]
    )
    assert len(ports) == len(set(ports))
