"""`cifar-serve MODEL`: run the HTTP API (cifar10_runtime.serving.app) on uvicorn.

The model is loaded and checked before the port is bound, so a bad model ends with one
`error:` line instead of a server that never becomes ready. With --workers N, uvicorn
starts N processes that each load the model (through `app_factory` and an environment
variable carrying the settings); onnxruntime threads are then split between them, and
each worker's /readyz turns 200 only once its own model is loaded.

HTTP runs on uvicorn with httptools on uvloop when they are installed (the serve extra
brings them), else h11 on asyncio (--http). Connections are guarded whichever parser runs
(connections.py, guards.py): a request head must arrive within --header-timeout, its body
within --body-timeout, idle keep-alive connections close after --timeout-keep-alive, and
--limit-concurrency caps connections and requests before new ones get a JSON 503.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from typing import Any

import click

from cifar10_runtime import limits
from cifar10_runtime.cli.engine_flags import engine_options
from cifar10_runtime.errors import ConfigError, cli_errors

CONFIG_ENV = "CIFAR10_SERVE_CONFIG"
# Seconds uvicorn waits for in-flight requests on SIGTERM/SIGINT before closing them.
GRACEFUL_SECONDS = 30


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
    """Build the app from $CIFAR10_SERVE_CONFIG (used by uvicorn worker processes)."""
    from cifar10_runtime.serving.app import create_app
    from cifar10_runtime.serving.http.connections import configure

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise ConfigError(f"{CONFIG_ENV} is not set; start workers through cifar-serve.")
    config = json.loads(raw)
    configure(**config.pop("connections"))
    return create_app(config.pop("model"), **config)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--max-batch-size",
    default=limits.MAX_BATCH_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most images in one session.run; 1 turns micro-batching off.",
)
@click.option(
    "--max-delay-ms",
    default=limits.MAX_DELAY_MS,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Extra wait for a batch formed while the model was busy (a lone request never waits).",
)
@click.option(
    "--no-batching",
    is_flag=True,
    help="Run every request on its own (same as --max-batch-size 1 --max-delay-ms 0).",
)
@click.option(
    "--inline-ms",
    default=limits.INLINE_RUN_MS,
    show_default=True,
    type=click.FloatRange(min=0),
    help="A lone request (nothing else in flight) whose run is measured shorter than this "
    "runs on the event loop, not the worker thread (the hand-off costs more); 0: never.",
)
@click.option(
    "--max-body-mb",
    default=limits.MAX_BODY_MB,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Largest request body; bigger ones get 413.",
)
@click.option(
    "--max-queue",
    default=limits.MAX_QUEUE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests waiting for inference before new ones get 503.",
)
@click.option(
    "--max-pixels",
    default=limits.MAX_PIXELS,
    show_default=True,
    type=click.IntRange(min=1024),
    help="Largest image (width x height, after JPEG draft scaling); bigger ones get 400 "
    "before decoding.",
)
@click.option(
    "--max-request-pixels",
    default=limits.MAX_REQUEST_PIXELS,
    show_default=True,
    type=click.IntRange(min=1024),
    help="Decoded pixels of all the images of one request together; more get 413 before decoding.",
)
@click.option(
    "--model-name",
    default=limits.MODEL_NAME,
    show_default=True,
    help="The model's name in the Open Inference Protocol (/v2/models/NAME).",
)
@click.option(
    "--limit-concurrency",
    default=limits.LIMIT_CONCURRENCY,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most open connections (and requests in progress) per worker before new requests get 503.",
)
@click.option(
    "--http",
    default=limits.HTTP,
    show_default=True,
    type=click.Choice(["auto", "httptools", "h11"]),
    help="HTTP parser: auto is httptools (on uvloop) when installed, else h11 (on asyncio).",
)
@click.option(
    "--header-timeout",
    default=limits.HEADER_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a connection has to send a complete request head.",
)
@click.option(
    "--body-timeout",
    default=limits.BODY_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request has to send its whole body (else 408).",
)
@click.option(
    "--timeout-keep-alive",
    default=limits.KEEP_ALIVE_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--grpc-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Also serve the Open Inference Protocol over gRPC on this port (same --host, "
    "batcher and /metrics; 0: any free port) [default: off].",
)
@click.option("--no-ui", is_flag=True, help="Do not serve the try-it page at GET /.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes on one port, each loading its own copy of the model.",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="onnxruntime intra-op threads per worker (default: all cores, split among workers).",
)
@click.option("--providers", default="auto", show_default=True, help="auto, cpu, cuda, or a list.")
@engine_options
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks for errors.")
def main(
    model: str,
    host: str,
    port: int,
    max_batch_size: int,
    max_delay_ms: float,
    no_batching: bool,
    inline_ms: float,
    max_body_mb: float,
    max_queue: int,
    max_pixels: int,
    max_request_pixels: int,
    model_name: str,
    limit_concurrency: int,
    http: str,
    header_timeout: float,
    body_timeout: float,
    timeout_keep_alive: float,
    grpc_port: int | None,
    no_ui: bool,
    workers: int,
    threads: int | None,
    providers: str,
    engine: str,
    precision: str,
    log_level: str,
    access_log: bool,
    verbose: bool,
) -> None:
    """Serve MODEL (an .onnx file) over HTTP.

    POST /v1/predict (an image/* body or multipart files, ?top_k=), GET /v1/metadata,
    GET /healthz, GET /readyz; the Open Inference Protocol under /v2 (tritonclient,
    KServe); GET /metrics (Prometheus), GET /openapi.json. Requests that arrive while
    the model is busy are micro-batched into its next run.
    """
    with cli_errors(verbose):
        try:
            import uvicorn

            from cifar10_runtime.serving.app import create_app, serving_predictor
            from cifar10_runtime.serving.http.connections import PROTOCOL, configure
        except ImportError as exc:
            raise ConfigError(
                f"cifar-serve needs the serve extra ({exc.name} is missing). "
                "Install it with: pip install 'cifar10-runtime[serve]'"
            ) from exc

        if grpc_port is not None:
            try:
                from cifar10_runtime.serving.grpc.server import check_port
            except ImportError as exc:
                raise ConfigError(
                    f"--grpc-port needs grpcio from the serve extra ({exc.name} is missing). "
                    "Install it with: pip install 'cifar10-runtime[serve]'"
                ) from exc
            from cifar10_runtime.serving.grpc.protocol import protocol

            protocol()  # Triton's stubs (tritonclient): if missing, one error line before serving
            check_port(host, grpc_port)
        if no_batching:
            max_batch_size, max_delay_ms = 1, 0.0
        if threads is None and workers > 1:
            threads = max(1, (os.cpu_count() or 1) // workers)
        settings = {
            "max_batch_size": max_batch_size,
            "max_delay_ms": max_delay_ms,
            "inline_ms": inline_ms,
            "max_body_mb": max_body_mb,
            "max_queue": max_queue,
            "providers": providers,
            "threads": threads,
            "engine": engine,
            "precision": precision,
            "max_pixels": max_pixels,
            "max_request_pixels": max_request_pixels,
            "model_name": model_name,
            "body_timeout": body_timeout,
            "ui": not no_ui,
            "grpc_port": grpc_port,
            "grpc_host": host,
            "grpc_reuse_port": workers > 1,  # the workers share the gRPC port too
            "limit_concurrency": limit_concurrency,
        }
        predictor = serving_predictor(model, providers, threads, engine, precision)
        guards = {
            "header_timeout": header_timeout,
            "limit_concurrency": limit_concurrency,
            "http": http,
        }
        parser = configure(**guards)
        loop = "uvloop" if parser == "httptools" and _has("uvloop") else "asyncio"
        click.echo(
            f"cifar-serve: {model} (version {predictor.model_version!r}) on "
            f"{predictor.engine} ({', '.join(predictor.providers)}); batching: max "
            f"{max_batch_size} images, {max_delay_ms:g} ms; HTTP: {parser} on {loop}; "
            f"http://{host}:{port}"
            + (f", gRPC {host}:{grpc_port}" if grpc_port is not None else ""),
            err=True,
        )
        click.echo(predictor.engine_report, err=True)  # the engine choice, one block
        common: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": log_level,
            "access_log": access_log,
            "timeout_graceful_shutdown": GRACEFUL_SECONDS,
            "lifespan": "on",
            "http": PROTOCOL,
            "loop": loop,
            "ws": "none",
            # --limit-concurrency is enforced by connections.py (a JSON 503), not uvicorn.
            "timeout_keep_alive": timeout_keep_alive,
            "log_config": log_config(log_level),
        }
        if workers == 1:
            fixed = ("threads", "engine", "precision")  # already applied to this Predictor
            app = create_app(predictor, **{k: v for k, v in settings.items() if k not in fixed})
            uvicorn.run(app, **common)
        else:
            config = {"model": os.path.abspath(model), "connections": guards}
            os.environ[CONFIG_ENV] = json.dumps({**config, **settings})
            del predictor  # each worker loads its own copy
            uvicorn.run(
                "cifar10_runtime.cli.serve:app_factory", factory=True, workers=workers, **common
            )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
