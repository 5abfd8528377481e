"""`cifar-train`: every parameters-file key is also a flag.

For example `--batch-size 64` or `--no-augment-flip`.
"""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from cifar10_runtime.errors import ConfigError, cli_errors

from .config import TrainConfig, field_types, load_config
from .errors import PeerError
from .quiet import import_tensorflow_quietly
from .run import STATE

_HELP = {
    "data_dir": "Folder holding cifar-10-batches-py/ or cifar-10-python.tar.gz "
    "(default: the Keras cache, downloaded once when online).",
    "dataset": "cifar10 (real) or synthetic (generated, offline).",
    "filters": "Filters per conv block, comma separated, e.g. 32,64.",
    "dropout": "Dropout per block, comma separated, e.g. 0.2,0.3.",
    "cpu_replicas": "Split the CPU into N logical devices for --strategy mirrored.",
    "threads": "CPU threads per op [default 0: one per core]. A seeded run repeats exactly "
    "with the same count.",
    "precision": "auto, float32, mixed_bfloat16 or mixed_float16 [default auto: bfloat16 on "
    "CPUs with AMX-BF16/AVX512-BF16, float16 on GPUs of compute capability >= 7.0, else "
    "float32]. Weights, softmax, loss and the ONNX export stay float32.",
    "deterministic": "CPU runs: TensorFlow op determinism, so a seeded run repeats exactly "
    "[default: on].",
}
# Flags of earlier versions: using one is a one-line error naming its replacement (exit 2).
_REPLACED_FLAGS = {
    "mixed_precision": "--precision mixed_float16 (or --precision auto, the default, which "
    "picks float16 on GPUs and bfloat16 on CPUs that have it)",
}


def _config_options(func):  # noqa: ANN001, ANN202 - decorator
    """One click option per TrainConfig field, all defaulting to None (= keep the file's value)."""
    for f in reversed(fields(TrainConfig)):
        flag = "--" + f.name.replace("_", "-")
        kind = field_types()[f.name]
        if isinstance(kind, types.UnionType):  # "str | None": the flag takes the str
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        base = kind
        help_text = _HELP.get(f.name, f"Overrides '{f.name}' (file default: see --config).")
        if base is bool:
            opt = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
        elif typing.get_origin(base) is tuple:
            opt = click.option(flag, f.name, type=str, default=None, help=help_text)
        else:
            opt = click.option(flag, f.name, type=base, default=None, help=help_text)
        func = opt(func)
    return func


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML parameters file [default: configs/default.toml].",
)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run folder [default: runs/<UTC timestamp>; runs/latest -> newest completed].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --output-dir from its last "
    "finished epoch, with its saved parameters.",
)
@click.option(
    "--local-workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Run N --strategy multi-worker processes here on 127.0.0.1 (free ports, one TF_CONFIG "
    "each): shows the chief's output, returns the worst exit code.",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No progress bar: the first line (device, precision, run folder) and the summary.",
)
@click.option(
    "--mixed-precision/--no-mixed-precision",
    "mixed_precision",
    default=None,
    hidden=True,  # replaced by --precision: kept only to say so
)
@click.option("--verbose", is_flag=True, help="Show tracebacks and TensorFlow's logs.")
@_config_options
def main(**params: Any) -> None:
    """Train the two-block CIFAR-10 CNN and write model.keras, metrics and learning curves."""
    try:
        _main(**params)
    except SystemExit as done:
        if done.code == PeerError.exit_code:  # cli_errors printed the one line already
            from .distributed import hard_exit

            # Leave at once: TensorFlow's shutdown would wait on the lost peer.
            hard_exit(PeerError.exit_code)
        raise


def _main(  # noqa: PLR0913
    config_path: Path | None,
    output_dir: Path | None,
    resume: bool,
    local_workers: int | None,
    quiet: bool,
    verbose: bool,
    mixed_precision: bool | None,
    **overrides: object,
) -> None:
    with cli_errors(verbose):  # every user error, PeerError (exit 6) included
        if mixed_precision is not None:
            flag = "--mixed-precision" if mixed_precision else "--no-mixed-precision"
            raise ConfigError(
                f"{flag} was replaced by {_REPLACED_FLAGS['mixed_precision']}; use that "
                f"instead. Received: {flag}"
            )
        given = {k: v for k, v in overrides.items() if v is not None}
        if local_workers and not resume:
            given.setdefault("strategy", "multi-worker")
        if resume:
            cfg = _resumed_config(config_path, output_dir, given)
        else:
            cfg = _new_config(config_path, output_dir, given)
        if local_workers or cfg.strategy == "multi-worker":
            _multi_worker_checks(cfg, local_workers)
        from .outputs import ensure_writable_run_dir
        from .train import default_run_dir, train

        output_dir = output_dir or default_run_dir()
        ensure_writable_run_dir(output_dir)  # before TensorFlow's import and any slow work
        if local_workers:
            from .launcher import launch

            sys.exit(launch(local_workers, _worker_args(output_dir)))
        if not verbose:
            import_tensorflow_quietly()
        progress = 0 if quiet else (1 if sys.stdout.isatty() else 2)
        # click.echo receives the log's first line (device, precision), with --quiet too.
        result = train(cfg, output_dir, resume=resume, verbose=progress, log=click.echo)
        _print_summary(result.metrics, result.run_dir)


def _resumed_config(
    config_path: Path | None, output_dir: Path | None, given: dict[str, Any]
) -> TrainConfig:
    """--resume: the run's saved parameters; its saved progress is checked before TensorFlow."""
    if output_dir is None:
        raise ConfigError(
            "--resume needs --output-dir RUN_FOLDER (the run to continue). "
            "Received: --resume without --output-dir"
        )
    if given or config_path:
        dropped = sorted("--" + k.replace("_", "-") for k in given) or ["--config"]
        raise ConfigError(
            f"--resume continues with the run's saved parameters; drop {dropped}. "
            f"Received: {' '.join(dropped)} with --resume"
        )
    from .resume import load_run_config, load_run_state

    cfg = load_run_config(output_dir)
    if (output_dir / STATE).is_file():
        load_run_state(output_dir)  # a damaged one fails here, before TensorFlow
    return cfg


def _new_config(
    config_path: Path | None, output_dir: Path | None, given: dict[str, Any]
) -> TrainConfig:
    """A new run: the parameters file with the flags over it, into a folder without a run."""
    cfg = load_config(config_path, **given)
    if output_dir is not None and (output_dir / STATE).exists():
        raise ConfigError(
            f"{output_dir} already holds a run; pass --resume to continue it "
            f"or choose another --output-dir. Received: --output-dir={output_dir}"
        )
    return cfg


def _print_summary(m: dict[str, Any], run_dir: Path) -> None:
    if m.get("chief") is False:
        click.echo(f"worker done: {m['workers']} workers; the chief writes the run folder")
    if m.get("strategy") == "multi-worker":  # equal on every worker: replicas stayed in sync
        click.echo(f"final weights sha256 {m['final_weights_sha256']}")
    if m.get("chief") is False:
        return
    tag = " [SYNTHETIC data]" if m["synthetic"] else ""
    click.echo(
        f"test accuracy {m['test_accuracy']:.4f}, loss {m['test_loss']:.4f} "
        f"({m['test_images']} images){tag}; {m['epochs']} epochs, "
        f"{m['train_images_per_s']:.0f} images/s on {m['device']}, {m['precision']}; "
        f"outputs in {run_dir}"
    )


def _multi_worker_checks(cfg: object, local_workers: int | None) -> None:
    """Refuse what cannot work before TensorFlow is imported or any process is started."""
    if cfg.strategy != "multi-worker":
        raise ConfigError(
            "--local-workers runs --strategy multi-worker; drop --local-workers or use that "
            f"strategy. Received: strategy={cfg.strategy!r}"
        )
    if not local_workers:
        from .tf_config import read_tf_config

        read_tf_config()


def _worker_args(output_dir: Path) -> list[str]:
    """This command line for each worker: without --local-workers, with one run folder."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--local-workers":
            skip = True
        elif not arg.startswith("--local-workers="):
            args.append(arg)
    if "--resume" not in args and not any(a.startswith("--strategy") for a in args):
        args += ["--strategy", "multi-worker"]
    if not any(a == "--output-dir" or a.startswith("--output-dir=") for a in args):
        args += ["--output-dir", str(output_dir)]
    return args


if __name__ == "__main__":
    main()
