"""Prometheus metrics for one server process (`GET /metrics`, text format 0.0.4): the one
home of every collector, HTTP's, the inference requests' and runs', and gRPC's.

Names follow Triton's where they mean the same thing (`*_request_success`,
`*_request_failure`, `*_inference_count`, `*_exec_count`, queue and compute durations),
with the `cifar_` prefix and Prometheus' units (seconds). Every label value comes from a
fixed set, never from the client as sent: methods from METHODS (else "other") or the gRPC
service's own, endpoints from the route table's templates (else UNMATCHED), codes from the
server's own answers. Each app gets its own registry, so tests and several apps in one
process never share counters. With `--workers N` every worker process keeps its own
numbers: a scrape reaches one worker, as with replicas.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "cifar"
# 0.5 ms .. 10 s: one small-model run is well under a millisecond, a loaded server is not.
SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
UNMATCHED = "(unmatched)"  # every path no route knows shares one label: no label explosion
# RFC 9110's methods (plus PATCH); any other token a client sends counts as OTHER.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
METHODS |= {"PATCH"}
OTHER = "other"


class Metrics:
    """The collectors, plus the batcher's observer methods (queued, ran, depth)."""

    def __init__(
        self, model_name: str, model_version: str, engine: str = "", precision: str = ""
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = {"model": model_name, "version": model_version}
        # engine/precision: what runs the model, as chosen at load.
        Info(f"{PREFIX}_model", "The model this process serves.", registry=self.registry).info(
            {"name": model_name, "version": model_version, "engine": engine, "precision": precision}
        )
        self._http_collectors()
        self._request_collectors()
        self._run_collectors()
        self._grpc: GrpcMetrics | None = None

    def _http_collectors(self) -> None:
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by endpoint (route template), method and status code.",
            ["endpoint", "method", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from request start to the end of the response, by endpoint.",
            ["endpoint"],
            buckets=SECONDS,
            registry=self.registry,
        )

    def _request_collectors(self) -> None:
        """Inference requests by outcome, for every API (v1, v2 and gRPC alike)."""
        kind = ["model", "version", "api"]
        self.success = Counter(
            f"{PREFIX}_inference_request_success",
            "Inference requests answered with 200 (v1 predict and v2 infer).",
            kind,
            registry=self.registry,
        )
        self.failure = Counter(
            f"{PREFIX}_inference_request_failure",
            "Inference requests answered with an error, by reason (HTTP status code).",
            [*kind, "code"],
            registry=self.registry,
        )

    def _run_collectors(self) -> None:
        """The batcher's model runs, queue and batch sizes."""
        r, run, labels = self.registry, ["model", "version"], self.labels
        self.inference_count = Counter(
            f"{PREFIX}_inference_count", "Images inferred.", run, registry=r
        ).labels(**labels)
        self.exec_count = Counter(
            f"{PREFIX}_inference_exec_count", "Model runs (batches) executed.", run, registry=r
        ).labels(**labels)
        self.exec_failure = Counter(
            f"{PREFIX}_inference_exec_failure", "Model runs that failed.", run, registry=r
        ).labels(**labels)
        self.queue_seconds = Histogram(
            f"{PREFIX}_inference_queue_duration_seconds",
            "Time a request waited in the batcher's queue before its run started.",
            run,
            buckets=SECONDS,
            registry=r,
        ).labels(**labels)
        self.compute_seconds = Histogram(
            f"{PREFIX}_inference_compute_duration_seconds",
            "Time of one model run (assembly and session.run), per batch.",
            run,
            buckets=SECONDS,
            registry=r,
        ).labels(**labels)
        self.batch_size = Histogram(
            f"{PREFIX}_inference_batch_size",
            "Images per model run.",
            run,
            buckets=SIZES,
            registry=r,
        ).labels(**labels)
        self.queue_depth = Gauge(
            f"{PREFIX}_inference_queue_depth", "Requests waiting for a run.", run, registry=r
        ).labels(**labels)

    def grpc(self) -> GrpcMetrics:
        """The gRPC collectors, registered on first use: /metrics shows them only when the
        app serves gRPC, beside the HTTP ones (one /metrics for both protocols)."""
        if self._grpc is None:
            self._grpc = GrpcMetrics(self.registry)
        return self._grpc

    # --- BatchObserver -------------------------------------------------------------------
    def queued(self, seconds: float) -> None:
        self.queue_seconds.observe(seconds)

    def ran(self, images: int, requests: int, seconds: float, ok: bool) -> None:
        self.compute_seconds.observe(seconds)
        if ok:
            self.exec_count.inc()
            self.inference_count.inc(images)
            self.batch_size.observe(images)
        else:
            self.exec_failure.inc()

    def depth(self, pending: int) -> None:
        self.queue_depth.set(pending)

    # --- per request ---------------------------------------------------------------------
    def inference_outcome(self, api: str, code: int | str) -> None:
        if code == 200:
            self.success.labels(**self.labels, api=api).inc()
        else:
            self.failure.labels(**self.labels, api=api, code=str(code)).inc()

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class GrpcMetrics:
    """gRPC calls by method and status code, and their durations."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            f"{PREFIX}_grpc_requests",
            "gRPC requests by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            f"{PREFIX}_grpc_request_duration_seconds",
            "Time from a gRPC request's arrival to its answer, by method.",
            ["method"],
            buckets=SECONDS,
            registry=registry,
        )

    def record(self, method: str, code: str, seconds: float) -> None:
        """One call of `method` answered with status `code` (e.g. "OK") after `seconds`."""
        self.requests.labels(method, code).inc()
        self.seconds.labels(method).observe(seconds)


INFERENCE_APIS = {"/v1/predict": "v1", "/v2/models/{name}/infer": "v2"}
INFERENCE_APIS["/v2/models/{name}/versions/{version}/infer"] = "v2"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every response by route template and status code."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # if the app raises before answering, the server sends a 500

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else OTHER
            m = self.metrics
            m.requests.labels(endpoint, method, str(status[0])).inc()
            m.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
            if endpoint in INFERENCE_APIS:
                m.inference_outcome(INFERENCE_APIS[endpoint], status[0])
