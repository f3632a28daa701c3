"""The tabular formats through the config: data.* role keys, their
validation, and ``data.build_schema`` / ``build_dataset`` / ``count_rows``
dispatching to ``data.tabular`` (csv equal to tsv with a header, the
FeatureSchema carrying the dense transform and statistics)."""

from __future__ import annotations

import numpy as np
import pytest

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
  for changes, key in (({"data.train_rows": "0:10"}, "data.train_rows"),
                       ({"data.validation_fraction": 0.1},
                        "data.validation_fraction")):
    with pytest.raises(config_lib.ConfigError,
                       match=f"'{key}' is not supported for data.format="
                       "'csv'"):
      config_lib.validate(config_lib.override(config, changes))
