"""ServeConfig and `cifar-serve`'s flags: one flag per field, each reaching the config; the
config logged once at start and handed whole to create_app and to every --workers process."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cifar10_runtime import limits
from cifar10_runtime.cli import serve as serve_cli
from cifar10_runtime.engines.batch_sizes import BatchTuning
from cifar10_runtime.errors import ConfigError
from cifar10_runtime.serving import app as app_module
from cifar10_runtime.serving.config import CHOICES, RANGES, ServeConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient

FIELDS = [f.name for f in dataclasses.fields(ServeConfig)]
LOGGED = "cifar-serve config: "

# One value other than the default per ServeConfig field: as typed, and as the config holds
# it. A new field needs a line here, and its flag (built from the field by cli/serve.py).
FLAG_VALUES: dict[str, tuple[list[str], object]] = {
    "host": (["--host", "0.0.0.0"], "0.0.0.0"),
    "port": (["--port", "9001"], 9001),
    "max_batch_size": (["--max-batch-size", "8"], 8),
    "max_delay_ms": (["--max-delay-ms", "2.5"], 2.5),
    "no_batching": (["--no-batching"], True),
    "inline_ms": (["--inline-ms", "0"], 0.0),
    "max_body_mb": (["--max-body-mb", "1.5"], 1.5),
    "max_queue": (["--max-queue", "7"], 7),
    "max_pixels": (["--max-pixels", "2048"], 2048),
    "max_request_pixels": (["--max-request-pixels", "4096"], 4096),
    "model_name": (["--model-name", "cats"], "cats"),
    "limit_concurrency": (["--limit-concurrency", "9"], 9),
    "http": (["--http", "h11"], "h11"),
    "header_timeout": (["--header-timeout", "3"], 3.0),
    "body_timeout": (["--body-timeout", "4"], 4.0),
    "timeout_keep_alive": (["--timeout-keep-alive", "6"], 6.0),
    "grpc_port": (["--grpc-port", "0"], 0),
    "no_ui": (["--no-ui"], True),
    "workers": (["--workers", "3"], 3),
    "threads": (["--threads", "2"], 2),
    "providers": (["--providers", "cpu"], "cpu"),
    "engine": (["--engine", "onnxruntime"], "onnxruntime"),
    "precision": (["--precision", "fp32"], "fp32"),
    "log_level": (["--log-level", "debug"], "debug"),
    "access_log": (["--no-access-log"], False),
    "verbose": (["-v"], True),
}


def _options() -> dict[str, click.Option]:
    return {p.name: p for p in serve_cli.main.params if isinstance(p, click.Option)}


def test_flags_and_fields_agree_one_for_one() -> None:
    """Every field is the flag --field-name with the field's default and a help text; no
    flag is anything else (MODEL is the one argument, -h/--help click's own)."""
    options = _options()
    assert sorted(options) == sorted(FIELDS)
    (argument,) = [p for p in serve_cli.main.params if isinstance(p, click.Argument)]
    assert argument.name == "model"
    defaults = ServeConfig()
    for name, option in options.items():
        assert "--" + name.replace("_", "-") in option.opts, (name, option.opts)
        assert option.default == getattr(defaults, name), name
        assert option.help, f"--{name.replace('_', '-')} has no help text"
        kind: Any = option.type
        if name in CHOICES:
            assert list(kind.choices) == list(CHOICES[name]), name
        if name in RANGES:
            low, high, open_low = RANGES[name]
            assert (kind.min, kind.max, kind.min_open) == (low, high, open_low), name


def test_flag_values_cover_every_field() -> None:
    assert sorted(FLAG_VALUES) == sorted(FIELDS)


class _Fake:
    """What main needs of a Predictor, without loading a model."""

    model_version = "v-fake"
    engine = "onnxruntime/fp32"
    providers = ("CPUExecutionProvider",)
    engine_report = "engine: fake"

    def tune_batch_size(self, ceiling: int) -> BatchTuning:
        return BatchTuning(TUNED, {1: 100.0, TUNED: 600.0}, "timed at start")


TUNED = 6  # what the fake's measurement chooses


def _served(config: ServeConfig) -> ServeConfig:
    """What a server runs with `config`: its batch size measured when it was 0."""
    return config if config.max_batch_size else dataclasses.replace(config, max_batch_size=TUNED)


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """main with the predictor, the extras check, the guards and uvicorn stubbed: records
    what reached each (nothing is loaded or bound)."""
    from cifar10_runtime.serving.http import drain

    seen: dict[str, list[Any]] = {"predictor": [], "app": [], "run": [], "guards": []}
    for name in (serve_cli.CONFIG_ENV, serve_cli.MODEL_ENV, serve_cli.TUNING_ENV):
        monkeypatch.setenv(name, "")  # restored (unset) after the test: main sets them
        monkeypatch.delenv(name)

    def predictor(model: str, config: ServeConfig) -> _Fake:
        seen["predictor"].append((model, config))
        return _Fake()

    def create_app(predictor: Any, config: ServeConfig, tuning: Any = None) -> str:
        seen["app"].append((predictor, config))
        seen.setdefault("tuning", []).append(tuning)
        return "the app"

    def configure(config: ServeConfig) -> str:
        seen["guards"].append(config)
        return "h11"

    monkeypatch.setattr(app_module, "serving_predictor", predictor)
    monkeypatch.setattr(app_module, "create_app", create_app)
    monkeypatch.setattr(serve_cli, "configure_connections", configure)
    monkeypatch.setattr(serve_cli, "_require_extras", lambda config: None)
    monkeypatch.setattr(drain, "run", lambda app, **kw: seen["run"].append((app, kw)))
    return seen


def _logged(stderr: str) -> ServeConfig:
    lines = [line for line in stderr.splitlines() if line.startswith(LOGGED)]
    assert len(lines) == 1, stderr  # once
    return ServeConfig.from_json(lines[0][len(LOGGED) :])


@pytest.mark.parametrize("name", FIELDS)
def test_every_flag_reaches_the_config(name: str, served: dict[str, list[Any]]) -> None:
    args, value = FLAG_VALUES[name]
    result = CliRunner().invoke(serve_cli.main, ["m.onnx", *args])
    assert result.exit_code == 0, result.output
    expected = ServeConfig(**{name: value}).resolved()
    assert getattr(ServeConfig(), name) != value
    ((model, loaded),) = served["predictor"]
    assert model == "m.onnx" and loaded == expected
    assert served["guards"] == [_served(expected)]
    assert _logged(result.stderr) == _served(expected)
    assert result.stderr.startswith("cifar-serve: m.onnx (version 'v-fake') on ")
    if expected.workers == 1:
        ((app_predictor, app_config),) = served["app"]
        assert isinstance(app_predictor, _Fake) and app_config == _served(expected)  # whole


def test_the_config_is_logged_once_and_reaches_create_app_whole(
    served: dict[str, list[Any]],
) -> None:
    args = ["m.onnx", "--no-batching", "--max-queue", "5", "--model-name", "dogs"]
    result = CliRunner().invoke(serve_cli.main, args)
    assert result.exit_code == 0, result.output
    logged = _logged(result.stderr)
    ((_, config),) = served["app"]
    assert config is not None and config == logged
    assert (config.max_batch_size, config.max_delay_ms, config.max_queue) == (1, 0.0, 5)
    assert config.model_name == "dogs"
    lines = result.stderr.splitlines()
    assert "batching: max 1 images (asked for), 0 ms; HTTP: h11 on asyncio" in lines[0]
    assert lines[1].startswith(LOGGED)
    ((app, options),) = served["run"]
    assert app == "the app" and options["port"] == 8000 and options["host"] == "127.0.0.1"


def test_one_process_hands_its_measured_choice_to_the_app(
    served: dict[str, list[Any]],
) -> None:
    result = CliRunner().invoke(serve_cli.main, ["m.onnx"])
    assert result.exit_code == 0, result.output
    (tuning,) = served["tuning"]
    assert (tuning.size, tuning.source) == (TUNED, "timed at start")


def test_a_damaged_choice_record_reads_as_none() -> None:
    for record in (None, "x", {}, {"max_batch_size": "8", "images_per_s": {}, "source": "s"}):
        assert BatchTuning.from_dict(record) is None
    good = BatchTuning(8, {1: 10.0, 8: 40.0}, "timed at start")
    assert BatchTuning.from_dict(good.to_dict()) == good


def test_the_start_line_names_the_precision_that_answers(
    served: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, engines_dir: Path
) -> None:
    from cifar10_runtime import Predictor

    model = engines_dir / "model.onnx"
    predictor = Predictor(model, threads=1, engine="onnxruntime", precision="int8")
    monkeypatch.setattr(app_module, "serving_predictor", lambda path, config: predictor)
    result = CliRunner().invoke(serve_cli.main, [str(model)])
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert f"cifar-serve: {model} (version " in first and " on onnxruntime/int8 (" in first


def test_workers_receive_the_config_whole(served: dict[str, list[Any]], tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        serve_cli.main, [str(model), "--workers", "2", "--max-queue", "5", "--no-ui"]
    )
    assert result.exit_code == 0, result.output
    parent = _logged(result.stderr)
    assert parent.workers == 2 and parent.threads is not None  # the cores split among them
    ((target, options),) = served["run"]
    assert target == "cifar10_runtime.cli.serve:app_factory"
    assert options["factory"] is True and options["workers"] == 2
    assert served["app"] == []  # the parent builds no app
    assert parent.max_batch_size == TUNED  # measured once, in the parent
    # What a worker process does with the environment cifar-serve left it:
    served["guards"].clear()
    assert serve_cli.app_factory() == "the app"
    ((path, config),) = served["app"]
    assert path == str(model.resolve()) and config == parent
    # ... and how the parent chose the size, for its /v1/metadata
    (tuning,) = served["tuning"]
    assert tuning.to_dict() == {
        "max_batch_size": TUNED,
        "images_per_s": {"1": 100.0, str(TUNED): 600.0},
        "source": "timed at start",
    }
    assert served["guards"] == [parent]


def test_a_worker_without_its_environment_says_so(served: dict[str, list[Any]]) -> None:
    with pytest.raises(ConfigError, match="start workers through cifar-serve. Received: "):
        serve_cli.app_factory()


def test_create_app_keeps_the_config(predictor: Any) -> None:
    config = ServeConfig(max_queue=3, no_ui=True, model_name="birds")
    app = app_module.create_app(predictor, config)
    tuned = app.state.batch_tuning
    assert 1 <= tuned.size <= limits.MAX_BATCH_SIZE
    # timed here, or by an earlier test on the same model (the cache lasts the session)
    assert tuned.source == "timed at start" or tuned.source.startswith("timings from ")
    assert app.state.config == dataclasses.replace(config, max_batch_size=tuned.size)
    with TestClient(app) as client:
        assert client.get("/").status_code == 404
        assert client.get("/v2/models/birds/ready").status_code == 200
        server = client.get("/v1/metadata").json()["server"]
        assert server["max_batch_size"] == tuned.size
        assert server["max_batch_size_choice"] == tuned.to_dict()
    again = app_module.create_app(predictor).state
    assert again.config == ServeConfig(max_batch_size=tuned.size)
    assert again.batch_tuning.source.startswith("timings from ")  # kept, not timed again
    given = app_module.create_app(predictor, ServeConfig(max_batch_size=5)).state
    assert given.config.max_batch_size == 5 and given.batch_tuning.source == "asked for"
    # cifar-serve measured the size before building the app: the app reports that choice
    sized = ServeConfig(max_batch_size=tuned.size)
    handed = app_module.create_app(predictor, sized, tuning=tuned)
    with TestClient(handed) as client:
        choice = client.get("/v1/metadata").json()["server"]["max_batch_size_choice"]
        assert choice == tuned.to_dict()
    other = BatchTuning(tuned.size + 1, {1: 1.0}, "timed at start")  # not this config's size
    assert app_module.create_app(predictor, sized, tuning=other).state.batch_tuning.source == (
        "asked for"
    )


def test_no_batching_is_resolved_wherever_the_config_is_used(predictor: Any) -> None:
    app = app_module.create_app(predictor, ServeConfig(no_batching=True, max_delay_ms=5))
    assert (app.state.config.max_batch_size, app.state.config.max_delay_ms) == (1, 0.0)
    assert app.state.config.resolved() == app.state.config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_body_mb": 0}, "max_body_mb must be more than 0 (--max-body-mb). Received: 0."),
        ({"max_pixels": 1000}, "max_pixels must be at least 1024 (32x32) (--max-pixels)."),
        ({"port": 70000}, "port must be between 0 and 65535 (--port). Received: 70000."),
        ({"threads": 0}, "threads must be at least 1 (--threads). Received: 0."),
        ({"http": "h3"}, "http must be one of auto, httptools, h11 (--http). Received: 'h3'."),
        ({"model_name": "a/b"}, "model_name must be a non-empty name without '/'."),
    ],
)
def test_a_bad_setting_is_one_config_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServeConfig(**changes)
    assert message in str(caught.value)


def test_the_json_round_trip_and_its_errors() -> None:
    config = ServeConfig(grpc_port=0, threads=2, access_log=False)
    text = config.to_json()
    assert "\n" not in text and ServeConfig.from_json(text) == config
    assert json.loads(text)["grpc_port"] == 0
    with pytest.raises(ConfigError, match=r"unknown serve setting\(s\) \['ui'\]"):
        ServeConfig.from_json('{"ui": false}')
    with pytest.raises(ConfigError, match="a JSON object of its fields"):
        ServeConfig.from_json("[1]")


def test_a_bad_model_name_flag_is_exit_2_before_loading(served: dict[str, list[Any]]) -> None:
    result = CliRunner().invoke(serve_cli.main, ["m.onnx", "--model-name", "a/b"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: model_name must be a non-empty name without '/'. Received: 'a/b'."
    ]
    assert served["predictor"] == []


def test_help_is_built_from_the_fields() -> None:
    result = CliRunner().invoke(serve_cli.main, ["--help"])
    assert result.exit_code == 0
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in result.output, name
    assert "--access-log / --no-access-log" in result.output
    assert "-v, --verbose" in result.output
    assert "[default: 0; x>=0]" in result.output  # 0: measured at start, not Triton's
