"""spn_tf models and `build`, the one way to make them by name and preset."""

import importlib
import pkgutil

from spn_tf.models.base import DensityModel
from spn_tf.models.multiscale import MultiscalePixelCNN
from spn_tf.models.presets_common import NAMES as PRESET_NAMES
from spn_tf.models.raster import GatedPixelCNN
from spn_tf.models.subscale import SubscalePixelNetwork
from spn_tf.models.upscaling import MultidimensionalUpscaling
from spn_tf.models.video import MultiscaleVideoPixelCNN


def _kind_classes():
    """Every `DensityModel` subclass with a `kind`, from every kind package under
    `spn_tf.models` (each `spn_tf/models/<kind>/`): a new kind is one new package.

    Imported here, not on first use: loading a `.keras` file needs every model class
    registered with Keras before the file names it.
    """
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return {cls.kind: cls for cls in subclasses(DensityModel) if cls.kind
            and cls.__module__.startswith(__name__ + ".")}


# name → class of each model kind (`register` adds one defined elsewhere).
MODELS = _kind_classes()


def register(cls):
    """Makes a `DensityModel` subclass buildable by its `kind` (and so known to the tools:
    export, sample, evaluate and check ask the model, not its class). Register it with Keras
    too (`keras.saving.register_keras_serializable`) so that its `.keras` files load.

    Returns:
      `cls` (usable as a class decorator).
    """
    if not (isinstance(cls, type) and issubclass(cls, DensityModel)) or not cls.kind:
        raise ValueError(f"register takes a DensityModel subclass with a `kind`, got {cls!r}.")
    MODELS[cls.kind] = cls
    return cls


def model_class(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    return MODELS[name]


def build(name, image_size, channels=3, bits=8, preset="small", cond=None, **overrides):
    """Builds a model by name and preset.

    Args:
      name: `raster`, `spn`, `upscaling` or `multiscale` (the train CLI's `--model`).
      image_size: height = width of the images.
      channels: 1 or 3.
      bits: bits per sub-pixel.
      preset: `tiny` (tests: a few thousand parameters), `small` (the quickstart) or `paper`
        (the published sizes, where known).
      cond: conditioning the model takes, e.g. `{"label": 10}`, `{"embedding": 384}` or
        `{"text": 64}` (captions of at most 64 UTF-8 bytes).
      **overrides: any hyperparameter of the preset, by keyword, and the likelihood head:
        `head="logistic_mixture"` (with `num_mixtures`) instead of the default
        `head="categorical"`.

    Returns:
      A `DensityModel`.

    Example:
      >>> model = spn_tf.models.build("raster", 8, channels=1, bits=2, preset="tiny")
      >>> model.log_prob(tf.zeros([4, 8, 8, 1], tf.int32)).shape
      TensorShape([4])
    """
    cls, arguments = resolve(name, image_size, channels, bits, preset, cond, **overrides)
    return cls(**arguments)


def resolve(name, image_size, channels=3, bits=8, preset="small", cond=None, **overrides):
    """What `build` would construct, without constructing it: `(class, keyword arguments)`,
    the preset's hyperparameters with the overrides applied (the whole model configuration).

    Raises:
      ValueError: unknown model, preset or hyperparameter.
    """
    cls = model_class(name)
    hparams = cls.preset(preset, image_size)
    # Every kind takes the likelihood head (`DensityModel`'s), whatever its preset.
    unknown = set(overrides) - set(hparams) - {"name", "dtype", "head", "num_mixtures"}
    if unknown:
        raise ValueError(
            f"unknown hyperparameters {sorted(unknown)} for model {name!r}; known: "
            f"{sorted(set(hparams) | {'head', 'num_mixtures'})}.")
    hparams.update(overrides)
    return cls, dict(image_size=image_size, channels=channels, bits=bits, cond=cond, **hparams)


__all__ = ["DensityModel", "GatedPixelCNN", "MODELS", "MultidimensionalUpscaling",
           "MultiscalePixelCNN", "MultiscaleVideoPixelCNN", "SubscalePixelNetwork", "build",
           "model_class", "register", "resolve"]
