"""spn_tf: autoregressive image density models that sample fast (Keras 3, TensorFlow).

Subscale Pixel Networks with multidimensional upscaling (Menick & Kalchbrenner 2019) and
Parallel Multiscale PixelCNN (Reed et al. 2017), beside a raster Gated PixelCNN baseline.
Model classes are imported on first use so that `import spn_tf` stays cheap.
"""

__version__ = "0.1.0"


def __getattr__(name):
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    models = importlib.import_module("spn_tf.models")
    if name == "GatedPixelCNN":
        return models.GatedPixelCNN
    for key, (_, cls) in models.MODELS.items():
        if cls == name:
            return models.model_class(key)
    raise AttributeError(f"module 'spn_tf' has no attribute {name!r}")
