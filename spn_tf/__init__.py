"""spn_tf: autoregressive image density models that sample fast (Keras 3, TensorFlow).

Subscale Pixel Networks with multidimensional upscaling (Menick & Kalchbrenner 2019) and
Parallel Multiscale PixelCNN (Reed et al. 2017), beside a raster Gated PixelCNN baseline.

`import spn_tf` imports its public submodules, and so TensorFlow and Keras: loading a `.keras`
file needs every model class registered with Keras before the file names it, so the models
cannot wait for first use, and the rest costs little once TensorFlow is loaded. The command
line tools (`spn_tf.train`, `spn_tf.sample`) are not imported. TensorFlow is imported first,
quietly (`spn_tf.startup`: its C++ start-up lines are hidden; `SPN_TF_VERBOSE=1` shows them).
"""

from spn_tf.startup import quiet_import

with quiet_import():
    import tensorflow  # noqa: F401  (loaded here, quietly, for every module below)

from spn_tf import (data, distributions, exactness, grid, hparams, inputs, layers, models,
                    orderings, sampling)
from spn_tf.models import (DensityModel, GatedPixelCNN, MultidimensionalUpscaling,
                           MultiscalePixelCNN, SubscalePixelNetwork)

__version__ = "0.1.0"

__all__ = ["DensityModel", "GatedPixelCNN", "MultidimensionalUpscaling", "MultiscalePixelCNN",
           "SubscalePixelNetwork", "data", "distributions", "exactness", "grid", "hparams",
           "inputs", "layers", "models", "orderings", "sampling"]
