"""The serving defaults: their one home, read by the app (server.py), the connection guards
(guards.py) and the `cifar-serve` flags (serve_cli.py). No imports, so the CLI can show
them in --help without loading the serve extra."""

from __future__ import annotations

MODEL_NAME = "cifar10"  # the model's name in the Open Inference Protocol
# Pixels per image (after JPEG draft scaling): far above what a 32x32 model needs, far
# below Pillow's 89-megapixel bomb limit. A bigger image is refused from its header.
MAX_PIXELS = 4_000_000
LARGE_DECODES = 2  # images over images.LARGE_PIXELS decoding at once, per process
HEADER_TIMEOUT = 10.0  # seconds for a complete request head
BODY_TIMEOUT = 30.0  # seconds for a whole request body
KEEP_ALIVE_TIMEOUT = 5.0  # seconds an idle keep-alive connection stays open
LIMIT_CONCURRENCY = 512  # connections (and tasks) per worker before 503
# gRPC (cifar-serve --grpc-port): HTTP/2 streams one connection may open at once (the
# HTTP/2 spec's recommended minimum); RPCs in progress are capped by LIMIT_CONCURRENCY.
GRPC_MAX_STREAMS = 100
GRPC_GRACE_SECONDS = 30.0  # in-progress RPCs get this long to finish on shutdown
