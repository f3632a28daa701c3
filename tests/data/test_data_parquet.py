"""Parquet by column roles (data.format='parquet'): equal to the csv of the
same rows, row-group sharding, column types and bad rows."""

from __future__ import annotations

import numpy as np
import pytest

pa = pytest.importorskip(
    "pyarrow", reason="pyarrow is not installed (pip install "
    "'recsys-smelu[parquet]')")
import pandas as pd  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from recsys_smelu import config as config_lib  # pylint: disable=wrong-import-position
from recsys_smelu import data as data_lib  # pylint: disable=wrong-import-position
from recsys_smelu.data import parquet  # pylint: disable=wrong-import-position
from recsys_smelu.data.pipeline import BadRowCounter  # pylint: disable=wrong-import-position
from recsys_smelu.data.pipeline import DataError  # pylint: disable=wrong-import-position

from tabular_samples import avazu_config_changes, DENSE, write_avazu  # pylint: disable=wrong-import-position,g-multiple-import


def _parquet_of_csv(csv_path, parquet_path, row_group_size=100):
  """The csv's rows as Parquet with typed columns: integer id and label,
  float dense (null = missing), categorical text."""
  frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
  frame["id"] = frame["id"].astype("int64")
  frame["click"] = frame["click"].astype("int64")
  for name in DENSE:
    frame[name] = pd.to_numeric(frame[name].replace("", np.nan))
  frame.to_parquet(parquet_path, row_group_size=row_group_size)
  return str(parquet_path)


def _configs(tmp_path, num_rows=450):
  csv_path = write_avazu(str(tmp_path / "train.csv"), num_rows, 0,
                         with_dense=True)
  parquet_path = _parquet_of_csv(csv_path, tmp_path / "train.parquet")
  changes = avazu_config_changes(csv_path, csv_path, with_dense=True)
  changes.update({"data.dense_transform": "standardize",
                  "data.vocabulary_columns": "site_category",
                  "data.num_buckets": 1000})
  csv_config = config_lib.override(config_lib.default_config(), changes)
  parquet_config = config_lib.override(csv_config, {
      "data.format": "parquet", "data.header": False,
      "data.train_files": parquet_path, "data.eval_files": parquet_path})
  config_lib.validate(parquet_config)
  return csv_config, parquet_config


def _rows(config, split="eval", batch_size=64, **kwargs):
  schema = data_lib.build_schema(config)
  out = []
  for batch, label in data_lib.build_dataset(config, split, batch_size,
                                             **kwargs):
    out.append(np.concatenate(
        [batch["dense_features"].numpy().view(np.int32)]
        + [batch["sparse_features"][n].numpy()[:, None]
           for n in schema.categorical_names]
        + [label.numpy().view(np.int32)[:, None]], axis=1))
  return np.concatenate(out)


def test_parquet_equals_csv_schema_statistics_and_rows(tmp_path):
  csv_config, parquet_config = _configs(tmp_path)
  assert data_lib.tabular_schema(parquet_config).features == (
      data_lib.tabular_schema(csv_config).features)
  assert data_lib.count_rows(parquet_config, "train") == 450
  np.testing.assert_array_equal(_rows(parquet_config), _rows(csv_config))
  # Training order: seeded, every row once per epoch.
  train = _rows(parquet_config, "train", seed=3, shuffle=True)
  again = _rows(parquet_config, "train", seed=3, shuffle=True)
  np.testing.assert_array_equal(train, again)
  assert len(train) == 448  # 7 full batches of 64
  assert not np.array_equal(train, _rows(csv_config, "train", shuffle=False)[
      :448])


def test_row_group_shards_are_disjoint_and_cover_the_files(tmp_path):
  _, parquet_config = _configs(tmp_path)
  schema = data_lib.tabular_schema(parquet_config)
  files = [parquet_config.data.train_files]
  ids = []  # rows per shard
  for index in range(3):
    dataset = parquet.make_dataset(files, schema, 1000, training=False,
                                   shuffle=False, num_shards=3,
                                   shard_index=index)
    shard = np.concatenate([label.numpy() for _, label in dataset])
    ids.append(len(shard))
  # Row groups of 100, 100, 100, 100, 50 rows: groups 0+3, 1+4, 2.
  assert ids == [200, 150, 100]
  with pytest.raises(DataError, match="row groups cannot feed 6"):
    parquet.make_dataset(files, schema, 10, training=False, shuffle=False,
                         num_shards=6, shard_index=5)


def test_a_column_of_the_wrong_type_names_file_and_column(tmp_path):
  csv_config, _ = _configs(tmp_path, 50)
  frame = pd.read_csv(csv_config.data.train_files, dtype=str,
                      keep_default_na=False)
  frame["click"] = frame["click"].astype("int64")
  path = str(tmp_path / "typed.parquet")
  frame.to_parquet(path)  # price and dwell are strings
  config = config_lib.override(csv_config, {
      "data.format": "parquet", "data.header": False,
      "data.train_files": path, "data.eval_files": path,
      "data.dense_transform": "none", "data.vocabulary_columns": ""})
  with pytest.raises(DataError, match=r"typed.parquet: dense column 'price' "
                     r"has Parquet type (large_)?string, expected integer or floating"):
    data_lib.build_schema(config)


def test_bad_labels_are_bad_rows_named_by_file_and_row(tmp_path):
  frame = pd.DataFrame({"click": [0.0, 1.0, 2.0, None, 1.0],
                        "site": ["a", "b", "c", "d", "e"]})
  path = str(tmp_path / "bad.parquet")
  frame.to_parquet(path)
  config = config_lib.override(config_lib.default_config(), {
      "data.format": "parquet", "data.train_files": path,
      "data.eval_files": path, "data.label_column": "click",
      "data.categorical_columns": "site", "data.num_buckets": 10})
  with pytest.raises(Exception) as error:
    list(data_lib.build_dataset(config, "eval", 8))
  message = str(data_lib.bad_row_error(error.value))
  assert "bad.parquet:3: bad row (label: label column click is [2]" in message
  bad_rows = BadRowCounter()
  skipped = config_lib.override(config, {"data.on_bad_row": "skip"})
  labels = np.concatenate([label.numpy() for _, label in
                           data_lib.build_dataset(skipped, "eval", 8,
                                                  bad_rows=bad_rows)])
  np.testing.assert_array_equal(labels, [0.0, 1.0, 1.0])
  assert bad_rows.by_reason()["label"] == 2
  assert "bad.parquet:4: bad row (label: label column click is [null]" in (
      " ".join(bad_rows.examples))


def test_row_ranges_and_validation_tail_are_the_csv_rows(tmp_path):
  """Rows counted from the row-group metadata (groups of 100): a range
  cutting row groups reads the same rows as the csv; row groups wholly
  outside it are not read, and a bad row outside it is not the split's."""
  csv_config, parquet_config = _configs(tmp_path)
  ranges = {"data.train_rows": "130:420", "data.eval_rows": "420:",
            "data.eval_files": "", "data.validation_fraction": 0.25}
  csv_split = config_lib.override(csv_config, ranges)
  parquet_split = config_lib.override(parquet_config, ranges)
  # 290 train rows: the last ceil(0.25 * 290) = 73 are validation.
  assert data_lib.check_splits(parquet_split) == {
      "train": 217, "validation": 73, "eval": 30}
  assert data_lib.check_splits(csv_split) == data_lib.check_splits(
      parquet_split)
  assert data_lib.tabular_schema(parquet_split).features == (
      data_lib.tabular_schema(csv_split).features)
  for split in ("validation", "eval"):
    np.testing.assert_array_equal(_rows(parquet_split, split),
                                  _rows(csv_split, split))
  np.testing.assert_array_equal(
      _rows(parquet_split, "train", shuffle=False),
      _rows(csv_split, "train", shuffle=False))
  from recsys_smelu.data import splits  # pylint: disable=g-import-not-at-top
  selector = splits.split_rows(parquet_split, "validation", parquet.row_counter(
      data_lib.tabular_spec(parquet_split))).selector
  _, units = parquet.check_files([parquet_config.data.train_files],
                                 data_lib.tabular_spec(parquet_split))
  # Validation = rows 347..419 (lines 348..420): row groups 3 and 4.
  assert [u[1] for u in parquet._select_units(units, selector)] == [3, 4]  # pylint: disable=protected-access
  # A bad label in row group 0 (outside train_rows) is never read.
  frame = pd.read_parquet(parquet_config.data.train_files)
  frame.loc[10, "click"] = 5
  frame.to_parquet(parquet_config.data.train_files, row_group_size=100)
  assert len(_rows(parquet_split, "validation")) == 73
  with pytest.raises(config_lib.ConfigError,
                     match=r"'data.train_rows' is '130:451', outside the rows "
                     r"of data.train_files .* hold 450 rows"):
    data_lib.check_splits(config_lib.override(parquet_split, {
        "data.train_rows": "130:451"}))


def test_hash_validation_is_the_fingerprint_of_file_and_row(tmp_path):
  _, parquet_config = _configs(tmp_path, 200)
  config = config_lib.override(parquet_config, {
      "data.validation_fraction": 0.3, "data.validation_split": "hash",
      "data.dense_transform": "none", "data.vocabulary_columns": ""})
  keys = tf.constant([f"train.parquet:{row}" for row in range(1, 201)])
  below = tf.strings.to_hash_bucket_fast(keys, 2**32).numpy() < int(
      0.3 * 2**32)
  everything = _rows(config, "eval")
  np.testing.assert_array_equal(_rows(config, "validation"),
                                everything[below])
  np.testing.assert_array_equal(_rows(config, "train", batch_size=1,
                                      shuffle=False), everything[~below])
  assert data_lib.count_rows(config, "validation") == int(below.sum())


def test_role_columns_and_headers_are_checked_against_each_file(tmp_path):
  """A role column missing from a file's schema, a column in no role and
  files with other columns are errors naming the file and the column."""
  _, parquet_config = _configs(tmp_path, 60)
  path = parquet_config.data.train_files
  frame = pd.read_parquet(path)
  renamed = str(tmp_path / "renamed.parquet")
  frame.rename(columns={"site_id": "site"}).to_parquet(renamed)
  with pytest.raises(DataError, match=r"renamed.parquet: "
                     r"data.categorical_columns names column 'site_id', "
                     r"which is not in the header"):
    data_lib.build_schema(config_lib.override(parquet_config, {
        "data.train_files": renamed}))
  extra = str(tmp_path / "extra.parquet")
  frame.assign(weight=1.0).to_parquet(extra)
  with pytest.raises(DataError, match=r"extra.parquet: header column 'weight'"
                     r" is in no role"):
    data_lib.build_schema(config_lib.override(parquet_config, {
        "data.train_files": extra}))
  with pytest.raises(DataError, match=r"extra.parquet: header differs from "
                     r".*train.parquet's"):
    data_lib.build_schema(config_lib.override(parquet_config, {
        "data.train_files": f"{path},{extra}"}))
