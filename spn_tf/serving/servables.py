"""Versioned SavedModels kept the way TF Serving's manager keeps them (for the local stand-in).

A model name has a base path holding numeric version folders (`<base_path>/<N>/saved_model.pb`).
Its version policy (`ModelConfig.model_version_policy`: `latest` (default: the newest one),
`all` or `specific`) says which versions to serve; every poll loads the wanted versions that
are new, fully (warm-up requests replayed, `spn_tf.warmup`), before they become visible, and
only then drops the versions no longer wanted (TF Serving's availability-preserving order), so
a request never lands on a half-loaded version and an in-flight request keeps the servable it
started with. While no wanted version has loaded (e.g. a new one failed to load), the newest
loaded one keeps serving, as TF Serving's `AvailabilityPreservingPolicy` keeps it; a base path
that vanishes unloads nothing; a poll that fails is logged and the next one runs.

Nothing here imports spn_tf's model code: a servable is whatever `tf.saved_model.load` returns
plus the signature defs read from `saved_model.pb`, as a C++ TF Serving would see them.
"""

import dataclasses
import os
import threading
from typing import Mapping

import grpc
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2

from spn_tf import warmup

State = get_model_status_pb2.ModelVersionStatus.State
# Default of `--max_batch_rows`. Measured for the `small` raster preset at 32x32x3, 8 bits:
# `log_prob` peaks at ~7 MB of activations per row (256 rows: +1.6 GB, 1.3 s on 2 cores), and
# `sample` draws ~9 rows/s, so 256 rows is ~2 GB or ~30 s per call: 8 such calls at once
# (`--grpc_max_threads`) still fit a 24 GB dev machine; 1024 would not.
MAX_BATCH_ROWS = 256


class RequestError(Exception):
    """A request the server answers with a gRPC error status (TF Serving's code and wording)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Servable:
    """One loaded version of a model.

    Attributes:
      name: the model name clients ask for.
      version: the numeric version folder it was loaded from.
      path: that folder.
      loaded: what `tf.saved_model.load` returned (it owns the variables the signatures read).
      signature_defs: name → `SignatureDef` proto, from `saved_model.pb` (for metadata).
    """

    name: str
    version: int
    path: str
    loaded: object
    signature_defs: Mapping[str, object]

    @property
    def signatures(self):
        """name → concrete function taking the signature's inputs by keyword."""
        return self.loaded.signatures


def load_servable(name, version, path):
    """Loads `path` (one version folder) with `tf.saved_model.load` and its signature defs,
    then replays its warm-up requests as TF Serving does (`spn_tf.warmup`): a version whose
    warm-up fails does not load."""
    loaded = tf.saved_model.load(path)
    replayed = warmup.replay(loaded, path)
    if replayed:
        logging.info("Finished reading warmup data for model at %s. Number of warmup records "
                     "read: %d.", path, replayed)
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    serve = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
    if not serve:
        raise ValueError(f"{path} has no MetaGraph tagged 'serve'.")
    return Servable(name, version, path, loaded, dict(serve[0].signature_def))


def version_folders(base_path):
    """Numeric version → folder, for the folders of `base_path` holding a `saved_model.pb`.

    A folder without `saved_model.pb` is still being written (or not a SavedModel): skipped.
    """
    if not tf.io.gfile.isdir(base_path):
        return {}
    found = {}
    for entry in tf.io.gfile.listdir(base_path):
        entry = entry.rstrip("/")
        path = os.path.join(base_path, entry)
        if entry.isdigit() and tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            found[int(entry)] = path
    return found


def wanted_versions(policy, available):
    """The versions a `ServableVersionPolicy` serves among `available` (a set of ints)."""
    kind = policy.WhichOneof("policy_choice") or "latest"
    if kind == "all":
        return set(available)
    if kind == "specific":
        return set(policy.specific.versions) & set(available)
    count = policy.latest.num_versions or 1
    return set(sorted(available)[-count:])


class Model:
    """The servables of one model name, reloaded from its base path by `poll`.

    Args:
      config: a `ModelConfig` proto (`name`, `base_path`, `model_version_policy`,
        `version_labels`); `model_platform` must be `tensorflow` (or empty).
      max_num_load_retries: loads of a failing version attempted after the first, one per poll
        (TF Serving's flag of that name).
    """

    def __init__(self, config, max_num_load_retries=5):
        if config.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {config.name!r}: model_platform {config.model_platform!r} "
                             "is not supported; only 'tensorflow'.")
        self.config = config
        self.max_num_load_retries = max_num_load_retries
        self._servables = {}  # version → Servable; replaced whole, never mutated.
        self._states = {}  # version → (State, error message or "").
        self._failures = {}  # version → failed load attempts.
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()

    @property
    def name(self):
        return self.config.name

    def poll(self):
        """Loads new wanted versions (fully, first), then unloads those no longer wanted."""
        with self._poll_lock:
            folders = version_folders(self.config.base_path)
            if not folders and not self._servables:
                logging.warning("Could not find base path %s for servable %s with versions",
                                self.config.base_path, self.name)
            if not folders and self._servables:
                # A vanished (or emptied) base path unloads nothing: the loaded versions keep
                # serving until a version folder appears (TF Serving's
                # `servable_versions_always_present` behaviour).
                logging.warning("No versions of servable %s found under base path %s; "
                                "keeping version %d serving.", self.name,
                                self.config.base_path, max(self._servables))
                return
            wanted = wanted_versions(self.config.model_version_policy, folders)
            servables = dict(self._servables)
            for version in sorted(wanted - set(servables)):
                if self._failures.get(version, 0) > self.max_num_load_retries:
                    continue
                self._set_state(version, State.LOADING)
                try:
                    servables[version] = load_servable(self.name, version, folders[version])
                except Exception as error:  # noqa: BLE001 - any load failure is reported
                    self._failures[version] = self._failures.get(version, 0) + 1
                    logging.error("Loading servable %s version %d failed: %s", self.name,
                                  version, error)
                    self._set_state(version, State.END, str(error))
                    continue
                logging.info("Successfully loaded servable version {name: %s version: %d}",
                             self.name, version)
                self._set_state(version, State.AVAILABLE)
            unwanted = set(servables) - wanted
            if wanted and not wanted & set(servables) and unwanted:
                # No wanted version loaded (e.g. the new one failed): keep the newest one
                # that serves, as TF Serving's availability-preserving policy does.
                unwanted.discard(max(unwanted))
            for version in unwanted:
                del servables[version]
                logging.info("Unloaded servable version {name: %s version: %d}", self.name,
                             version)
                self._set_state(version, State.END)
            with self._lock:
                self._servables = servables

    def _set_state(self, version, state, error=""):
        with self._lock:
            self._states[version] = (state, error)

    def servable(self, version=None, label=None):
        """The servable for a request: a version, a version label, or the newest loaded.

        Raises:
          RequestError: NOT_FOUND for a version that is not loaded, INVALID_ARGUMENT for an
            unknown label (TF Serving's messages).
        """
        if label:
            if label not in self.config.version_labels:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {label}")
            version = self.config.version_labels[label]
        with self._lock:
            servables = self._servables
        if version is None:
            if not servables:
                raise RequestError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Latest({self.name})")
            return servables[max(servables)]
        if version not in servables:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({self.name}, "
                               f"{version})")
        return servables[version]

    def states(self):
        """version → (State, error message), for every version this server has seen."""
        with self._lock:
            return dict(self._states)


class ModelManager:
    """All models of a `ModelServerConfig`, and the thread that polls their base paths.

    Args:
      config: a `ModelServerConfig` proto with a `model_config_list`.
      max_num_load_retries: see `Model`.
      max_batch_rows: the most rows (dimension 0) a predict request may carry; every front
        end's predict (`server.predict`: gRPC and REST) refuses more (`--max_batch_rows`).
    """

    def __init__(self, config, max_num_load_retries=5, max_batch_rows=MAX_BATCH_ROWS):
        if config.WhichOneof("config") != "model_config_list":
            raise ValueError("only model_config_list configs are supported.")
        names = [c.name for c in config.model_config_list.config]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"model names must be unique and non-empty, got {names}.")
        self.models = {c.name: Model(c, max_num_load_retries)
                       for c in config.model_config_list.config}
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}.")
        self.max_batch_rows = max_batch_rows
        self._stop = threading.Event()
        self._thread = None

    def model(self, name):
        """The `Model` called `name`; NOT_FOUND (TF Serving's wording) if there is none."""
        if name not in self.models:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        return self.models[name]

    def poll(self):
        for model in self.models.values():
            model.poll()

    def start_polling(self, poll_wait_seconds):
        """Polls every `poll_wait_seconds` in a daemon thread (0: never after the first poll)."""
        if poll_wait_seconds <= 0:
            return

        def loop():
            while not self._stop.wait(poll_wait_seconds):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - one failed poll must not stop polling
                    logging.exception("Polling the model base paths failed; retrying in %s s.",
                                      poll_wait_seconds)

        self._thread = threading.Thread(target=loop, name="version-poller", daemon=True)
        self._thread.start()

    def stop_polling(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
