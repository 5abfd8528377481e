"""GET /openapi.json: an OpenAPI 3.1 description of /v1 and /v2, for client generators.

Written by hand (Starlette has no schema for request bodies); a test keeps it in sync with
the app's API routes (every /v1, /v2, health and metrics route described, and served).
Routes it does not know (e.g. a page for people) are left out.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.routing import Route

from cifar10_runtime import __version__
from cifar10_runtime.contract import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME
from cifar10_runtime.images import FORMATS_TEXT

ERROR = {"$ref": "#/components/schemas/Error"}
JSON = "application/json"


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad request (image, tensor or parameter)",
        404: "unknown model or version",
        408: "body too slow",
        413: "body over --max-body-mb (on /v1: or images over --max-request-pixels)",
        415: "unsupported Content-Type",
        503: "not ready, or queue full",
    }
    return {str(c): _json(ERROR, text[c]) for c in codes}


PIXELS = math.prod(IMAGE_SHAPE)  # values per image
# The one input as the server takes it: the exact name, datatype and [N, 32, 32, 3] shape;
# `data` (UINT8 integers 0..255, FP32 numbers in [0, 1], N * 3072 of them: JSON Schema
# cannot say "N times", so at least one image's worth) or parameters.binary_data_size.
TENSOR_IN = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"const": INPUT_NAME},
        "shape": {
            "type": "array",
            "prefixItems": [
                {"type": "integer", "minimum": 1},
                *({"const": d} for d in IMAGE_SHAPE),
            ],
            "items": False,
            "minItems": 4,
            "example": [1, *IMAGE_SHAPE],
        },
        "datatype": {"enum": ["UINT8", "FP32"]},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": PIXELS}},
        },
        "data": {
            "type": "array",
            "minItems": PIXELS,
            "description": "flat, row-major: N * 3072 values (nested lists of that shape too)",
        },
    },
    "oneOf": [
        {"required": ["data"], "not": {"$ref": "#/components/schemas/BinaryInput"}},
        {"$ref": "#/components/schemas/BinaryInput"},
    ],
    "if": {"properties": {"datatype": {"const": "FP32"}}},
    "then": {"properties": {"data": {"items": {"type": "number", "minimum": 0, "maximum": 1}}}},
    "else": {"properties": {"data": {"items": {"type": "integer", "minimum": 0, "maximum": 255}}}},
}
BINARY_INPUT = {  # bytes after the JSON header: no `data`
    "required": ["parameters"],
    "properties": {"parameters": {"required": ["binary_data_size"]}},
}
TENSOR_OUT = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"const": OUTPUT_NAME},
        "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "datatype": {"const": "FP32"},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
        "data": {"type": "array", "items": {"type": "number"}},
    },
}
NO_CLASSIFICATION = {"description": "not supported: anything but false is a 400", "const": False}
INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "description": "UTF-8 JSON (RFC 8259: no NaN or Infinity; no lone surrogate in a string)",
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_output": {"type": "boolean"}},
        },
        "inputs": {"type": "array", "items": TENSOR_IN, "minItems": 1, "maxItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"const": OUTPUT_NAME},
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "binary_data": {"type": "boolean"},
                            "classification": NO_CLASSIFICATION,
                        },
                    },
                },
            },
        },
    },
}
INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": TENSOR_OUT, "minItems": 1, "maxItems": 1},
    },
}
BINARY_NOTE = (
    "With Triton's binary tensor extension the body is the JSON header followed by raw "
    "little-endian tensor bytes; the Inference-Header-Content-Length header gives the JSON's size."
)
PREDICTION = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "description": "the multipart filename or field"},
        "label": {"type": "string"},
        "index": {"type": "integer"},
        "probability": {"type": "number"},
        "top_k": {"type": "array", "items": {"type": "object"}},
    },
}
MULTIPART_NOTE = (
    "One or more file parts, each an image with a filename in its Content-Disposition; form "
    "fields without a filename are not files: a body with no file part is a 400."
)
OBJECT = {"type": "object"}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}


def _infer(versioned: bool) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Open Inference Protocol inference (JSON or binary tensors)",
            "description": BINARY_NOTE,
            "parameters": [NAME, VERSION] if versioned else [NAME],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": INFER_REQUEST},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "probabilities",
                    "content": {
                        JSON: {"schema": INFER_RESPONSE},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                **_errors(400, 404, 408, 413, 415, 503),
            },
        }
    }


def _get(summary: str, schema: dict[str, Any] = OBJECT, *codes: int, params: Any = ()) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _json(schema), **_errors(*codes)},
    }
    if params:
        op["parameters"] = list(params)
    return {"get": op}


PATHS: dict[str, dict[str, Any]] = {
    "/v1/predict": {
        "post": {
            "summary": "Classify one image (raw body) or several (multipart files)",
            "parameters": [
                {
                    "name": "top_k",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": NUM_CLASSES},
                }
            ],
            "requestBody": {
                "required": True,
                "description": f"Images in {FORMATS_TEXT}; other formats are a 400.",
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "description": MULTIPART_NOTE,
                            "minProperties": 1,
                            "additionalProperties": {"type": "string", "format": "binary"},
                        },
                    },
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "predictions": {"type": "array", "items": PREDICTION},
                            "model_version": {"type": "string"},
                        },
                    }
                ),
                **_errors(400, 408, 413, 415, 503),
            },
        }
    },
    "/v1/metadata": _get("Class names, input spec, versions, batching settings"),
    "/healthz": _get("The process is alive"),
    "/readyz": _get("The model is loaded and taking requests", OBJECT, 503),
    "/v2": _get("Server metadata (name, version, extensions)"),
    "/v2/health/live": _get("Server liveness"),
    "/v2/health/ready": _get("Server readiness", OBJECT, 503),
    "/v2/models/{name}": _get("Model metadata", OBJECT, 404, params=[NAME]),
    "/v2/models/{name}/versions/{version}": _get(
        "Model metadata", OBJECT, 404, params=[NAME, VERSION]
    ),
    "/v2/models/{name}/ready": _get("Model readiness", OBJECT, 404, 503, params=[NAME]),
    "/v2/models/{name}/versions/{version}/ready": _get(
        "Model readiness", OBJECT, 404, 503, params=[NAME, VERSION]
    ),
    "/v2/models/{name}/infer": _infer(False),
    "/v2/models/{name}/versions/{version}/infer": _infer(True),
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": _get("This document"),
}


def openapi_document(routes: list[Route], model_name: str, model_version: str) -> dict[str, Any]:
    """The document for the described ones among `routes` (plus /openapi.json itself)."""
    served = {getattr(route, "path", None) for route in routes} | {"/openapi.json"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cifar-serve",
            "version": __version__,
            "description": f"CIFAR-10 classifier; model {model_name!r} version {model_version!r}.",
        },
        "paths": {path: PATHS[path] for path in PATHS if path in served},
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "BinaryInput": BINARY_INPUT,
            }
        },
    }
