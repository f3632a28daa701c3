"""Validation split, row ranges and row counts of the data config.

Rows come from ``small_criteo_rows``: row k has I1 = k, so the dense feature
``log(1 + k)`` names the row each example came from.
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu.data import features

from conftest import small_criteo_rows, write_lines


def _row_ids(dataset) -> list[int]:
  """The I1 value (= row number k of ``small_criteo_rows``) of each example."""
  ids = [np.expm1(f[features.DENSE_KEY].numpy()[:, 0]) for f, _ in dataset]
  return np.rint(np.concatenate(ids)).astype(int).tolist() if ids else []


def _config(**changes):
  base = {"data.num_dense": 2, "data.num_categorical": 3,
          "data.num_buckets": 50, "data.shuffle_buffer": 0}
  base.update(changes)
  return config_lib.override(config_lib.default_config(), base)


def test_validation_files_are_read_in_order_never_shuffled(tmp_path):
  train = write_lines(str(tmp_path / "train.tsv"), small_criteo_rows(8))
  val_a = write_lines(str(tmp_path / "val-a.tsv"), small_criteo_rows(3, 100))
  val_b = write_lines(str(tmp_path / "val-b.tsv"), small_criteo_rows(2, 200))
  config = _config(**{"data.train_files": train, "data.eval_files": train,
                      "data.validation_files": str(tmp_path / "val-*.tsv")})
  assert data_lib.has_validation(config)
  assert data_lib.count_rows(config, "validation") == 5
  assert _row_ids(data_lib.build_dataset(config, "validation", 2)) == [
      100, 101, 102, 200, 201]
  with pytest.raises(ValueError, match="validation split is never shuffled"):
    data_lib.build_dataset(config, "validation", 2, shuffle=True)
  del val_a, val_b


def test_no_validation_split_by_default(tmp_path):
  train = write_lines(str(tmp_path / "train.tsv"), small_criteo_rows(4))
  config = _config(**{"data.train_files": train, "data.eval_files": train})
  assert not data_lib.has_validation(config)
  with pytest.raises(data_lib.DataError, match="no validation split"):
    data_lib.build_dataset(config, "validation", 2)
  with pytest.raises(data_lib.DataError, match="no validation split"):
    data_lib.count_rows(config, "validation")
  assert data_lib.count_rows(config, "train") == 4
