"""Scheduling rules read from config.pbtxt: policy, priorities, queue policy, SLO, deadlines."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from fleetserve.batching.policy import AdaptivePolicy, FixedWindowPolicy, NoBatchingPolicy
from fleetserve.protocol.errors import FleetError
from fleetserve.repository.config import ConfigError
from fleetserve.repository.scheduling import Scheduling
from fleetserve.wire import model_config_pb2 as mc


def rules(text: str) -> Scheduling:
    return Scheduling.from_config(text_format.Parse(text, mc.ModelConfig()))


def test_defaults_without_dynamic_batching() -> None:
    s = rules('name: "m" max_batch_size: 8')
    assert not s.batching and s.levels == 0 and s.max_queue_size == 0 and s.slo_s is None
    assert isinstance(s.policy(), AdaptivePolicy)
    assert s.deadline(10.0, None, None) is None


def test_triton_fields_and_own_parameters() -> None:
    s = rules(
        """
        max_batch_size: 16
        dynamic_batching {
          preferred_batch_size: [ 8, 4 ]
          max_queue_delay_microseconds: 5000
          priority_levels: 3
          default_priority_level: 2
          default_queue_policy { max_queue_size: 100 default_timeout_microseconds: 50000 }
        }
        parameters { key: "latency_slo_ms" value: { string_value: "20" } }
        parameters { key: "batch_policy" value: { string_value: "window" } }
        """
    )
    assert s.batching and s.preferred == (4, 8) and s.max_queue_delay_s == pytest.approx(0.005)
    policy = s.policy()
    assert isinstance(policy, FixedWindowPolicy) and policy.window_s == pytest.approx(0.005)
    assert s.levels == 3 and s.level(0) == 2 and s.level(1) == 1 and s.level(3) == 3
    assert s.max_queue_size == 100
    # SLO 20 ms less the default 10% headroom for the transport, queue timeout 50 ms: the SLO
    assert s.slo_headroom == pytest.approx(0.1)
    assert s.deadline(1.0, None, None) == pytest.approx(1.018)
    # a request timeout of 5 ms and a gRPC deadline at +3 ms: the earliest wins
    assert s.deadline(1.0, 0.005, None) == pytest.approx(1.005)
    assert s.deadline(1.0, 0.005, 1.003) == pytest.approx(1.003)


def test_priority_outside_the_levels_is_a_client_error() -> None:
    s = rules("dynamic_batching { priority_levels: 2 }")
    with pytest.raises(FleetError, match="priority 3 is outside"):
        s.level(3)


def test_request_timeout_overrides_the_queue_timeout_only_when_allowed() -> None:
    strict = rules("dynamic_batching { default_queue_policy { default_timeout_microseconds: 10000 } }")
    assert strict.deadline(0.0, 0.5, None) == pytest.approx(0.010)
    lenient = rules(
        "dynamic_batching { default_queue_policy {"
        " default_timeout_microseconds: 10000 allow_timeout_override: true } }"
    )
    assert lenient.deadline(0.0, 0.5, None) == pytest.approx(0.5)


def test_delay_action_means_no_queue_timeout() -> None:
    s = rules(
        "dynamic_batching { default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 10 } }"
    )
    assert s.deadline(0.0, None, None) is None


@pytest.mark.parametrize(
    "text",
    [
        'parameters { key: "latency_slo_ms" value: { string_value: "fast" } }',
        'parameters { key: "latency_slo_ms" value: { string_value: "-1" } }',
        'parameters { key: "latency_slo_headroom" value: { string_value: "1" } }',
        'parameters { key: "latency_slo_headroom" value: { string_value: "lots" } }',
        'parameters { key: "batch_policy" value: { string_value: "fifo" } }',
        "dynamic_batching { priority_levels: 2 default_priority_level: 5 }",
    ],
)
def test_bad_rules_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        rules(text)


def test_none_policy() -> None:
    s = rules('dynamic_batching { } parameters { key: "batch_policy" value: { string_value: "none" } }')
    assert isinstance(s.policy(), NoBatchingPolicy)


def test_the_slo_headroom_is_configurable() -> None:
    none = rules(
        'parameters { key: "latency_slo_ms" value: { string_value: "100" } }'
        ' parameters { key: "latency_slo_headroom" value: { string_value: "0" } }'
    )
    assert none.deadline(0.0, None, None) == pytest.approx(0.100)
    quarter = rules(
        'parameters { key: "latency_slo_ms" value: { string_value: "100" } }'
        ' parameters { key: "latency_slo_headroom" value: { string_value: "0.25" } }'
    )
    assert quarter.deadline(0.0, None, None) == pytest.approx(0.075)
    # the request's own timeout is the client's: no headroom is taken from it
    assert quarter.deadline(0.0, 0.050, None) == pytest.approx(0.050)
