"""Benchmark of the data plane: raw onnxruntime vs the same model served by ``fleetserve serve``.

For each model, in one run on this machine:

1. raw: an in-process onnxruntime ``InferenceSession`` (1 intra-op and 1 inter-op thread) on
   the core the server will use, batch 1, closed loop for the duration;
2. served: ``fleetserve serve`` started as a subprocess pinned to that core (with
   ``FLEETSERVE_INTRA_OP_THREADS=1``), on a temporary model repository holding only the model
   under test, then closed-loop ``tritonclient`` aio clients (gRPC and REST with binary
   tensors) in this one process, pinned to another core, at each concurrency of the sweep;
3. peers (digits by default, every model with ``--peers-all``, none with ``--no-peers``): the
   bare servers of ``loadtests/peers.py`` (``bare-grpc`` on grpc.aio, ``bare-rest`` on
   uvicorn + httptools, canned zeros, no compute) started and measured exactly like the server,
   with the same client: the floor of the Python stack fleetserve is built on.

A table per model compares them (``served/raw`` = served req/s / raw batch-1 req/s; with peers,
``fs/peer`` = fleetserve / peer of req/s and of p50).

Usage::

    python -m loadtests.bench [--models digits,resnet18] [--duration 5] \\
        [--concurrency 1,4,16,64] [--protocols grpc,rest] [--json OUT] [--no-peers | --peers-all]

See loadtests/README.md for the methodology and the meaning of each column.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtests import make_resnet18
from loadtests.stats import in_window, ratio, summarize

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = PROJECT_ROOT / ".bench"
DEFAULT_REPOSITORY = PROJECT_ROOT / "model_repository"

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
# Hard bounds on every loop, whatever the duration says.
MAX_RAW_RUNS = 1_000_000
MAX_REQUESTS_PER_WORKER = 1_000_000
MAX_DURATION_S = 600.0

_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(bool)": np.bool_,
}


# --------------------------------------------------------------------------------------------
# The model under test


@dataclass
class TensorSpec:
    """One input or output: name, shape of a batch-1 request (-1: any size) and numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: Any


@dataclass
class ModelUnderTest:
    """A model folder (Triton layout) and what a batch-1 request to it looks like."""

    name: str
    folder: Path
    version: str
    onnx_path: Path | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    notes: list[str] = field(default_factory=list)


def _latest_version(folder: Path) -> Path | None:
    """Return the highest positive-integer version folder of a model folder, if any."""
    versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def _specs_from_onnx(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read input and output specs from an ONNX file; symbolic dimensions become 1 / -1."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [
        TensorSpec(
            i.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape), _ort_dtype(i.type)
        )
        for i in session.get_inputs()
    ]
    outputs = [
        TensorSpec(
            o.name, tuple(d if isinstance(d, int) and d > 0 else -1 for d in o.shape), _ort_dtype(o.type)
        )
        for o in session.get_outputs()
    ]
    return inputs, outputs


def _ort_dtype(type_name: str) -> Any:
    if type_name not in _ORT_TYPES:
        raise ValueError(f"unsupported ONNX tensor type {type_name}")
    return np.dtype(_ORT_TYPES[type_name])


def _specs_from_config(config_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read input and output specs from config.pbtxt (used when the model is not ONNX)."""
    from google.protobuf import text_format
    from tritonclient.utils import triton_to_np_dtype

    from fleetserve.wire import model_config_pb2

    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    prefix: tuple[int, ...] = (1,) if config.max_batch_size > 0 else ()

    def spec(tensor: Any, fill: int) -> TensorSpec:
        type_name = model_config_pb2.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        dtype = np.dtype(triton_to_np_dtype("BYTES" if type_name == "STRING" else type_name))
        dims = tuple(int(d) if d > 0 else fill for d in tensor.dims)
        return TensorSpec(tensor.name, prefix + dims, dtype)

    return [spec(t, 1) for t in config.input], [spec(t, -1) for t in config.output]


def load_model_spec(folder: Path) -> ModelUnderTest:
    """Describe the model in ``folder``: latest version, its ONNX file if any, its tensors."""
    version = _latest_version(folder)
    if version is None:
        raise FileNotFoundError(f"{folder} has no version folder")
    onnx_path = version / "model.onnx"
    if onnx_path.is_file():
        inputs, outputs = _specs_from_onnx(onnx_path)
        return ModelUnderTest(folder.name, folder, version.name, onnx_path, inputs, outputs)
    inputs, outputs = _specs_from_config(folder / "config.pbtxt")
    model = ModelUnderTest(folder.name, folder, version.name, None, inputs, outputs)
    model.notes.append("no model.onnx: the raw onnxruntime baseline is skipped")
    return model


def resolve_model(name: str, repository: Path, cache: Path) -> tuple[Path | None, str]:
    """Return the folder of model ``name`` (generating resnet18 into the cache) and a note."""
    if name == make_resnet18.MODEL_NAME:
        repo = cache / "repo"
        folder = repo / make_resnet18.MODEL_NAME
        if not (folder / "config.pbtxt").is_file() or not (folder / "1" / "model.onnx").is_file():
            print(f"generating {folder} (random-weight ResNet-18) ...", flush=True)
            make_resnet18.write_repository(repo)
        return folder, ""
    folder = repository / name
    if not (folder / "config.pbtxt").is_file():
        return None, f"{folder} not found (for digits: run `fleetserve train` first)"
    if _latest_version(folder) is None:
        return None, f"{folder} has no version folder"
    return folder, ""


def drop_latency_slo(config: Path) -> None:
    """Remove the `latency_slo_ms` parameter from a config.pbtxt, in place.

    For runs that share the cores with their clients and sidecars and test something other
    than the SLO: with it, requests that waited too long for a core are refused by design.
    """
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if "latency_slo_ms" not in line))


def make_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Return one random array per input, in its batch-1 shape and dtype."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.dtype.kind == "f":
            arrays[spec.name] = rng.random(spec.shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, spec.shape).astype(np.bool_)
        elif spec.dtype.kind in "iu":
            arrays[spec.name] = rng.integers(0, 2, spec.shape).astype(spec.dtype)
        else:
            arrays[spec.name] = np.full(spec.shape, b"x", dtype=np.object_)
    return arrays


def shape_matches(shape: Sequence[int], expected: Sequence[int]) -> bool:
    """Return whether ``shape`` matches ``expected``, where -1 in ``expected`` matches any size."""
    return len(shape) == len(expected) and all(e < 0 or s == e for s, e in zip(shape, expected, strict=True))


# --------------------------------------------------------------------------------------------
# Affinity and process CPU


def bench_cores() -> tuple[int, int]:
    """(server core, client core): the first two cores this process may run on (the same one
    twice on a single core)."""
    cores = sorted(os.sched_getaffinity(0))
    return cores[0], cores[1] if len(cores) >= 2 else cores[0]


@contextlib.contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """Pin this process (and the threads and children it starts meanwhile) to ``cores``."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def process_cpu_seconds() -> float:
    """Return the user + system CPU time of this process, all threads, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# Raw onnxruntime baseline


def measure_raw(model: ModelUnderTest, duration: float, warmup: float, core: int) -> dict[str, Any]:
    """Measure batch-1 closed-loop inference in this process with onnxruntime on ``core``."""
    import onnxruntime as ort

    assert model.onnx_path is not None
    with pinned({core}):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model.onnx_path), options, providers=["CPUExecutionProvider"])
        feeds = make_inputs(model.inputs)
        names = [o.name for o in model.outputs]
        first = session.run(names, feeds)
        for spec, value in zip(model.outputs, first, strict=True):
            if not shape_matches(value.shape, spec.shape):
                raise RuntimeError(f"raw {model.name}: output {spec.name} {value.shape} != {spec.shape}")
        # Served answers are checked against what the model really returns at batch 1.
        model.outputs = [
            TensorSpec(s.name, tuple(v.shape), s.dtype) for s, v in zip(model.outputs, first, strict=True)
        ]
        deadline = time.perf_counter() + warmup
        for _ in range(MAX_RAW_RUNS):
            if time.perf_counter() >= deadline:
                break
            session.run(names, feeds)
        latencies: list[float] = []
        cpu0 = process_cpu_seconds()
        t0 = time.perf_counter()
        end = t0 + duration
        last = t0
        for _ in range(MAX_RAW_RUNS):
            start = time.perf_counter()
            if start >= end:
                break
            session.run(names, feeds)
            last = time.perf_counter()
            latencies.append(last - start)
        cpu1 = process_cpu_seconds()
    point = summarize(latencies, 0, last - t0, cpu1 - cpu0)
    return {"core": core, "batch": 1, "intra_op_threads": 1, **point.as_dict()}


# --------------------------------------------------------------------------------------------
# The served model


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1, found by binding port 0."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def server_available() -> bool:
    """Return whether ``fleetserve.cli`` (the ``fleetserve serve`` command) is importable."""
    try:
        return importlib.util.find_spec("fleetserve.cli") is not None
    except ImportError:
        return False


class ServerProcess:
    """A server subprocess pinned to one core: started, waited for, stopped by its pid.

    The child inherits this process's affinity, set to ``core`` for the moment of the start,
    and ``FLEETSERVE_INTRA_OP_THREADS=1`` / ``OMP_NUM_THREADS=1``. Subclasses say what to run
    (``command``) and how to tell that it is ready (``probes``).
    """

    what = "server"

    def __init__(self, core: int, log_path: Path) -> None:
        self.core = core
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.affinity: list[int] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds of the server process (all threads), from /proc."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def probes(self) -> list[tuple[str, Any]]:
        """Return ``(description, check)`` pairs; ready when every ``check()`` returned True."""
        raise NotImplementedError

    def launch(self) -> None:
        """Start the command pinned to ``self.core`` and wait until every probe passes."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({"FLEETSERVE_INTRA_OP_THREADS": "1", "OMP_NUM_THREADS": "1"})
        # the server's prediction log goes beside its log, not into the project's .data/
        env.setdefault("FLEETSERVE_DATA_DIR", str(self.log_path.parent / f"data-{self.log_path.stem}"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        with self.log_path.open("wb") as log, pinned({self.core}):
            # The child inherits this process's affinity: the server runs on self.core only.
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(PROJECT_ROOT),
                start_new_session=True,
            )
        self._wait_ready()
        with contextlib.suppress(OSError):
            self.affinity = sorted(os.sched_getaffinity(self.process.pid))

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = self.probes()
        while pending and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.what} exited with {self.process.returncode} before ready:\n{self.log_tail()}"
                )
            try:
                if pending[0][1]():
                    pending.pop(0)
                    continue
            except Exception:  # not up yet: connection refused, unavailable, timeout
                pass
            time.sleep(0.25)
        if pending:
            raise RuntimeError(
                f"{pending[0][0]} not ready within {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> int | None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after 10 s); return its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        return bool(response.status == 200)


class ServedModel(ServerProcess):
    """``fleetserve serve`` on a temporary repository holding one model, pinned to one core."""

    what = "fleetserve serve"

    def __init__(self, model: ModelUnderTest, core: int, cache: Path) -> None:
        super().__init__(core, cache / f"server-{model.name}.log")
        self.model = model
        self.cache = cache
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.repo: Path | None = None

    @property
    def urls(self) -> dict[str, str]:
        """Return the ``host:port`` of each protocol, as tritonclient wants them."""
        return {"grpc": f"127.0.0.1:{self.grpc_port}", "rest": f"127.0.0.1:{self.http_port}"}

    def command(self) -> list[str]:
        assert self.repo is not None
        return [
            sys.executable,
            "-m",
            "fleetserve.cli",
            "serve",
            "--model-repository",
            str(self.repo),
            "--host",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--model-control-mode",
            "none",
        ]

    def probes(self) -> list[tuple[str, Any]]:
        urls = [
            f"http://127.0.0.1:{self.http_port}/v2/health/ready",
            f"http://127.0.0.1:{self.http_port}/v2/models/{self.model.name}/ready",
        ]
        return [(url, functools.partial(_http_ok, url)) for url in urls]

    def start(self) -> None:
        """Copy the model into a temporary repository, start the server and wait until ready."""
        self.cache.mkdir(parents=True, exist_ok=True)
        self.repo = Path(tempfile.mkdtemp(prefix=f"serve-{self.model.name}-", dir=self.cache))
        shutil.copytree(self.model.folder, self.repo / self.model.name)
        self.launch()

    def stop(self) -> int | None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after 10 s); remove the repository."""
        try:
            return super().stop()
        finally:
            if self.repo is not None:
                shutil.rmtree(self.repo, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Peer baselines: the bare servers of loadtests/peers.py

# Which peer answers which protocol of the sweep.
PEER_PROTOCOLS: dict[str, str] = {"bare-grpc": "grpc", "bare-rest": "rest"}
# Peers do no compute: for a model whose compute dominates they only measure transport, so by
# default they run for these models only (--peers-all: for every model).
DEFAULT_PEER_MODELS = frozenset({"digits"})


def peer_outputs(outputs: Sequence[TensorSpec]) -> list[str]:
    """Return the ``--output NAME:DATATYPE:DIMS`` texts of a batching model's outputs."""
    from tritonclient.utils import np_to_triton_dtype

    from loadtests.peers import OutputSpec, format_output

    texts = []
    for spec in outputs:
        dims = tuple(spec.shape[1:])
        if any(d < 1 for d in dims):
            raise ValueError(f"output {spec.name} has a variable dim {spec.shape}: a peer cannot answer it")
        texts.append(format_output(OutputSpec(spec.name, np_to_triton_dtype(spec.dtype), dims)))
    return texts


def peers_to_run(
    model: str, protocols: Sequence[str], no_peers: bool = False, peers_all: bool = False
) -> list[str]:
    """Return the peer kinds to measure for ``model``, in sweep order of their protocols."""
    if no_peers or (not peers_all and model not in DEFAULT_PEER_MODELS):
        return []
    return [kind for protocol in protocols for kind, p in PEER_PROTOCOLS.items() if p == protocol]


def _grpc_ready(url: str, model: str) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    try:
        return bool(
            client.is_server_ready(client_timeout=2.0) and client.is_model_ready(model, client_timeout=2.0)
        )
    finally:
        client.close()


class PeerServer(ServerProcess):
    """One bare peer (``python -m loadtests.peers``) for one model, pinned to one core."""

    def __init__(self, kind: str, model: ModelUnderTest, core: int, cache: Path) -> None:
        super().__init__(core, cache / f"peer-{kind}-{model.name}.log")
        self.kind = kind
        self.what = kind
        self.model = model
        self.protocol = PEER_PROTOCOLS[kind]
        (self.port,) = free_ports(1)
        self.url = f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "loadtests.peers", "--kind", self.kind, "--port", str(self.port)]
        command += ["--host", "127.0.0.1", "--model", self.model.name]
        for text in peer_outputs(self.model.outputs):
            command += ["--output", text]
        return command

    def probes(self) -> list[tuple[str, Any]]:
        if self.protocol == "grpc":
            return [
                (
                    f"{self.kind} ServerReady/ModelReady",
                    functools.partial(_grpc_ready, self.url, self.model.name),
                )
            ]
        urls = [f"http://{self.url}/v2/health/ready", f"http://{self.url}/v2/models/{self.model.name}/ready"]
        return [(url, functools.partial(_http_ok, url)) for url in urls]

    def start(self) -> None:
        """Start the peer and wait until ready."""
        self.launch()


# --------------------------------------------------------------------------------------------
# Closed-loop tritonclient aio clients


def _make_client(protocol: str, url: str, concurrency: int) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc.aio as grpcclient

        return grpcclient.InferenceServerClient(url=url)
    if protocol == "rest":
        import tritonclient.http.aio as httpclient

        return httpclient.InferenceServerClient(
            url=url, conn_limit=max(1, concurrency), conn_timeout=REQUEST_TIMEOUT_S
        )
    raise ValueError(f"unknown protocol {protocol!r} (grpc or rest)")


def _make_request(protocol: str, model: ModelUnderTest) -> tuple[list[Any], list[Any]]:
    """Build the tritonclient inputs (binary tensors) and requested outputs of one request."""
    from tritonclient.utils import np_to_triton_dtype

    arrays = make_inputs(model.inputs)
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        inputs = []
        for name, array in arrays.items():
            item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs, [grpcclient.InferRequestedOutput(o.name) for o in model.outputs]
    import tritonclient.http as httpclient

    inputs = []
    for name, array in arrays.items():
        item = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array, binary_data=True)
        inputs.append(item)
    return inputs, [httpclient.InferRequestedOutput(o.name, binary_data=True) for o in model.outputs]


def check_answer(result: Any, outputs: Sequence[TensorSpec]) -> str | None:
    """Return why ``result`` is not a valid answer (missing output, wrong shape), or ``None``."""
    for spec in outputs:
        value = result.as_numpy(spec.name)
        if value is None:
            return f"output {spec.name} missing"
        if not shape_matches(value.shape, spec.shape):
            return f"output {spec.name} has shape {tuple(value.shape)}, expected {spec.shape}"
    return None


async def run_point(
    protocol: str, url: str, model: ModelUnderTest, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """Run ``concurrency`` closed-loop clients for ``warmup + duration``; summarize the window.

    A request counts in the point when it completes inside the measurement window (after the
    warm-up); req/s counts valid answers only, and a failed call or an answer of the wrong
    shape is an error.
    """
    client = _make_client(protocol, url, concurrency)
    starts: list[float] = []
    ends: list[float] = []
    oks: list[bool] = []
    first_error: list[str] = []
    window: dict[str, float] = {}
    try:
        inputs, outputs = _make_request(protocol, model)
        t_begin = time.perf_counter()
        measure_start = t_begin + warmup
        measure_stop = measure_start + duration

        async def worker() -> None:
            for _ in range(MAX_REQUESTS_PER_WORKER):
                start = time.perf_counter()
                if start >= measure_stop:
                    return
                error: str | None
                try:
                    result = await asyncio.wait_for(
                        client.infer(model.name, inputs, outputs=outputs), timeout=REQUEST_TIMEOUT_S
                    )
                    error = check_answer(result, model.outputs)
                except Exception as exc:  # any failed call is an error, never an answer
                    error = f"{type(exc).__name__}: {exc}"
                ends.append(time.perf_counter())
                starts.append(start)
                oks.append(error is None)
                if error is not None and not first_error:
                    first_error.append(error[:300])

        async def sampler() -> None:
            await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
            window["cpu0"], window["t0"] = process_cpu_seconds(), time.perf_counter()
            await asyncio.sleep(max(0.0, measure_stop - time.perf_counter()))
            window["cpu1"], window["t1"] = process_cpu_seconds(), time.perf_counter()

        await asyncio.gather(sampler(), *(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    inside = in_window(ends, window["t0"], window["t1"])
    latencies = [ends[i] - starts[i] for i in inside if oks[i]]
    errors = sum(1 for i in inside if not oks[i])
    point = summarize(latencies, errors, window["t1"] - window["t0"], window["cpu1"] - window["cpu0"])
    return {
        "protocol": protocol,
        "concurrency": concurrency,
        **point.as_dict(),
        "errors_total": sum(1 for ok in oks if not ok),
        "first_error": first_error[0] if first_error else None,
    }


async def run_sweep(
    urls: dict[str, str],
    model: ModelUnderTest,
    protocols: Sequence[str],
    concurrencies: Sequence[int],
    duration: float,
    warmup: float,
    label: str = "",
) -> list[dict[str, Any]]:
    """Run every (protocol, concurrency) point one after the other."""
    points = []
    for protocol in protocols:
        for concurrency in concurrencies:
            point = await run_point(protocol, urls[protocol], model, concurrency, duration, warmup)
            print(
                f"  {label or model.name} {protocol:>4} c={concurrency:<3} {point['req_per_s']:9.1f} req/s"
                f"  errors {point['errors']}",
                flush=True,
            )
            points.append(point)
    return points


# --------------------------------------------------------------------------------------------
# Report


def compare_with_peers(served: Sequence[dict[str, Any]], peers: dict[str, Any]) -> None:
    """Add ``vs_peer`` to each served point that a peer measured at the same protocol and N.

    ``vs_peer`` holds the peer's kind, req/s and p50, and the ratios fleetserve / peer of req/s
    (under 1: fleetserve answers fewer) and of p50 (over 1: fleetserve answers later).
    """
    by_key = {
        (point["protocol"], point["concurrency"]): (kind, point)
        for kind, peer in peers.items()
        for point in peer.get("points") or []
    }
    for point in served:
        match = by_key.get((point["protocol"], point["concurrency"]))
        if match is None:
            continue
        kind, peer_point = match
        point["vs_peer"] = {
            "kind": kind,
            "req_per_s": peer_point["req_per_s"],
            "p50_ms": peer_point["p50_ms"],
            "req_per_s_ratio": ratio(point["req_per_s"], peer_point["req_per_s"]),
            "p50_ratio": None if point["p50_ms"] is None else ratio(point["p50_ms"], peer_point["p50_ms"]),
        }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_ms(value: float | None) -> str:
    """Milliseconds with 2 decimals, 3 under 1 ms (a tiny model's raw latency)."""
    return _fmt(value, 3 if value is not None and value < 1.0 else 2)


def format_table(name: str, result: dict[str, Any]) -> str:
    """Return the printed table of one model's result (raw line, then one row per point)."""
    lines = [f"== {name} =="]
    if result.get("skipped"):
        lines.append(f"skipped: {result['skipped']}")
        return "\n".join(lines)
    raw = result.get("raw")
    raw_rate = raw["req_per_s"] if raw else None
    if raw:
        lines.append(
            f"raw onnxruntime, in process, batch 1, 1 thread, core {raw['core']}: "
            f"{raw['req_per_s']:.1f} req/s, p50 {_fmt_ms(raw['p50_ms'])} ms, "
            f"p99 {_fmt_ms(raw['p99_ms'])} ms ({raw['requests']} runs in {raw['seconds']:.1f} s)"
        )
    else:
        lines.append(f"raw onnxruntime: {result.get('raw_skipped', 'not measured')}")
    served = result.get("served")
    if served is None:
        lines.append(f"served: {result.get('served_skipped', 'not measured')}")
        return "\n".join(lines)
    server = result.get("server", {})
    lines.append(
        f"served by fleetserve serve on core(s) {server.get('affinity')},"
        f" client on core {result.get('client_core')}"
    )
    peers = result.get("peers") or {}
    with_peers = any("vs_peer" in point for point in served)
    if peers:
        described = ", ".join(
            f"{kind} ({PEER_PROTOCOLS[kind]} rows) on core(s) {peer.get('affinity')}"
            + ("" if peer.get("points") else f": {peer.get('skipped', 'not measured')}")
            for kind, peer in peers.items()
        )
        lines.append(f"peers (canned zeros, no compute, same client): {described}")
    elif result.get("peers_skipped"):
        lines.append(f"peers: {result['peers_skipped']}")
    header = ["protocol", "concurrency", "req/s", "p50 ms", "p99 ms", "errors", "client CPU %", "served/raw"]
    if with_peers:
        header += ["peer req/s", "peer p50 ms", "fs/peer req/s", "fs/peer p50"]
    rows = [header]
    for point in served:
        row = [
            point["protocol"],
            str(point["concurrency"]),
            _fmt(point["req_per_s"]),
            _fmt_ms(point["p50_ms"]),
            _fmt_ms(point["p99_ms"]),
            str(point["errors"]),
            _fmt(point["cpu_percent"]),
            _fmt(ratio(point["req_per_s"], raw_rate), 2),
        ]
        if with_peers:
            vs = point.get("vs_peer")
            row += (
                [
                    _fmt(vs["req_per_s"]),
                    _fmt_ms(vs["p50_ms"]),
                    _fmt(vs["req_per_s_ratio"], 2),
                    _fmt(vs["p50_ratio"], 2),
                ]
                if vs
                else ["-"] * 4
            )
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    for point in served:
        if point.get("first_error"):
            lines.append(
                f"first error ({point['protocol']} c={point['concurrency']}): {point['first_error']}"
            )
    for kind, peer in peers.items():
        for point in peer.get("points") or []:
            if point.get("first_error"):
                where = f"{kind} {point['protocol']} c={point['concurrency']}"
                lines.append(f"first error ({where}): {point['first_error']}")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("onnxruntime", "tritonclient", "grpcio", "numpy", "fleetserve"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,resnet18", help="comma-separated model names")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each point")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated concurrencies")
    parser.add_argument("--protocols", default="grpc,rest", help="comma-separated: grpc, rest")
    parser.add_argument("--json", type=Path, default=None, help="write every result as JSON here")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="where models other than resnet18 are",
    )
    parser.add_argument(
        "--cache", type=Path, default=CACHE_DIR, help="cache folder (generated resnet18, logs)"
    )
    parser.add_argument("--raw-only", action="store_true", help="measure the raw baseline only")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the peer baselines (bare-grpc, bare-rest)"
    )
    parser.add_argument(
        "--peers-all",
        action="store_true",
        help=f"measure the peers for every model, not only {', '.join(sorted(DEFAULT_PEER_MODELS))}",
    )
    args = parser.parse_args(argv)
    args.models = _csv(args.models)
    args.protocols = _csv(args.protocols)
    try:
        args.concurrency = [int(c) for c in _csv(args.concurrency)]
    except ValueError:
        parser.error("--concurrency takes comma-separated integers")
    if any(c < 1 or c > 1024 for c in args.concurrency):
        parser.error("each concurrency must be within 1..1024")
    if not set(args.protocols) <= {"grpc", "rest"}:
        parser.error("--protocols takes grpc and/or rest")
    if not 0.0 < args.duration <= MAX_DURATION_S or not 0.0 <= args.warmup <= MAX_DURATION_S:
        parser.error(f"--duration must be within (0, {MAX_DURATION_S:.0f}] and --warmup within [0, ...]")
    return args


def bench_model(
    name: str, args: argparse.Namespace, server_core: int, client_core: int
) -> tuple[dict[str, Any], bool]:
    """Run the raw baseline and the served sweep of one model; return its result and success."""
    result: dict[str, Any] = {"server_core": server_core, "client_core": client_core}
    folder, note = resolve_model(name, args.model_repository, args.cache)
    if folder is None:
        print(f"{name}: skipped: {note}", flush=True)
        result["skipped"] = note
        return result, True
    model = load_model_spec(folder)
    result.update(
        {
            "version": model.version,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in model.inputs],
            "notes": model.notes,
        }
    )
    ok = True
    if model.onnx_path is not None:
        print(f"{name}: raw onnxruntime on core {server_core} for {args.duration:g} s ...", flush=True)
        result["raw"] = measure_raw(model, args.duration, args.warmup, server_core)
    else:
        result["raw_skipped"] = model.notes[-1]
    result["outputs"] = [{"name": s.name, "shape": list(s.shape)} for s in model.outputs]
    if args.raw_only:
        result["served_skipped"] = "--raw-only"
    elif not server_available():
        result["served_skipped"] = "fleetserve.cli is not importable: the server is not there yet"
        print(f"{name}: {result['served_skipped']}", flush=True)
        ok = False
    else:
        server = ServedModel(model, server_core, args.cache)
        try:
            print(f"{name}: starting fleetserve serve on core {server_core} ...", flush=True)
            server.start()
            result["server"] = {
                "affinity": server.affinity,
                "ports": {"http": server.http_port, "grpc": server.grpc_port, "metrics": server.metrics_port},
                "log": str(server.log_path),
            }
            with pinned({client_core}):
                result["served"] = asyncio.run(
                    run_sweep(
                        server.urls, model, args.protocols, args.concurrency, args.duration, args.warmup
                    )
                )
            ok = all(p["errors_total"] == 0 and p["requests"] > 0 for p in result["served"])
        except (RuntimeError, OSError) as exc:
            result["served_skipped"] = f"server failed: {exc}"
            print(f"{name}: {result['served_skipped']}", flush=True)
            ok = False
        finally:
            code = server.stop()
            result.setdefault("server", {})["exit_code"] = code
        if "served" in result:
            ok = bench_peers(model, args, server_core, client_core, result) and ok
    return result, ok


def bench_peers(
    model: ModelUnderTest,
    args: argparse.Namespace,
    server_core: int,
    client_core: int,
    result: dict[str, Any],
) -> bool:
    """Measure each peer of ``model`` like the server; store them in ``result``; return success."""
    kinds = peers_to_run(model.name, args.protocols, args.no_peers, args.peers_all)
    if not kinds:
        result["peers_skipped"] = (
            "--no-peers"
            if args.no_peers
            else f"not measured for {model.name} (no compute: transport only; --peers-all to measure)"
        )
        return True
    ok = True
    peers: dict[str, Any] = {}
    for kind in kinds:
        entry: dict[str, Any] = {}
        peers[kind] = entry
        try:
            peer = PeerServer(kind, model, server_core, args.cache)
        except ValueError as exc:
            entry["skipped"] = str(exc)
            print(f"{model.name}: {kind}: {exc}", flush=True)
            ok = False
            continue
        try:
            print(f"{model.name}: starting peer {kind} on core {server_core} ...", flush=True)
            peer.start()
            entry.update({"affinity": peer.affinity, "port": peer.port, "log": str(peer.log_path)})
            with pinned({client_core}):
                entry["points"] = asyncio.run(
                    run_sweep(
                        {peer.protocol: peer.url},
                        model,
                        [peer.protocol],
                        args.concurrency,
                        args.duration,
                        args.warmup,
                        label=f"{model.name} {kind}",
                    )
                )
            ok = ok and all(p["errors_total"] == 0 and p["requests"] > 0 for p in entry["points"])
        except (RuntimeError, OSError) as exc:
            entry["skipped"] = f"peer failed: {exc}"
            print(f"{model.name}: {kind}: {entry['skipped']}", flush=True)
            ok = False
        finally:
            entry["exit_code"] = peer.stop()
    result["peers"] = peers
    compare_with_peers(result["served"], peers)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0 when every requested measurement ran without an error."""
    args = parse_args(argv)
    server_core, client_core = bench_cores()
    if server_core == client_core:
        print("warning: one core only: the client shares the server's core", flush=True)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cores": sorted(os.sched_getaffinity(0)),
            "platform": platform.platform(),
        },
        "versions": _versions(),
        "settings": {
            "models": args.models,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "protocols": args.protocols,
            "peers": "none" if args.no_peers else ("all" if args.peers_all else sorted(DEFAULT_PEER_MODELS)),
        },
        "models": {},
    }
    all_ok = True
    for name in args.models:
        result, ok = bench_model(name, args, server_core, client_core)
        report["models"][name] = result
        all_ok = all_ok and ok
    print()
    for name, result in report["models"].items():
        print(format_table(name, result))
        print()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
