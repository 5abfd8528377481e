"""The one SessionOptions recipe (cifar10_runtime.engines.sessions) and how routes use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime.contract import INPUT_NAME, OUTPUT_NAME
from cifar10_runtime.engines.runners import ort_file_runner
from cifar10_runtime.engines.selection import unspun
from cifar10_runtime.engines.sessions import cpu_session, session_options

SPIN = "session.intra_op.allow_spinning"
STOP = "session.force_spinning_stop"


def _entry(options, key: str) -> str | None:
    try:
        return options.get_session_config_entry(key)
    except RuntimeError:  # onnxruntime raises for a key never set
        return None


def test_the_recipe_sets_threads_and_keeps_the_default_spin() -> None:
    options = session_options(2)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert _entry(options, STOP) is None and _entry(options, SPIN) is None


def test_spinning_off_spins_within_a_run_and_stops_when_it_returns() -> None:
    # Parking the workers outright (allow_spinning=0) wakes them for every operator: measured
    # 0.8x the images/s of stopping their spin when the run returns.
    options = session_options(2, spinning=False)
    assert _entry(options, STOP) == "1"
    assert _entry(options, SPIN) != "0"


def test_a_route_mixing_engines_reopens_onnxruntime_without_the_spin_after_a_run(
    valid_model: Path,
) -> None:
    spinning = ort_file_runner(valid_model, "fp32", 1, INPUT_NAME, OUTPUT_NAME)
    assert spinning.spinning
    stopped = unspun(spinning, 1)
    assert not stopped.spinning and stopped.source == spinning.source
    assert _entry(stopped.session.get_session_options(), STOP) == "1"
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(stopped.run(x), spinning.run(x))
    assert unspun(stopped, 1) is stopped  # already unspun: kept, not reopened


def test_the_session_opens_from_bytes_and_from_a_path(valid_model: Path) -> None:
    by_path = cpu_session(valid_model, 1)
    by_bytes = cpu_session(valid_model.read_bytes(), 1)
    assert [i.name for i in by_path.get_inputs()] == [i.name for i in by_bytes.get_inputs()]
    with pytest.raises(Exception, match="(?i)protobuf|invalid|load"):
        cpu_session(b"not an onnx file", 1)
