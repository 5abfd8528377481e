"""`cifar-predict MODEL IMAGE_OR_DIR...`: classify image files from the command line.

Folders are walked (recursively, sorted, hidden entries skipped) for files with an
extension of the formats the runtime decodes (images.FORMATS). A file that cannot be read
is reported and the rest go on; the exit code is 5 (ImageError's) if any input failed.
Plain output is a table on stdout and errors on stderr; with --json, stdout gets one JSON
object per input file: path, label, index, probability, top_k, or path and error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from PIL import Image

from cifar10_runtime.cli.engine_flags import engine_options
from cifar10_runtime.errors import ImageError, cli_errors
from cifar10_runtime.images import PILLOW_FORMATS
from cifar10_runtime.predictor import Prediction, Predictor

# Below this many files a bar is only noise.
PROGRESS_MIN_FILES = 20


def image_extensions() -> frozenset[str]:
    """Extensions of the formats load_image decodes (images.PILLOW_FORMATS)."""
    Image.init()
    allowed = set(PILLOW_FORMATS) | {"MPO"}  # Pillow opens .mpo files as JPEG
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in allowed)


def collect(inputs: tuple[str, ...]) -> Iterator[tuple[str, str | None]]:
    """Yield (path, None) for each image file, or (input, error) for an unusable input."""
    extensions = image_extensions()
    for given in inputs:
        if os.path.isdir(given):
            found = 0
            for root, dirs, files in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                        found += 1
                        yield os.path.join(root, name), None
            if not found:
                yield given, f"{given}: folder has no image files (looked for .png, .jpg, ...)."
        elif os.path.exists(given):
            yield given, None  # named explicitly: tried whatever its extension
        else:
            yield given, f"{given}: no such file or folder."


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE_OR_DIR...")
@click.option("--top-k", "-k", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")
@click.option(
    "--batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images per session.run.",
)
@click.option(
    "--threads", default=None, type=click.IntRange(min=1), help="onnxruntime intra-op threads."
)
@click.option("--providers", default="auto", show_default=True, help="auto, cpu, cuda, or a list.")
@engine_options
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: for many files on a terminal).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks for errors.")
def main(
    model: str,
    inputs: tuple[str, ...],
    top_k: int,
    as_json: bool,
    batch_size: int,
    threads: int | None,
    providers: str,
    engine: str,
    precision: str,
    progress: bool | None,
    verbose: bool,
) -> None:
    """Classify images with MODEL (an .onnx file): files, or folders walked for images.

    Images are converted to RGB (transparency over white, EXIF rotation applied) and
    resized to 32x32 with Pillow's BILINEAR filter. Exit code 5 if any input failed.
    With --verbose the engine choice (golden-set check and timings) is shown on stderr.
    """
    with cli_errors(verbose):
        predictor = Predictor(
            model, providers=providers, threads=threads, engine=engine, precision=precision
        )
        if verbose:
            click.echo(predictor.engine_report, err=True)
        entries = list(collect(inputs))
        if progress is None:
            progress = (
                len(entries) >= PROGRESS_MIN_FILES
                and sys.stderr.isatty()
                and not (as_json and not sys.stdout.isatty())
            )
        try:
            failed = _run(predictor, entries, top_k, as_json, batch_size, progress)
        except BrokenPipeError:
            # `cifar-predict ... | head`: the reader left; stop quietly like other CLI tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        if failed:
            click.echo(f"{failed} of {len(entries)} inputs failed.", err=True)
            sys.exit(ImageError.exit_code)


def _run(
    predictor: Predictor,
    entries: list[tuple[str, str | None]],
    top_k: int,
    as_json: bool,
    batch_size: int,
    progress: bool,
) -> int:
    out = _JsonWriter() if as_json else _TableWriter([p for p, _ in entries], top_k)
    failed = 0
    # click's bar redraws itself on a terminal and, elsewhere, writes its label once.
    bar = click.progressbar(
        length=len(entries),
        label=f"classifying {len(entries)} images",
        show_pos=True,
        file=sys.stderr,
    )
    with bar if progress else contextlib.nullcontext() as shown:
        for start in range(0, len(entries), batch_size):
            chunk = entries[start : start + batch_size]
            paths = [path for path, error in chunk if error is None]
            results = iter(
                predictor.predict_batch(paths, len(paths) or 1, top_k, on_error="return")
            )
            if shown is not None and sys.stderr.isatty():
                sys.stderr.write("\r\033[K")  # rows go where the bar was; it redraws below
            for path, error in chunk:
                result: Prediction | ImageError | str = error if error else next(results)
                if isinstance(result, Prediction):
                    out.prediction(path, result)
                else:
                    failed += 1
                    out.error(path, str(result))
            sys.stdout.flush()
            if shown is not None:
                shown.update(len(chunk))
    return failed


class _JsonWriter:
    def prediction(self, path: str, prediction: Prediction) -> None:
        print(json.dumps({"path": path, **prediction.to_dict()}))

    def error(self, path: str, message: str) -> None:
        print(json.dumps({"path": path, "error": message}))


class _TableWriter:
    """Fixed-width columns; the path column is as wide as the longest path (up to 60)."""

    def __init__(self, paths: list[str], top_k: int) -> None:
        self.width = min(max([len(p) for p in paths] + [4]), 60)
        self.top_k = top_k
        header = f"{'path':<{self.width}}  {'label':<10}  {'prob':>6}"
        if top_k > 1:
            header += f"  top-{top_k}"
        print(header)
        print("-" * len(header))

    def prediction(self, path: str, prediction: Prediction) -> None:
        row = f"{path:<{self.width}}  {prediction.label:<10}  {prediction.probability:>6.3f}"
        if self.top_k > 1:
            row += "  " + ", ".join(f"{s.label} {s.probability:.3f}" for s in prediction.top_k)
        print(row)

    def error(self, path: str, message: str) -> None:
        sys.stdout.flush()  # keep stdout rows and stderr errors in input order on a terminal
        print(f"error: {message}", file=sys.stderr)
