"""recsys-smelu: reproducible CTR models with Smooth ReLU on TensorFlow Recommenders."""

import pathlib
import re

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"',
                     (_HERE / "recsys_smelu" / "__init__.py").read_text()).group(1)

# Keras 3.15 supports JAX 0.10 (the release keras 3.15 was tested against).
_KERAS3 = ["keras>=3.15.1,<3.16", "keras-rs>=0.4.0,<0.5"]
_JAX_CPU = "jax[cpu]>=0.10.0,<0.11"
_PYARROW = "pyarrow>=14,<27"

setuptools.setup(
    name="recsys-smelu",
    version=_VERSION,
    description=("Reproducible CTR and recommendation models with Smooth ReLU "
                 "(SmeLU) on TensorFlow Recommenders"),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["recsys_smelu", "recsys_smelu.*"]),
    # The native ops' C++ sources, compiled on first use (recsys_smelu/native).
    package_data={"recsys_smelu.native": ["*.cc", "*.h"]},
    # Ranges are what the test suite runs against; TFRS 0.7.7 needs Keras 2.
    install_requires=[
        "tensorflow>=2.21.0,<2.22",
        "tf-keras>=2.21.0,<2.22",
        "tensorflow-recommenders==0.7.7",
        "numpy>=1.26,<3",
        "pandas>=2.2,<4",
        "absl-py>=2.1,<3",
        "ml-collections>=1.0,<2",
        "matplotlib>=3.8,<4",
        "scikit-learn>=1.5,<2",
        "tqdm>=4.66,<5",
        "tensorboard>=2.21,<2.22",  # tf.summary needs it; TF 2.21 no longer pulls it in
    ],
    extras_require={
        # recsys_smelu.keras3 and scripts/keras3_dlrm.py: Keras 3 on any
        # backend (install the backend: jax[cpu], tensorflow or torch).
        "keras3": _KERAS3,
        # data.format='parquet' (recsys_smelu.data.parquet).
        "parquet": [_PYARROW],
        # CI runs the Keras 3 tests on the TensorFlow and JAX backends (CPU);
        # PyTorch stays out (its PyPI wheels pull CUDA packages). pyarrow
        # too, so CI runs the Parquet tests (they skip without it).
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", *_KERAS3, _JAX_CPU,
                 _PYARROW],
    },
    entry_points={"console_scripts": [
        "recsys-smelu-train = recsys_smelu.train:run",
        "recsys-smelu-twin = recsys_smelu.twin:run",
        "recsys-smelu-export = recsys_smelu.export:run",
        "recsys-smelu-synthetic = recsys_smelu.data.synthetic:run",
        "recsys-smelu-convert = recsys_smelu.data.convert:run",
        "recsys-smelu-infer-schema = recsys_smelu.data.infer_schema:run",
    ]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
