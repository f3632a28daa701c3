"""recsys-smelu: reproducible CTR models with Smooth ReLU on TensorFlow Recommenders."""

import pathlib
import re

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"',
                     (_HERE / "recsys_smelu" / "__init__.py").read_text()).group(1)

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
    package_data={"recsys_smelu.native": ["*.cc"]},
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
        # data.format='parquet' (recsys_smelu.data.parquet).
        "parquet": ["pyarrow>=14,<27"],
        # pyarrow too, so CI runs the Parquet tests (they skip without it).
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", "pyarrow>=14,<27"],
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
