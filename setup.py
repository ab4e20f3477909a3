"""Installs spn_tf: Subscale Pixel Networks and Parallel Multiscale PixelCNN in Keras 3."""
import setuptools

setuptools.setup(
    name="spn_tf",
    version="0.1.0",
    description=(
        "Autoregressive image density models that sample fast: Subscale Pixel Networks with "
        "multidimensional upscaling and Parallel Multiscale PixelCNN (Keras 3, TensorFlow)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["spn_tf", "spn_tf.*"]),
    package_data={"spn_tf": ["data_files/*.npz", "data_files/*.json", "data_files/LICENSE*",
                            "configs/*.cfg", "serving/native/*.c"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9.10,<4.10",
        "tensorflow-serving-api>=2.21,<2.22",
        "absl-py>=2.1,<3",
        # tensorflow-datasets imports it for download_and_prepare without declaring it.
        "importlib_resources>=6",
        "numpy>=1.26",
        "pillow>=10",
        # The entropy coder of spn_tf.codec (Rust range/ANS coders; BUILD_NOTES.md).
        "constriction>=0.5,<0.6",
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "pyyaml>=6", "matplotlib>=3.8"], "bench": ["matplotlib>=3.8", "imagecodecs>=2024.6", "scikit-image>=0.24"]},
)
