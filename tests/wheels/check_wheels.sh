#!/usr/bin/env bash
# Both distributions from wheels, as a user installs them (issue 8, item 1): build the
# cifar10-runtime and cifar10-toolkit wheels, install them into a fresh venv (nothing
# editable, no repo on the path), then train and export from an empty folder outside the
# repository. Run by `make test-wheels` (part of `make test`): a venv with TensorFlow takes
# minutes to install, too long for a pytest test.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cifar10-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PIP_FLAGS=(--disable-pip-version-check --quiet)
passed=0

step() { echo "wheels: $*"; }

step "building both wheels into $WORK/dist"
"$PYTHON" -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/pip" install "${PIP_FLAGS[@]}" --upgrade pip setuptools wheel
"$WORK/build-venv/bin/pip" wheel "${PIP_FLAGS[@]}" --no-deps -w "$WORK/dist" "$REPO/runtime" "$REPO"
# Read the listing whole, not through `| grep -q`: grep -q exits at the first match, unzip
# then dies of SIGPIPE and pipefail fails the step (exit 141) whenever the listing is longer
# than the pipe buffer: it did so on CI.
listing=$(unzip -l "$WORK"/dist/cifar10_toolkit-*.whl)
[[ "$listing" == *"cifar10_trainer/configs/seed.toml"* ]] || {
    echo "wheels: cifar10_trainer/configs/seed.toml missing from the toolkit wheel" >&2
    exit 1
}
passed=$((passed + 1))

step "installing them into a fresh venv"
start=$(date +%s)
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install "${PIP_FLAGS[@]}" "$WORK"/dist/*.whl
step "installed in $(($(date +%s) - start)) s"
passed=$((passed + 1))

mkdir "$WORK/empty"
cd "$WORK/empty"
export PYTHONPATH="" PYTHONDONTWRITEBYTECODE=1
TINY=(--epochs 1 --filters 8,16 --dense-units 16 --dropout 0,0 --quiet)
step "cifar-train --dataset synthetic from an empty folder"
"$WORK/venv/bin/cifar-train" --dataset synthetic "${TINY[@]}"
test -f runs/latest/model.keras && test -f runs/latest/metrics.json
passed=$((passed + 1))

step "cifar-train --config configs/seed.toml (the shipped file) from the same folder"
"$WORK/venv/bin/cifar-train" --config configs/seed.toml --dataset synthetic \
    --output-dir runs/seed "${TINY[@]}"
grep -q '"optimizer": "sgd"' runs/seed/config.json
passed=$((passed + 1))

step "cifar-export on the latest run"
"$WORK/venv/bin/cifar-export" model.onnx --samples 64 --threads 1 > export.log
test -f model.onnx && test -f model.parity.json
passed=$((passed + 1))

step "the runtime wheel serves it (no TensorFlow imported)"
"$WORK/venv/bin/python" - <<'PY'
import sys

import numpy as np

from cifar10_runtime import Predictor

p = Predictor("model.onnx")
out = p.predict_batch(np.zeros((3, 32, 32, 3), np.uint8))
assert len(out) == 3 and "tensorflow" not in sys.modules, out
PY
passed=$((passed + 1))

echo "wheels: $passed passed, 0 failed"
