"""The tabular formats through the config: data.* role keys, their
validation, and ``data.build_schema`` / ``build_dataset`` / ``count_rows``
dispatching to ``data.tabular`` (csv equal to tsv with a header, the
FeatureSchema carrying the dense transform and statistics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu.data import features
from recsys_smelu.data.pipeline import DataError

from tabular_samples import avazu_config_changes, CATEGORICAL, DENSE
from tabular_samples import write_avazu


def _config(tmp_path, file_format="csv", with_dense=False, **extra):
  delimiter = "\t" if file_format == "tsv" else ","
  suffix = "tsv" if file_format == "tsv" else "csv"
  train = write_avazu(str(tmp_path / f"train.{suffix}"), 120, 0,
                      with_dense=with_dense, delimiter=delimiter)
  evaluation = write_avazu(str(tmp_path / f"eval.{suffix}"), 50, 1,
                           with_dense=with_dense, delimiter=delimiter)
  changes = avazu_config_changes(train, evaluation, with_dense=with_dense,
                                 file_format=file_format)
  changes.update({"data.num_buckets": 100, "model.embedding_dim": 4,
                  "model.bottom_mlp": [8, 4]})
  changes.update(extra)
  return config_lib.override(config_lib.default_config(), changes)


@pytest.mark.parametrize("changes, message", [
    ({"data.header": False}, "'data.header' must be true"),
    ({"data.label_column": ""}, "'data.label_column' is empty"),
    ({"data.num_categorical": 5}, "'data.num_categorical' is 5 but "
                                  "'data.categorical_columns' names 8"),
    ({"data.num_dense": 2}, "'data.num_dense' is 2"),
    ({"data.categorical_columns": "hour,site id"},
     "column 'site id' cannot be a serving signature input key"),
    ({"data.dense_columns": "_price"}, "'_price' cannot be a serving"),
    ({"data.dense_transform": "zscore"}, "'data.dense_transform'"),
    ({"data.vocab_min_count": 0}, "'data.vocab_min_count' must be >= 1"),
])
def test_bad_tabular_keys_are_config_errors_naming_the_key(tmp_path, changes,
                                                           message):
  config = config_lib.override(_config(tmp_path), changes)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


def test_role_counts_equal_to_num_keys_are_accepted(tmp_path):
  config = _config(tmp_path, with_dense=True,
                   **{"data.num_dense": len(DENSE),
                      "data.num_categorical": len(CATEGORICAL)})
  config_lib.validate(config)


def test_role_keys_on_criteo_tsv_are_config_errors(tmp_path):
  config = config_lib.override(config_lib.default_config(),
                               {"data.label_column": "click"})
  with pytest.raises(config_lib.ConfigError,
                     match="'data.label_column' is set but data.format='tsv'"):
    config_lib.validate(config, check_paths=False)
  config = config_lib.override(config_lib.default_config(),
                               {"data.dense_transform": "standardize"})
  with pytest.raises(config_lib.ConfigError, match="always uses log1p_clip0"):
    config_lib.validate(config, check_paths=False)


def test_criteo_schema_is_unchanged_by_the_new_keys():
  schema = data_lib.build_schema(config_lib.default_config())
  assert schema == features.criteo_schema(10_000, 8, 13, 26)
  assert schema.dense_transform == "log1p_clip0"
  assert schema.dense_mean == () and schema.dense_std == ()


def test_csv_config_builds_the_named_schema_and_equals_tsv_with_header(
    tmp_path):
  csv_config = _config(tmp_path / "csv", with_dense=True,
                       **{"data.dense_transform": "standardize"})
  tsv_config = _config(tmp_path / "tsv", "tsv", with_dense=True,
                       **{"data.dense_transform": "standardize"})
  config_lib.validate(csv_config)
  config_lib.validate(tsv_config)
  schema = data_lib.build_schema(csv_config)
  assert schema.dense == DENSE
  assert schema.categorical_names == CATEGORICAL
  assert schema.label == "click"
  assert schema.dense_transform == "standardize"
  assert len(schema.dense_mean) == 2 and all(s > 0 for s in schema.dense_std)
  assert {f.name: f.num_buckets for f in schema.categorical}["device_ip"] == (
      50_000)
  assert schema == data_lib.build_schema(tsv_config)
  assert data_lib.count_rows(csv_config, "train") == 120
  assert data_lib.count_rows(tsv_config, "eval") == 50

  def batches(config):
    out = []
    for features_batch, label in data_lib.build_dataset(config, "eval", 16):
      out.append((features_batch["dense_features"].numpy(),
                  {k: v.numpy() for k, v in
                   features_batch["sparse_features"].items()},
                  label.numpy()))
    return out

  csv_batches, tsv_batches = batches(csv_config), batches(tsv_config)
  assert sum(len(b[2]) for b in csv_batches) == 50
  for (d1, s1, l1), (d2, s2, l2) in zip(csv_batches, tsv_batches):
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(l1, l2)
    for name in CATEGORICAL:
      np.testing.assert_array_equal(s1[name], s2[name])
  # The standardized training columns have mean ~0 over the training rows.
  train_dense = np.concatenate([
      f["dense_features"].numpy() for f, _ in data_lib.build_dataset(
          csv_config, "train", 40, shuffle=False)])
  assert np.all(np.abs(train_dense.mean(0)) < 0.2)


def test_schema_file_roles_must_match_the_config(tmp_path):
  config = _config(tmp_path)
  schema = data_lib.tabular_schema(config)
  path = data_lib.tabular.save_schema(schema, str(tmp_path / "schema.json"))
  reused = config_lib.override(config, {"data.schema_file": path})
  assert data_lib.build_schema(reused) == schema.features
  changed = config_lib.override(reused, {"data.num_buckets": 77})
  with pytest.raises(DataError, match="'data.num_buckets' is 77 but the "
                     "run's schema was built with 100"):
    data_lib.build_schema(changed)


def test_the_avazu_example_config_reads_an_avazu_shaped_file(tmp_path):
  """configs/avazu_example.py on a generated file with Avazu's 24 columns."""
  import os  # pylint: disable=g-import-not-at-top
  from conftest import REPO_ROOT  # pylint: disable=g-import-not-at-top
  module = config_lib.load_config_module(
      os.path.join(REPO_ROOT, "configs", "avazu_example.py"))
  rng = np.random.default_rng(0)
  header = ["id", "click", *module.CATEGORICAL]
  lines = [",".join(header)]
  for i in range(40):
    values = [str(10**19 + i), str(int(rng.random() < 0.2)),
              str(14102100 + i % 24)]
    values += [f"{int(rng.integers(0, 2**32)):08x}"
               for _ in module.CATEGORICAL[1:]]
    lines.append(",".join(values))
  path = tmp_path / "avazu.csv"
  path.write_text("\n".join(lines) + "\n")
  config = config_lib.override(module.get_config(), {
      "data.train_files": str(path), "data.eval_files": str(path)})
  config_lib.validate(config)
  schema = data_lib.build_schema(config)
  assert schema.dense == () and len(schema.categorical) == 22
  features_batch, label = next(iter(data_lib.build_dataset(config, "eval",
                                                           40)))
  assert features_batch["dense_features"].shape == (40, 0)
  assert label.shape == (40,)
  assert features_batch["sparse_features"]["device_ip"].numpy().max() < 10**6


def test_csv_validation_files_split_and_refused_row_ranges(tmp_path):
  config = _config(tmp_path)
  validation = write_avazu(str(tmp_path / "validation.csv"), 30, 2)
  with_validation = config_lib.override(
      config, {"data.validation_files": validation})
  config_lib.validate(with_validation)
  assert data_lib.check_splits(with_validation) == {
      "train": 120, "validation": 30, "eval": 50}
  labels = np.concatenate([label.numpy() for _, label in
                           data_lib.build_dataset(with_validation,
                                                  "validation", 8)])
  assert len(labels) == 30
  with pytest.raises(DataError, match="no validation split"):
    data_lib.build_dataset(config, "validation", 8)


# --- row ranges and validation_fraction (recsys_smelu.data.splits) ---------
# The id column is read as a dense column without transform, so each example
# names the row it came from; pandas reads the same files for the expected
# rows.


def _split_config(tmp_path, file_format="csv", **changes):
  """Two files, listed b first: b holds ids 1000..1019, a ids 0..29 (50
  rows in pattern order)."""
  delimiter = "\t" if file_format == "tsv" else ","
  a = write_avazu(str(tmp_path / f"a.{file_format}"), 30, 0,
                  delimiter=delimiter)
  b = write_avazu(str(tmp_path / f"b.{file_format}"), 20, 1,
                  delimiter=delimiter, start_id=1000)
  base = avazu_config_changes(f"{b},{a}", "", file_format=file_format)
  base.update({"data.ignore_columns": "", "data.dense_columns": "id",
               "data.dense_transform": "none", "data.num_buckets": 100,
               "data.shuffle_buffer": 0, "model.embedding_dim": 4,
               "model.bottom_mlp": [8, 4]})
  base.update(changes)
  return config_lib.validate(config_lib.override(config_lib.default_config(),
                                                 base))


def _pandas_rows(config):
  """The training files concatenated in pattern order, as pandas reads them,
  with each row's file base name and line number (header = line 1)."""
  frames = []
  for path in data_lib.expand_patterns(config.data.train_files):
    frame = pd.read_csv(path, sep=config.data.delimiter or None,
                        engine="python", dtype=str, keep_default_na=False)
    frame["file"] = path.rsplit("/", 1)[-1]
    frame["line"] = np.arange(len(frame)) + 2
    frames.append(frame)
  return pd.concat(frames, ignore_index=True)


def _ids_labels(config, split, batch_size=7, **kwargs):
  """(ids, labels) of the split's examples in order; the train split in
  batches of 1, so no remainder is dropped."""
  if split == "train":
    batch_size = 1
  ids, labels = [], []
  for batch, label in data_lib.build_dataset(config, split, batch_size,
                                             **kwargs):
    ids.append(batch["dense_features"].numpy()[:, 0])
    labels.append(label.numpy())
  if not ids:
    return [], []
  return (np.concatenate(ids).astype(int).tolist(),
          np.concatenate(labels).astype(int).tolist())


def _expected(frame):
  return (frame["id"].astype(int).tolist(),
          frame["click"].astype(int).tolist())


@pytest.mark.parametrize("file_format", ["csv", "tsv"])
def test_row_ranges_and_tail_validation_are_the_pandas_rows(tmp_path,
                                                            file_format):
  config = _split_config(tmp_path, file_format, **{
      "data.train_rows": "5:40", "data.eval_rows": "40:",
      "data.validation_fraction": 0.2})
  rows = _pandas_rows(config)
  # train_rows 5:40 = 35 rows; the tail is the last ceil(0.2 * 35) = 7.
  assert _ids_labels(config, "train", shuffle=False) == _expected(
      rows.iloc[5:33])
  assert _ids_labels(config, "validation") == _expected(rows.iloc[33:40])
  assert _ids_labels(config, "eval") == _expected(rows.iloc[40:])
  assert data_lib.check_splits(config) == {"train": 28, "validation": 7,
                                           "eval": 10}
  assert data_lib.count_rows(config, "validation") == 7
  # The tail crosses from b into a: ids 1000..1019 then 0..29.
  assert _ids_labels(config, "train", shuffle=False)[0][:2] == [1005, 1006]
  assert _ids_labels(config, "validation")[0][0] == 13
  shuffled = _ids_labels(config_lib.override(config, {
      "data.shuffle_buffer": 100}), "train", seed=1, shuffle=True)[0]
  assert shuffled != _expected(rows.iloc[5:33])[0]
  assert sorted(shuffled) == sorted(_expected(rows.iloc[5:33])[0])


def test_hash_validation_is_the_fingerprint_of_file_and_line(tmp_path):
  config = _split_config(tmp_path, **{"data.validation_fraction": 0.4,
                                      "data.validation_split": "hash",
                                      "data.train_rows": ":45",
                                      "data.eval_rows": "45:"})
  rows = _pandas_rows(config)
  keys = tf.constant([f"{f}:{line}" for f, line in zip(rows["file"],
                                                       rows["line"])])
  below = tf.strings.to_hash_bucket_fast(keys, 2**32).numpy() < int(
      0.4 * 2**32)
  within = np.arange(len(rows)) < 45
  validation = _ids_labels(config, "validation")
  assert validation == _expected(rows[below & within])
  assert _ids_labels(config, "train", shuffle=False) == _expected(
      rows[~below & within])
  assert 5 < len(validation[0]) < 40
  assert data_lib.count_rows(config, "validation") == len(validation[0])
  assert _ids_labels(config, "eval") == _expected(rows.iloc[45:])
  # Line shards (one file) see every train row once.
  one_file = config_lib.override(config, {
      "data.train_files": str(tmp_path / "a.csv"), "data.train_rows": "",
      "data.eval_rows": "", "data.eval_files": str(tmp_path / "b.csv")})
  a_rows = rows[rows["file"] == "a.csv"]
  a_below = below[(rows["file"] == "a.csv").to_numpy()]
  shards = [_ids_labels(one_file, "train", 1, shuffle=False,
                        input_context=tf.distribute.InputContext(2, i, 1))[0]
            for i in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == sorted(
      a_rows[~a_below]["id"].astype(int).tolist())


def test_tail_shards_by_files_and_lines_keep_exactly_the_train_rows(tmp_path):
  config = _split_config(tmp_path, **{"data.validation_fraction": 0.3,
                                      "data.shuffle_buffer": 0,
                                      "data.eval_files": str(tmp_path /
                                                             "a.csv")})
  rows = _pandas_rows(config)
  expected = sorted(rows.iloc[:35]["id"].astype(int).tolist())
  for pattern, train in ((config.data.train_files, expected),
                         (str(tmp_path / "a.csv"), list(range(21)))):
    sharded = config_lib.override(config, {"data.train_files": pattern})
    shards = [_ids_labels(sharded, "train", 1, shuffle=False,
                          input_context=tf.distribute.InputContext(2, i, 1))[0]
              for i in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == train


def test_schema_statistics_and_vocabularies_come_from_the_train_rows(
    tmp_path):
  config = _split_config(tmp_path, **{
      "data.dense_transform": "standardize", "data.train_rows": ":30",
      "data.eval_rows": "30:", "data.validation_fraction": 0.5,
      "data.vocabulary_columns": "site_category"})
  rows = _pandas_rows(config).iloc[:15]  # the train rows: 30 less the tail
  schema = data_lib.tabular_schema(config)
  ids = rows["id"].astype(np.float64)  # integers: exact in float32 too
  assert schema.dense_mean == (pytest.approx(float(ids.mean()), abs=1e-9),)
  assert schema.dense_std == (pytest.approx(float(ids.std(ddof=0)),
                                            rel=1e-9),)
  assert sorted(schema.features.categorical[4].vocabulary) == sorted(
      set(rows["site_category"]))


def test_bad_rows_are_named_by_their_file_line_in_the_split_reading_them(
    tmp_path):
  config = _split_config(tmp_path, **{"data.validation_fraction": 0.1,
                                      "data.train_files": str(tmp_path /
                                                              "a.csv"),
                                      "data.eval_files": str(tmp_path /
                                                             "b.csv")})
  path = config.data.train_files
  with open(path) as f:
    lines = f.read().splitlines()
  fields = lines[29].split(",")  # data row 28 (0-based), on line 30
  fields[1] = "7"
  lines[29] = ",".join(fields)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  # ceil(0.1 * 30) = 3: rows 27..29 (lines 29..31) are validation.
  assert _ids_labels(config, "train", shuffle=False)[0] == list(range(27))
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _ids_labels(config, "validation")
  assert f"{path}:30: bad row (label" in str(data_lib.bad_row_error(
      error.value))


@pytest.mark.parametrize("changes,match", [
    ({"data.train_rows": "0:51"},
     r"'data.train_rows' is '0:51', outside the rows of data.train_files .*"
     r"hold 50 rows \(0:50\)"),
    ({"data.eval_rows": "45:60", "data.train_rows": ":45"},
     r"'data.eval_rows' is '45:60', outside the rows of the training files.*"
     r"50 rows"),
    ({"data.eval_rows": "40:", "data.train_rows": ":45"},
     r"'data.eval_rows' is '40:' \(rows 40:50 of the training files\), which "
     r"overlaps the training rows 0:45"),
    ({"data.validation_fraction": 1e-9, "data.validation_split": "hash",
      "data.eval_rows": "45:", "data.train_rows": ":45"},
     r"'data.validation_fraction': the validation split is empty \(1e-09 "
     r"with data.validation_split='hash' selects no rows of the 45 training "
     r"rows\)"),
])
def test_row_range_and_empty_split_errors_name_the_key(tmp_path, changes,
                                                       match):
  config = _split_config(tmp_path, **{"data.eval_files":
                                      str(tmp_path / "a.csv"), **changes})
  if "data.eval_rows" in changes:
    config = config_lib.override(config, {"data.eval_files": ""})
  with pytest.raises(config_lib.ConfigError, match=match):
    data_lib.check_splits(config)


@pytest.mark.parametrize("changes,match", [
    ({"data.categorical_columns": ",".join(CATEGORICAL[:-1]) + ",device_mdl"},
     r"train.csv: data.categorical_columns names column 'device_mdl', which "
     r"is not in the header \(did you mean 'device_model'\?\)"),
    ({"data.dense_columns": "hour"},
     r"column 'hour' is in two roles: data.dense_columns and "
     r"data.categorical_columns"),
    ({"data.categorical_columns": ",".join(CATEGORICAL[:-1])},
     r"train.csv: header column 'device_model' is in no role"),
    ({"data.num_buckets_per_column": "site_id=1e5"},
     r"config key 'data.num_buckets_per_column': bad entry 'site_id=1e5', the "
     r"bucket count must be a positive integer"),
    ({"data.num_buckets_per_column": "site=100"},
     r"config key 'data.num_buckets_per_column': 'site' is not in "
     r"data.categorical_columns"),
])
def test_bad_roles_through_the_config_name_file_column_and_key(
    tmp_path, changes, match):
  config = config_lib.override(_config(tmp_path), changes)
  with pytest.raises(DataError, match=match):
    data_lib.build_schema(config)


def test_headers_that_differ_between_training_files_name_both(tmp_path):
  config = _config(tmp_path)
  other = tmp_path / "other.csv"
  with open(config.data.train_files) as f:
    lines = f.read().splitlines()
  lines[0] = lines[0].replace("site_id,site_category", "site_category,site_id")
  other.write_text("\n".join(lines) + "\n")
  both = config_lib.override(config, {
      "data.train_files": f"{config.data.train_files},{other}"})
  with pytest.raises(DataError, match=f"{other}: header differs from "
                     f"{config.data.train_files}'s"):
    data_lib.build_schema(both)
