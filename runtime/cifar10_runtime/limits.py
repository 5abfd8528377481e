"""The serving defaults: their one home, read by the app (server.py), the batcher and the
connection guards (batcher.py, guards.py, connections.py) and the `cifar-serve` flags
(serve_cli.py). No imports, so the CLI can show them in --help without loading the serve
extra."""

from __future__ import annotations

MODEL_NAME = "cifar10"  # the model's name in the Open Inference Protocol
# Images per session.run: past ~32 a small CNN's images/s on 2-8 cores stops growing while
# each run's latency keeps growing (see benchmarks' latency rows).
MAX_BATCH_SIZE = 32
# Extra wait for company for a run formed from a backlog: 0, since what arrived during the
# previous run is already the batch; a lone request never waits whatever this says.
MAX_DELAY_MS = 0.0
MAX_BODY_MB = 10.0  # request body: a 32x32 model needs far less; room for a few photos
MAX_QUEUE = 256  # requests waiting for a run before new ones get 503 (8 full batches)
# A lone request whose run is measured under this many ms runs on the event loop: the
# hand-off to the worker thread and back costs more than that (about 0.1-0.3 ms on a busy
# 2-core VM), and nothing else is in flight to be delayed. 0 turns it off.
INLINE_RUN_MS = 1.0
# onnxruntime's pool threads spin on after a run by default; in the server they would spin
# on the cores the event loop needs (measured on a 2-core EPYC: 16 clients 1.5-2.2x the
# requests/s with spinning off). Off means: spin within a run, stop when it returns.
ORT_SPINNING = False
# Threads decoding /v1 PNG/JPEG uploads beside inference (None: the usable cores).
DECODE_THREADS: int | None = None
# A single /v1 image this small (pixels declared in its header) decodes on the event loop:
# a 64x64 image decodes in tens of microseconds, less than the hop to the pool and back.
INLINE_DECODE_PIXELS = 64 * 64
# Pixels per image (after JPEG draft scaling): far above what a 32x32 model needs, far
# below Pillow's 89-megapixel bomb limit. A bigger image is refused from its header.
MAX_PIXELS = 4_000_000
LARGE_DECODES = 2  # images of images.LARGE_PIXELS or more decoding at once, per process
# Decoded pixels of all the images of one request together (after draft scaling), checked
# from their headers before any decoding: four images at MAX_PIXELS, or about 80 phone
# photos (12 MP JPEGs decode at 1/8 scale), about a second of one core's decoding.
MAX_REQUEST_PIXELS = 16_000_000
# Open Inference Protocol bodies with a JSON header over INLINE_JSON_BYTES, binary data
# over INLINE_BINARY_BYTES, or any Content-Encoding are inflated, parsed and converted in a
# worker thread, at most JSON_DECODES at a time; a thread hop costs more than parsing a
# smaller one (one 32x32x3 image is 14 KB of JSON; numpy reads 1 MiB of binary in ~0.1 ms).
INLINE_JSON_BYTES = 16 * 1024
INLINE_BINARY_BYTES = 2**20
JSON_DECODES = 2
HEADER_TIMEOUT = 10.0  # seconds for a complete request head
BODY_TIMEOUT = 30.0  # seconds for a whole request body
KEEP_ALIVE_TIMEOUT = 5.0  # seconds an idle keep-alive connection stays open
LIMIT_CONCURRENCY = 512  # connections (and tasks) per worker before 503
# gRPC (cifar-serve --grpc-port): HTTP/2 streams one connection may open at once (the
# HTTP/2 spec's recommended minimum); RPCs in progress are capped by LIMIT_CONCURRENCY.
GRPC_MAX_STREAMS = 100
GRPC_GRACE_SECONDS = 30.0  # in-progress RPCs get this long to finish on shutdown
HTTP = "auto"  # HTTP parser: httptools (on uvloop) when installed, else h11
