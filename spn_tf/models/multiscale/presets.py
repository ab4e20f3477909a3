"""Presets of the Parallel Multiscale PixelCNN: `preset(name, image_size)`."""

from spn_tf.models.presets_common import check_name


def preset(name, image_size):
    """Hyperparameters of a preset; the base resolution depends on the image size.

    Reed et al. 2017 (§4) start from a 4x4 base (CUB, MPII, MS-COCO) or an 8x8 base
    (ImageNet); images smaller than the base are their own base. `tiny` and `small` use type A
    groups (a group in `C` steps: the tests' call counts, the quickstart's speed); `paper` uses
    type B, as the paper's models do.
    """
    check_name(name)
    presets = {
        # A few thousand parameters: seconds to train, for tests.
        "tiny": dict(base_size=min(4, image_size), filters=6, num_blocks=1, kernel_size=3,
                     base_filters=6, base_layers=1, base_first_kernel_size=3,
                     condition_on_base=False, group_pixelcnn_patch=0, group_pixelcnn_layers=1,
                     group_pixelcnn_filters=6),
        # The quickstart on 2 CPU cores.
        "small": dict(base_size=min(4, image_size), filters=48, num_blocks=4, kernel_size=3,
                      base_filters=48, base_layers=4, base_first_kernel_size=5,
                      condition_on_base=False, group_pixelcnn_patch=0, group_pixelcnn_layers=2,
                      group_pixelcnn_filters=48),
        # ImageNet, type B groups: 12 ResNet layers, 4 PixelCNN layers, 256 units, 4x4
        # patches [reported, §3-4]; 258 units here, the nearest multiple of 3 that the R, G, B
        # channel masks need. 8x8 base [reported]. The base PixelCNN's size is not given
        # [unverified: 20 gated layers of 258 features].
        "paper": dict(base_size=min(8, image_size), filters=258, num_blocks=12, kernel_size=3,
                      base_filters=258, base_layers=20, base_first_kernel_size=7,
                      condition_on_base=False, group_pixelcnn_patch=4, group_pixelcnn_layers=4,
                      group_pixelcnn_filters=258),
    }
    return dict(presets[name])
