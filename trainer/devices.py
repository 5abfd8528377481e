"""Where training runs: device, precision (cifar10_trainer.precision), tf.distribute strategy.

All of this must happen before TensorFlow initialises its devices, so `configure` is called
once, first thing, by the training entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cifar10_runtime.engines.cpu import usable_cpus
from cifar10_runtime.errors import ConfigError

from . import precision
from .config import TrainConfig
from .precision import Precision

if TYPE_CHECKING:
    from .tf_config import Cluster


@dataclass(frozen=True)
class Placement:
    replicas: int
    strategy: Any  # a tf.distribute.Strategy (the default one when none was asked for)
    description: str  # what actually runs, e.g. "cpu x1"; recorded in config.json, metrics.json
    workers: int = 1  # processes training together (multi-worker: the TF_CONFIG cluster size)
    is_chief: bool = True  # the one worker that writes the run folder
    precision: Precision = Precision("float32", "default")  # the dtype policy set, and why
    deterministic: bool = False  # TensorFlow op determinism on (CPU runs with deterministic=true)


def configure(cfg: TrainConfig, cluster: Cluster | None = None) -> Placement:
    import keras
    import tensorflow as tf

    gpus = _visible_gpus(cfg, tf)
    use_gpu = bool(gpus)
    chosen = precision.choose(
        cfg.precision,
        use_gpu=use_gpu,
        capabilities=[precision.gpu_capability(g) for g in gpus] if use_gpu else None,
        flags=None if use_gpu else precision.cpu_flags(),
    )
    for gpu in gpus:
        # Grow on demand so a second process (an export, a server) can share the card.
        tf.config.experimental.set_memory_growth(gpu, True)
    strategy, devices, cluster = _strategy(cfg, tf, gpus, cluster)

    # Before any model is built or loaded: layers take the global policy when they are made.
    keras.mixed_precision.set_global_policy(chosen.policy)

    if cfg.threads:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
    # Repeatable CPU runs (--seed; its price: config.py); GPU kernels stay free to be fast
    # and nondeterministic.
    deterministic = cfg.deterministic and not use_gpu
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)

    replicas = strategy.num_replicas_in_sync
    desc = f"gpu x{len(gpus)}" if use_gpu else "cpu x1"
    if not use_gpu:  # the thread count decides float rounding: record it with the run
        desc += f", {cfg.threads or usable_cpus()} threads"
    if cfg.strategy == "mirrored":
        desc += f", MirroredStrategy over {replicas} replica(s): {', '.join(devices)}"
    if cluster is not None:
        desc += f", MultiWorkerMirroredStrategy: {cluster.workers} worker(s), {replicas} replica(s)"
    workers = cluster.workers if cluster else 1
    chief = cluster.is_chief if cluster else True
    return Placement(replicas, strategy, desc, workers, chief, chosen, deterministic)


def _visible_gpus(cfg: TrainConfig, tf: Any) -> list[Any]:
    """The GPUs training uses (none: every GPU is hidden from TensorFlow)."""
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "gpu" and not gpus:
        raise ConfigError(
            "--device gpu was asked for but TensorFlow sees no GPU; install the 'gpu' extra "
            "(tensorflow[and-cuda]) with a CUDA driver, or use --device cpu / auto. "
            "Received: --device gpu"
        )
    if gpus and cfg.device in ("auto", "gpu"):
        return gpus
    if gpus:
        tf.config.set_visible_devices([], "GPU")
    return []


def _strategy(
    cfg: TrainConfig, tf: Any, gpus: list[Any], cluster: Cluster | None
) -> tuple[Any, list[str], Cluster | None]:
    """The tf.distribute strategy, the devices it mirrors over, and the multi-worker cluster."""
    if cfg.strategy == "mirrored":
        if gpus:
            devices = [f"/gpu:{i}" for i in range(len(gpus))]
        else:
            n = max(cfg.cpu_replicas, 1)
            if n > 1:
                cpu = tf.config.list_physical_devices("CPU")[0]
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
                )
            devices = [f"/cpu:{i}" for i in range(n)]
        return tf.distribute.MirroredStrategy(devices=devices), devices, cluster
    if cfg.strategy == "multi-worker":
        from .distributed import make_strategy
        from .tf_config import read_tf_config

        cluster = cluster or read_tf_config()
        # Each worker's local GPUs, or its CPU.
        return make_strategy(cluster, cfg.peer_timeout), [], cluster
    return tf.distribute.get_strategy(), [], cluster
