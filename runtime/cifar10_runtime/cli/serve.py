"""`cifar-serve MODEL`: run the HTTP API (cifar10_runtime.serving.app) on uvicorn.

Every flag is a field of `ServeConfig` (serving/config.py): the options below are built from
its fields, defaults included, so a setting is written once. The model is loaded and checked
before the port is bound, so a bad model ends with one `error:` line instead of a server
that never becomes ready; the resolved config is then logged once, as one JSON line. With
--workers N, uvicorn starts N processes that each load the model (through `app_factory`,
which gets the model's path and the config whole from two environment variables);
onnxruntime threads are then split between them, and each worker's /readyz turns 200 only
once its own model is loaded.

HTTP runs on uvicorn with httptools on uvloop when they are installed (the serve extra
brings them), else h11 on asyncio (--http). Connections are guarded whichever parser runs
(connections.py, guards.py): a request head must arrive within --header-timeout, its body
within --body-timeout, idle keep-alive connections close after --timeout-keep-alive, and
--limit-concurrency caps connections and requests before new ones get a JSON 503. On
SIGTERM/SIGINT every process first drains (serving/http/drain.py): new requests get a JSON
503 "shutting down" while the listener stays open, then uvicorn shuts down as usual.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable
from typing import Any

import click

from cifar10_runtime import limits
from cifar10_runtime.cli.engine_flags import engine_options
from cifar10_runtime.errors import ConfigError, cli_errors
from cifar10_runtime.serving.config import CHOICES, RANGES, ServeConfig

CONFIG_ENV = "CIFAR10_SERVE_CONFIG"  # ServeConfig.to_json(), for the worker processes
MODEL_ENV = "CIFAR10_SERVE_MODEL"  # the model's absolute path, for the worker processes
TUNING_ENV = "CIFAR10_SERVE_BATCH_TUNING"  # how max_batch_size was chosen (BatchTuning.to_dict)
# Seconds uvicorn waits for in-flight requests on SIGTERM/SIGINT before closing them.
GRACEFUL_SECONDS = 30
SERVE_EXTRA = "Install it with: pip install 'cifar10-runtime[serve]'"

# Each ServeConfig field's --help text. --engine and --precision come from engine_flags.py
# (shared with cifar-predict); every other field needs a line here.
HELP: dict[str, str] = {
    "host": "Interface to bind.",
    "port": "Port to listen on (0: any free port).",
    "max_batch_size": (
        "Most images in one session.run; 1 turns micro-batching off; 0 (default): the "
        "largest size that still raises images/s here, measured at start (at most "
        f"{limits.MAX_BATCH_SIZE})."
    ),
    "max_delay_ms": "Extra wait for a batch formed while the model was busy (a lone request "
    "never waits).",
    "no_batching": "Run every request on its own (same as --max-batch-size 1 --max-delay-ms 0).",
    "inline_ms": "A lone request (nothing else in flight) whose run is measured shorter than "
    "this runs on the event loop, not the worker thread; 0: never; default: "
    f"{limits.INLINE_HAND_OFFS} hand-offs to the worker thread and back, timed at start.",
    "max_body_mb": "Largest request body; bigger ones get 413.",
    "max_queue": "Requests waiting for inference before new ones get 503.",
    "max_pixels": "Largest image (width x height, after JPEG draft scaling); bigger ones get "
    "400 before decoding.",
    "max_request_pixels": "Decoded pixels of all the images of one request together; more get "
    "413 before decoding.",
    "model_name": "The model's name in the Open Inference Protocol (/v2/models/NAME).",
    "limit_concurrency": "Most open connections (and requests in progress) per worker before "
    "new requests get 503.",
    "http": "HTTP parser: auto is httptools (on uvloop) when installed, else h11 (on asyncio).",
    "header_timeout": "Seconds a connection has to send a complete request head.",
    "body_timeout": "Seconds a request has to send its whole body (else 408).",
    "timeout_keep_alive": "Seconds an idle keep-alive connection stays open.",
    "grpc_port": "Also serve the Open Inference Protocol over gRPC on this port (same --host, "
    "batcher and /metrics; 0: any free port) [default: off].",
    "no_ui": "Do not serve the try-it page at GET /.",
    "workers": "Server processes on one port, each loading its own copy of the model.",
    "threads": "onnxruntime intra-op threads per worker (default: all cores, split among workers).",
    "providers": "auto, cpu, cuda, or a list.",
    "log_level": "Log level of the server and of uvicorn.",
    "access_log": "One log line per request.",
    "verbose": "Show tracebacks for errors.",
}
SHORT = {"verbose": "-v"}  # one-letter spellings
SHARED = ("engine", "precision")  # added together by engine_flags.engine_options


def _click_type(name: str) -> Any:
    """The click type of a field: a Choice, an int or float range, or None (text)."""
    if name in CHOICES:
        return click.Choice(list(CHOICES[name]))
    if name not in RANGES:
        return None
    low, high, open_low = RANGES[name]
    hint = typing.get_type_hints(ServeConfig)[name]  # e.g. int, float, int | None
    if int in (hint, *typing.get_args(hint)):
        return click.IntRange(int(low), None if high is None else int(high))
    return click.FloatRange(min=low, max=high, min_open=open_low)


def _option(field: dataclasses.Field[Any]) -> Callable[[Any], Any]:
    """The flag `--field-name` of one ServeConfig field, its default the field's."""
    flag = "--" + field.name.replace("_", "-")
    names = [flag, *([SHORT[field.name]] if field.name in SHORT else [])]
    default = field.default
    if default is True:  # on by default: --name / --no-name
        return click.option(
            f"{flag}/--no-{flag[2:]}", default=True, show_default=True, help=HELP[field.name]
        )
    if default is False:
        return click.option(*names, is_flag=True, default=False, help=HELP[field.name])
    return click.option(
        *names,
        default=default,
        show_default=default is not None,
        type=_click_type(field.name),
        help=HELP[field.name],
    )


def serve_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One option per ServeConfig field, in the fields' order (--help lists them so)."""
    for field in reversed(dataclasses.fields(ServeConfig)):
        if field.name == SHARED[0]:
            command = engine_options(command)
        elif field.name not in SHARED:
            command = _option(field)(command)
    return command


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus this package's loggers, in the same format."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["cifar10_runtime"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def app_factory() -> Any:
    """Build the app from $CIFAR10_SERVE_MODEL and $CIFAR10_SERVE_CONFIG (uvicorn's workers)."""
    from cifar10_runtime.serving.app import create_app

    model, raw = os.environ.get(MODEL_ENV), os.environ.get(CONFIG_ENV)
    if not (model and raw):
        raise ConfigError(
            f"{MODEL_ENV} and {CONFIG_ENV} must both be set; start workers through "
            f"cifar-serve. Received: {MODEL_ENV}={model!r}, {CONFIG_ENV}={raw!r}"
        )
    config = ServeConfig.from_json(raw)
    configure_connections(config)
    from cifar10_runtime.engines.batch_sizes import BatchTuning

    tuning = BatchTuning.from_dict(_json_or_none(os.environ.get(TUNING_ENV)))
    return create_app(model, config, tuning=tuning)


def _json_or_none(raw: str | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None  # the choice is then reported as the size the config holds


def configure_connections(config: ServeConfig) -> str:
    """This process's connection guards (serving/http/process.py); returns the HTTP parser's
    name."""
    from cifar10_runtime.serving.http.process import configure

    return configure(config.header_timeout, config.limit_concurrency, config.http)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@serve_options
def main(model: str, **settings: Any) -> None:
    """Serve MODEL (an .onnx file) over HTTP.

    POST /v1/predict (an image/* body or multipart files, ?top_k=), GET /v1/metadata,
    GET /healthz, GET /readyz; the Open Inference Protocol under /v2 (tritonclient,
    KServe); GET /metrics (Prometheus), GET /openapi.json. Requests that arrive while
    the model is busy are micro-batched into its next run.
    """
    with cli_errors(settings["verbose"]):
        config = ServeConfig(**settings).resolved()
        _require_extras(config)
        from cifar10_runtime.serving.app import create_app, serving_predictor
        from cifar10_runtime.serving.http import drain

        predictor = serving_predictor(model, config)
        # Measured here, once, so the workers of --workers N get the number, not the timing.
        config, tuning = config.with_batch_size(predictor)
        parser = configure_connections(config)
        loop = "uvloop" if parser == "httptools" and _has("uvloop") else "asyncio"
        click.echo(
            f"cifar-serve: {model} (version {predictor.model_version!r}) on "
            f"{predictor.engine} ({', '.join(predictor.providers)}); batching: "
            f"{tuning.describe()}, {config.max_delay_ms:g} ms; HTTP: {parser} on "
            f"{loop}; http://{config.host}:{config.port}"
            + (f", gRPC {config.host}:{config.grpc_port}" if config.grpc_port is not None else ""),
            err=True,
        )
        click.echo(f"cifar-serve config: {config.to_json()}", err=True)  # resolved, once
        click.echo(predictor.engine_report, err=True)  # the engine choice, one block
        options = _uvicorn_options(config, loop)
        if config.workers == 1:
            drain.run(create_app(predictor, config, tuning=tuning), **options)
            return
        os.environ[MODEL_ENV] = os.path.abspath(model)
        os.environ[CONFIG_ENV] = config.to_json()
        os.environ[TUNING_ENV] = json.dumps(tuning.to_dict())
        del predictor  # each worker loads its own copy
        factory = "cifar10_runtime.cli.serve:app_factory"
        drain.run(factory, factory=True, workers=config.workers, **options)


def _require_extras(config: ServeConfig) -> None:
    """One error line, before anything loads, when the serve extra (or gRPC's part) is
    missing."""
    try:
        import uvicorn  # noqa: F401

        import cifar10_runtime.serving.app  # noqa: F401
        import cifar10_runtime.serving.http.connections  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"cifar-serve needs the serve extra ({exc.name} is missing). {SERVE_EXTRA}"
        ) from exc
    if config.grpc_port is None:
        return
    try:
        from cifar10_runtime.serving.grpc.server import check_port
    except ImportError as exc:
        raise ConfigError(
            f"--grpc-port needs grpcio from the serve extra ({exc.name} is missing). {SERVE_EXTRA}"
        ) from exc
    from cifar10_runtime.serving.grpc.protocol import protocol

    protocol()  # Triton's stubs (tritonclient): if missing, one error line before serving
    check_port(config.host, config.grpc_port)


def _uvicorn_options(config: ServeConfig, loop: str) -> dict[str, Any]:
    from cifar10_runtime.serving.http.connections import PROTOCOL

    return {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": config.access_log,
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        "lifespan": "on",
        "http": PROTOCOL,
        "loop": loop,
        "ws": "none",
        # --limit-concurrency is enforced by connections.py (a JSON 503), not uvicorn.
        "timeout_keep_alive": config.timeout_keep_alive,
        "log_config": log_config(config.log_level),
    }


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
