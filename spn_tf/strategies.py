"""tf.distribute strategies by name: `default`, `mirrored`, `multi_worker`, `tpu`."""

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(num_devices):
    """Splits the CPU into `num_devices` logical devices (before TF initialises devices).

    Lets MirroredStrategy run real multi-replica training on one CPU: the closest stand-in for
    several GPUs on a machine without one.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name, tpu_address=""):
    """Returns the named strategy.

    * `default` — the current (single-device) strategy.
    * `mirrored` — synchronous data parallelism over the local GPUs (or CPU when none).
    * `multi_worker` — MultiWorkerMirroredStrategy; every worker needs `TF_CONFIG`.
    * `tpu` — TPUStrategy; fails at once with a clear message when no TPU is reachable.

    Raises:
      ValueError: unknown name, or no TPU found for `tpu`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as error:
            raise ValueError(
                f"--strategy=tpu found no TPU ({error.__class__.__name__}: {error}). Run on a TPU "
                f"VM, or pass --tpu_address=grpc://HOST:8470, or use --strategy=mirrored.") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}.")


def chief_and_task(strategy):
    """`(is_chief, task_id)` of this process: the chief writes the run's artefacts.

    A cluster without a `chief` task uses worker 0 as chief (TF's convention); without a
    cluster (default, mirrored, tpu) this process is the chief.
    """
    resolver = strategy.cluster_resolver
    if resolver is None or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return is_chief, task_id
