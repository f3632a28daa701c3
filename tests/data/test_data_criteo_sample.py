"""configs/criteo_sample.py on the real Criteo Kaggle sample: the splits are
the rows its docstring names, taken from ../shared/data."""

from __future__ import annotations

import os

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib

from conftest import REPO_ROOT

MODULE = config_lib.load_config_module(
    os.path.join(REPO_ROOT, "configs", "criteo_sample.py"))
TRAIN_TXT = os.path.join(MODULE.CRITEO_SAMPLE_DIR, "train.txt")
pytestmark = pytest.mark.skipif(
    not os.path.isfile(TRAIN_TXT),
    reason=f"Criteo Kaggle sample not found at {TRAIN_TXT} (../shared/data "
           "beside the checkout; it is never committed)")


def _labels(config, split):
  return np.concatenate([y.numpy() for _, y in data_lib.build_dataset(
      config, split, 1000)])


def test_criteo_sample_splits_are_the_documented_rows():
  config = config_lib.validate(MODULE.get_config())
  assert data_lib.check_splits(config) == {"train": 7200, "validation": 800,
                                           "eval": 2000}
  with open(TRAIN_TXT) as f:
    labels = np.array([float(line.split("\t", 1)[0]) for line in f])
  assert labels.shape == (10_000,)
  np.testing.assert_array_equal(_labels(config, "validation"),
                                labels[7200:8000])
  np.testing.assert_array_equal(_labels(config, "eval"), labels[8000:])
  unshuffled = config_lib.override(config, {"data.shuffle_buffer": 0})
  train = np.concatenate([y.numpy() for _, y in data_lib.build_dataset(
      unshuffled, "train", 100)])
  np.testing.assert_array_equal(train, labels[:7200])
