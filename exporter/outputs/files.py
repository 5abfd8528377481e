"""The names of the files an export produces beside OUTPUT, and an early writability check.

Writes themselves go through cifar10_runtime.files (temporary file, fsync, rename).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifar10_runtime.errors import ConfigError
from cifar10_runtime.files import probe_writable


@dataclass(frozen=True)
class ArtifactPaths:
    """Everything written for OUTPUT=`dir/model.onnx` (stem-based names, all in `dir/`)."""

    onnx: Path  # dir/model.onnx
    parity: Path  # dir/model.parity.json
    config: Path  # dir/model.export.json
    int8: Path  # dir/model.int8.onnx
    int8_parity: Path  # dir/model.int8.parity.json
    card: Path  # dir/model.md, the model card

    @property
    def describing_onnx(self) -> tuple[Path, ...]:
        """The side files that describe OUTPUT itself: stale once OUTPUT is replaced."""
        return (self.parity, self.config, self.int8, self.int8_parity, self.card)

    def report(self, model: Path) -> Path:
        """Where a check report of `model` (OUTPUT or its int8 twin) goes.

        A rejected export of a model whose previous version is still in place writes its
        report as STEM.rejected.parity.json, so the kept model's report stays true.
        """
        target = self.parity if model == self.onnx else self.int8_parity
        if not model.exists():
            return target
        return target.with_name(target.name.replace(".parity.json", ".rejected.parity.json"))

    def remove_stale(self) -> list[Path]:
        """Temporaries of a killed earlier export (see cifar10_runtime.files.atomic_path)."""
        from cifar10_runtime.files import remove_stale_temps

        return [p for t in (self.onnx, *self.describing_onnx) for p in remove_stale_temps(t)]

    @classmethod
    def for_output(cls, output: Path) -> ArtifactPaths:
        output = Path(output)
        stem = output.name[: -len(".onnx")] if output.name.endswith(".onnx") else output.name
        here = output.parent
        return cls(
            onnx=output,
            parity=here / f"{stem}.parity.json",
            config=here / f"{stem}.export.json",
            int8=here / f"{stem}.int8.onnx",
            int8_parity=here / f"{stem}.int8.parity.json",
            card=here / f"{stem}.md",
        )


def ensure_writable_dir(output: Path) -> None:
    """Prove OUTPUT can be written, before slow work, without creating anything.

    Missing folders are created at write time; here the nearest existing ancestor must be a
    folder where a file can be created (probed, since permissions alone lie for root).
    """
    output = Path(output)
    fix = "choose an OUTPUT path in a folder you can write to"
    if output.is_dir():
        raise ConfigError(
            f"cannot write {output}: it is a folder; give a file name such as "
            f"{output / 'model.onnx'}. Received: OUTPUT={output}"
        )
    try:
        probe_writable(output.parent)
    except NotADirectoryError as exc:
        raise ConfigError(
            f"cannot write {output}: {exc.filename} is not a folder; {fix}. "
            f"Received: OUTPUT={output}"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot write {output}: {exc.strerror or exc} in {output.parent}; {fix}. "
            f"Received: OUTPUT={output}"
        ) from exc
