"""The serving defaults and internal limits: their one home. `ServeConfig` (serving/config.py)
reads the ones that are `cifar-serve` flags as its fields' defaults; the batcher, the
connection guards, the /v1 and /v2 decoders and the gRPC server read the rest. No imports,
so the CLI can show them in --help without loading the serve extra."""

from __future__ import annotations

# Images per session.run: past ~32 a small CNN's images/s on 2-8 cores stops growing while
# each run's latency keeps growing (see benchmarks' latency rows).
MAX_BATCH_SIZE = 32
# Extra wait for company for a run formed from a backlog: 0, since what arrived during the
# previous run is already the batch; a lone request never waits whatever this says.
MAX_DELAY_MS = 0.0
MAX_BODY_MB = 10.0  # request body: a 32x32 model needs far less; room for a few photos
MAX_QUEUE = 256  # requests waiting for a run before new ones get 503 (8 full batches)
# A lone request runs on the event loop when its run is measured shorter than this many
# hand-offs to the worker thread and back, the hand-off timed at start (batcher.py): then
# the hand-off would cost over a fifteenth of the run, and nothing else is in flight to be
# delayed. 15 is where the 1.0 ms the server rows were tuned with lands on the 2-core EPYC
# (a hand-off of 50-75 us); a CPU that hands off faster inlines less, a busy one more.
INLINE_HAND_OFFS = 15
INLINE_CAP_MS = 5.0  # however slow a hand-off measured, no lone run holds the loop longer
# onnxruntime's pool threads spin on after a run by default; in the server they would spin
# on the cores the event loop needs (the benchmarks' server rows show the requests/s lost).
# Off means: spin within a run, stop when it returns.
ORT_SPINNING = False
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
# smaller one (one 32x32x3 image is 14 KB of JSON; numpy reads 1 MiB of binary faster than
# a thread hop).
INLINE_JSON_BYTES = 16 * 1024
INLINE_BINARY_BYTES = 2**20
JSON_DECODES = 2
# Seconds for a complete request head: a real client sends it at once, a slow-loris
# trickles it to hold a connection; 10 s is generous for the first and short for the second.
HEADER_TIMEOUT = 10.0
# Seconds for a whole request body: MAX_BODY_MB arrives within it on an ordinary link, while
# a body dribbled to hold the connection is cut off (408).
BODY_TIMEOUT = 30.0
# Seconds an idle keep-alive connection stays open: uvicorn's own default, long enough for
# a client's next request, short enough that idle sockets do not pile up.
KEEP_ALIVE_TIMEOUT = 5.0
# Connections (and requests in progress) per worker before a JSON 503: above MAX_QUEUE, so a
# full queue refuses inference before this does, yet bounded so a flood of connections
# cannot exhaust the process's file descriptors or memory.
LIMIT_CONCURRENCY = 512
# gRPC (cifar-serve --grpc-port). Calls in progress and the streams of one connection are
# capped by LIMIT_CONCURRENCY (one client's burst within it is answered); the deadlines are
# the REST flags of the same meaning (serving/grpc/server.py).
GRPC_GRACE_SECONDS = 30.0  # in-progress RPCs get this long to finish on shutdown
# Once drained, seconds grpc core gets to flush the last answers and close the connections.
GRPC_CLOSE_SECONDS = 1.0
# On shutdown, new REST requests are answered 503 and new gRPC calls UNAVAILABLE until none
# arrived for SHUTDOWN_QUIET_SECONDS (at most SHUTDOWN_LINGER_SECONDS): closing the listener
# and the connections resets (REST) or cancels (gRPC) what arrives during the close, so
# clients still sending right after the signal should hear "shutting down" first.
SHUTDOWN_QUIET_SECONDS = 0.5
SHUTDOWN_LINGER_SECONDS = 3.0
# Any connection is asked to reconnect (GOAWAY) after this long: a stream whose answer its
# client never reads dies with its connection, and clients spread over new replicas.
GRPC_CONNECTION_AGE_SECONDS = 300.0
# The server pings a connection silent this long, to find peers gone without a FIN.
GRPC_KEEPALIVE_SECONDS = 60.0
# File descriptors the process keeps for itself (model, logs, the loop, gRPC core's own)
# beyond REST's LIMIT_CONCURRENCY connections: gRPC connections get what remains.
GRPC_FD_RESERVE = 64
# HTTP parser: httptools (on uvloop) when installed, the faster pair; else h11, which ships
# with uvicorn.
HTTP = "auto"
