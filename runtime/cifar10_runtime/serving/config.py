"""`ServeConfig`: every setting of `cifar-serve`, one frozen dataclass.

Each field is the flag `--field-name` (cli/serve.py builds the flags from the fields, with
their defaults from here), `create_app` takes the config whole, and `cifar-serve --workers N`
hands it whole, as JSON, to every worker process. The numeric defaults shared with the
batcher and the connection guards have their one home in limits.py (the model's name in
contract.py), which says why each is what it is; the fields read them. Nothing heavy is
imported, so `cifar-serve --help` stays quick.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cifar10_runtime import limits
from cifar10_runtime.contract import ENGINES, MODEL_NAME, PRECISIONS
from cifar10_runtime.engines.cpu import usable_cpus
from cifar10_runtime.errors import ConfigError

if TYPE_CHECKING:
    from cifar10_runtime.engines.batch_sizes import BatchTuning

HTTP_PARSERS = ("auto", "httptools", "h11")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# The values a text setting may take (the flags' click.Choice is built from these).
CHOICES: dict[str, tuple[str, ...]] = {
    "http": HTTP_PARSERS,
    "engine": ("auto", *ENGINES),
    "precision": ("auto", *PRECISIONS),
    "log_level": LOG_LEVELS,
}
# The range of each numeric setting: (lowest, highest or None, whether the lowest itself is
# excluded). The flags' click ranges are built from these, and configs built in code are
# checked against them too.
RANGES: dict[str, tuple[float, float | None, bool]] = {
    "port": (0, 65535, False),
    "max_batch_size": (0, None, False),  # 0: measured at start
    "max_delay_ms": (0, None, False),
    "inline_ms": (0, None, False),
    "max_body_mb": (0, None, True),
    "max_queue": (1, None, False),
    "max_pixels": (1024, None, False),  # 32x32: the model's own input
    "max_request_pixels": (1024, None, False),
    "limit_concurrency": (1, None, False),
    "header_timeout": (0, None, True),
    "body_timeout": (0, None, True),
    "timeout_keep_alive": (0, None, True),
    "grpc_port": (0, 65535, False),
    "workers": (1, None, False),
    "threads": (1, None, False),
}


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one `cifar-serve` (defaults are the CLI defaults). MODEL is not one of
    them: create_app takes it (a loaded Predictor or a path) beside the config."""

    # Loopback: the server is reachable from other machines only when asked (0.0.0.0).
    host: str = "127.0.0.1"
    port: int = 8000  # the usual development port of Python web servers; 0: any free port
    # 0: measured at start on this machine's engine, at most limits.MAX_BATCH_SIZE (where a
    # bigger run stops serving more images/s depends on the CPU: engines/batch_sizes.py).
    max_batch_size: int = 0
    max_delay_ms: float = limits.MAX_DELAY_MS
    # Off: requests that arrive while the model is busy share its next run (more images/s).
    no_batching: bool = False
    # None: limits.INLINE_HAND_OFFS hand-offs to the worker thread, timed at start (batcher.py).
    inline_ms: float | None = None
    max_body_mb: float = limits.MAX_BODY_MB
    max_queue: int = limits.MAX_QUEUE
    max_pixels: int = limits.MAX_PIXELS
    max_request_pixels: int = limits.MAX_REQUEST_PIXELS
    model_name: str = MODEL_NAME  # the exporter's Triton repository uses the same name
    limit_concurrency: int = limits.LIMIT_CONCURRENCY
    http: str = limits.HTTP
    header_timeout: float = limits.HEADER_TIMEOUT
    body_timeout: float = limits.BODY_TIMEOUT
    timeout_keep_alive: float = limits.KEEP_ALIVE_TIMEOUT
    # Off: gRPC needs grpcio and Triton's stubs, and a second port the caller must choose.
    grpc_port: int | None = None
    no_ui: bool = False  # the try-it page is served: the quickest check a person can make
    # One process: its batcher sees every request, so batches fill best; more workers help
    # only when request handling, not the model, is the bottleneck.
    workers: int = 1
    # None: onnxruntime's default (every core) for one worker; resolved() splits the cores
    # among several, since N workers each running on every core would fight over them.
    threads: int | None = None
    providers: str = "auto"  # CUDA when onnxruntime has it, else the CPU
    engine: str = "auto"  # chosen by measurement at load (engines/)
    precision: str = "auto"  # the fastest the export allows that passes its golden check
    log_level: str = "info"  # uvicorn's default: start, stop, and errors
    access_log: bool = True  # one line per request, uvicorn's default
    verbose: bool = False  # errors as one line; tracebacks only when asked

    def __post_init__(self) -> None:
        for name, (low, high, open_low) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not _in_range(value, low, high, open_low):
                raise ConfigError(_range_message(name, value, low, high, open_low))
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)} (--{_flag(name)}). "
                    f"Received: {getattr(self, name)!r}."
                )
        if not self.model_name or "/" in self.model_name:
            raise ConfigError(
                f"model_name must be a non-empty name without '/'. Received: {self.model_name!r}."
            )

    def resolved(self) -> ServeConfig:
        """What a server runs: no_batching applied (one image per run, no wait) and, with
        several workers and no thread count, the usable cores split among them. Resolving a
        resolved config changes nothing."""
        changes: dict[str, Any] = {}
        if self.no_batching:
            changes.update(max_batch_size=1, max_delay_ms=0.0)
        if self.threads is None and self.workers > 1:
            changes["threads"] = max(1, usable_cpus() // self.workers)
        return dataclasses.replace(self, **changes) if changes else self

    def with_batch_size(self, predictor: Any) -> tuple[ServeConfig, BatchTuning]:
        """The config with max_batch_size measured on `predictor` (a Predictor) when it is 0,
        and the record of that choice; a size given stays as given."""
        from cifar10_runtime.engines.batch_sizes import BatchTuning

        if self.max_batch_size:
            return self, BatchTuning(self.max_batch_size)
        tuning = predictor.tune_batch_size(limits.MAX_BATCH_SIZE)
        return dataclasses.replace(self, max_batch_size=tuning.size), tuning

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """One line of JSON: logged at start, and how workers receive the config."""
        return json.dumps(self.to_dict(), separators=(", ", ": "))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"a ServeConfig is a JSON object of its fields. Received: {text!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown serve setting(s) {unknown}; use ServeConfig's fields "
                f"({', '.join(sorted(known))}). Received: {text!r}"
            )
        return cls(**data)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _in_range(value: float, low: float, high: float | None, open_low: bool) -> bool:
    above = value > low if open_low else value >= low
    return above and (high is None or value <= high)


def _range_message(name: str, value: Any, low: float, high: float | None, open_low: bool) -> str:
    if high is not None:
        need = f"between {low} and {high}"
    elif open_low:
        need = f"more than {low}"
    elif name in ("max_pixels", "max_request_pixels"):
        need = f"at least {low} (32x32)"
    else:
        need = f"at least {low}"
    return f"{name} must be {need} (--{_flag(name)}). Received: {value!r}."
