"""The engines a model can run on: onnxruntime's CPU EP and OpenVINO, each at a precision.

A `Runner` is one ready engine: `run(x)` maps uint8 [N,32,32,3] to float32 [N,10]. OpenVINO
(the optional extra, `pip install "cifar10-runtime[openvino]"`) is reached through
onnxruntime's OpenVINO plugin EP (`onnxruntime-ep-openvino`) where that plugin offers a CPU
device, which it does for Intel CPUs only (its factory skips other vendors' devices); on
other CPUs (AMD) through the `openvino` package's own API, which compiles the same ONNX file
with the same CPU plugin. Every candidate gets its precision hint explicitly (OpenVINO's CPU
default is already bf16 on bf16-capable CPUs) and its thread count, so two engines in one
process never ask for more threads than the caller gave.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import onnxruntime as ort

from cifar10_runtime.engines.cpu import cpu_features, usable_cpus
from cifar10_runtime.engines.sessions import cpu_session, session_options
from cifar10_runtime.errors import ConfigError, ModelError, first_line
from cifar10_runtime.versions import installed_version

EXTRA_HINT = 'pip install "cifar10-runtime[openvino]"'
# OpenVINO's names for the precisions (INFERENCE_PRECISION_HINT); int8 is the twin's own
# quantized graph, its float parts kept in f32 so its tolerance means what it says.
OV_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
PLUGIN_REGISTRATION = "cifar10_openvino"
INTEL_VENDOR_ID = 0x8086
_register_lock = threading.Lock()


@dataclass
class Runner:
    """One engine ready to run: name "engine/precision", its backend and the call."""

    engine: str
    precision: str
    backend: str
    run: Callable[[np.ndarray], np.ndarray]
    providers: tuple[str, ...] = ()
    session: Any = None  # the onnxruntime session, when the engine is one
    source: Any = None  # the model (path or bytes) the runner was made from
    spinning: bool = True  # onnxruntime: workers spin on after a run (its default) or stop
    # Compiles kernels for each new input shape on its first call (OpenVINO): a server warms
    # every batch size it can form before it reports ready (engines.warmup).
    per_shape: bool = False

    @property
    def name(self) -> str:
        return f"{self.engine}/{self.precision}"


def ort_runner(
    session: ort.InferenceSession,
    precision: str,
    input_name: str,
    output_name: str,
    source: Any = None,
    spinning: bool = True,
) -> Runner:
    run, outputs = session.run, [output_name]
    return Runner(
        "onnxruntime",
        precision,
        f"onnxruntime {ort.__version__}",
        lambda x: run(outputs, {input_name: x})[0],
        tuple(session.get_providers()),
        session,
        source,
        spinning,
    )


def ort_file_runner(
    model: Any,
    precision: str,
    threads: int | None,
    input_name: str,
    output_name: str,
    spinning: bool = True,
) -> Runner:
    """onnxruntime's CPU EP on `model` (a path or bytes: the int8 twin, or float32)."""
    try:
        session = cpu_session(model, threads, spinning=spinning)
    except Exception as exc:  # onnxruntime's own exception classes
        where = model if isinstance(model, str | os.PathLike) else "<in-memory model>"
        raise ModelError(f"cannot load {where} in onnxruntime: {first_line(exc)}") from exc
    return ort_runner(session, precision, input_name, output_name, model, spinning)


@lru_cache(maxsize=1)
def _plugin_devices() -> tuple[tuple[Any, ...], str]:
    """The plugin EP's OrtEpDevices for the CPU, registered once per process; or why none."""
    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError:
        return (), "onnxruntime-ep-openvino is not installed"
    name = plugin.get_ep_name()
    # The plugin's factory offers only Intel devices (vendor id 0x8086): on another CPU,
    # loading it would only put a second copy of OpenVINO into the process.
    cpus = [d.device for d in ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider"]
    if cpus and all(d.vendor_id != INTEL_VENDOR_ID for d in cpus):
        return (), f"the OpenVINO plugin EP serves Intel CPUs only, this is {cpus[0].vendor} CPU"
    with _register_lock:
        if not any(d.ep_name == name for d in ort.get_ep_devices()):
            try:
                ort.register_execution_provider_library(
                    PLUGIN_REGISTRATION, plugin.get_library_path()
                )
            except Exception as exc:  # a plugin built for another onnxruntime
                return (), f"onnxruntime cannot load the OpenVINO plugin EP: {first_line(exc)}"
    devices = tuple(
        d
        for d in ort.get_ep_devices()
        if d.ep_name == name and d.device.type == ort.OrtHardwareDeviceType.CPU
    )
    if not devices:
        cpu = cpu_features()["cpu"]
        return (), f"the OpenVINO plugin EP offers no device for this CPU ({cpu}; it serves Intel)"
    return devices, ""


@lru_cache(maxsize=1)
def _openvino_core() -> tuple[Any, str]:
    try:
        import openvino
    except ImportError:
        return None, "the openvino package is not installed"
    try:
        core = openvino.Core()
        # Loads the CPU plugin only (available_devices would load the GPU and NPU ones too).
        core.get_property("CPU", "FULL_DEVICE_NAME")
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        return None, f"OpenVINO does not start: {first_line(exc)}"
    return core, ""


def openvino_backend() -> tuple[str | None, str]:
    """("plugin" | "api", "") for the OpenVINO backend usable here, else (None, what is missing
    and how to get it). The plugin EP is preferred: onnxruntime stays the one API."""
    devices, plugin_why = _plugin_devices()
    if devices:
        return "plugin", ""
    core, api_why = _openvino_core()
    if core is not None:
        return "api", ""
    return None, f"{plugin_why}, and {api_why}. Install the extra: {EXTRA_HINT}"


def bf16_missing() -> str:
    """Why this CPU cannot run bf16 (empty when it can)."""
    cpu = cpu_features()
    if cpu["bf16"]:
        return ""
    return (
        f"this CPU has no bf16 instructions (avx512_bf16 or amx_bf16): {cpu['cpu']}, "
        + cpu["summary"]
    )


def openvino_runner(model: str | bytes, precision: str, threads: int | None) -> Runner:
    """The model compiled by OpenVINO's CPU plugin with an explicit precision hint."""
    backend, why = openvino_backend()
    if backend is None:
        raise ConfigError(f"engine openvino is not available here: {why}.")
    model = bytes(model) if isinstance(model, bytes | bytearray | memoryview) else str(model)
    n = threads or usable_cpus()
    config = {
        "INFERENCE_PRECISION_HINT": OV_HINTS[precision],
        "INFERENCE_NUM_THREADS": str(n),
        # One stream, every thread on the one request in flight: the micro-batcher runs one
        # batch at a time, so throughput mode's extra streams would only split the cores.
        "PERFORMANCE_HINT": "LATENCY",
    }
    if backend == "plugin":
        return _plugin_runner(model, precision, n, config)
    return _api_runner(model, precision, config)


def _plugin_runner(model, precision: str, threads: int, config: dict[str, str]) -> Runner:
    devices, _ = _plugin_devices()
    # onnxruntime's own pool only runs nodes OpenVINO leaves to it: it stops spinning when a
    # run returns, so it never holds the cores OpenVINO's threads are working on.
    options = session_options(threads, spinning=False)
    options.add_provider_for_devices(list(devices), {"load_config": json.dumps({"CPU": config})})
    try:
        session = ort.InferenceSession(model, sess_options=options)
    except Exception as exc:
        raise ModelError(
            f"OpenVINO (plugin EP) cannot compile the model: {first_line(exc)}"
        ) from exc
    if "OpenVINOExecutionProvider" not in session.get_providers():
        raise ModelError(
            "the OpenVINO plugin EP was attached but onnxruntime did not activate it. "
            f"Received: providers={session.get_providers()}"
        )
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    runner = ort_runner(session, precision, inp, out, model, spinning=False)
    runner.engine = "openvino"
    runner.backend = f"onnxruntime-ep-openvino {installed_version('onnxruntime-ep-openvino')}"
    runner.per_shape = True
    return runner


def _api_runner(model, precision: str, config: dict[str, str]) -> Runner:
    core, _ = _openvino_core()
    try:
        compiled = core.compile_model(core.read_model(model), "CPU", config)
    except Exception as exc:
        raise ModelError(f"OpenVINO cannot compile the model: {first_line(exc)}") from exc
    local = threading.local()  # an infer request serves one thread at a time
    output = compiled.output(0)

    def run(x: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        return request.infer({0: x})[output]

    backend = f"openvino {installed_version('openvino')} (its own API)"
    return Runner("openvino", precision, backend, run, source=model, per_shape=True)
