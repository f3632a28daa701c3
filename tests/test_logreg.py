"""Logistic regression (``recsys_smelu.logreg``) against scikit-learn.

Both models see the identical features: the data pipeline's hashed bucket
ids (one-hot per feature) and transformed dense features. Each chooses its
regularization on the same validation rows; the eval log losses must agree
within 0.002.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu import logreg
from recsys_smelu import train as train_lib
from recsys_smelu import twin

NUM_DENSE, NUM_CATEGORICAL, NUM_BUCKETS = 3, 4, 40
SKLEARN_C = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
  """Train rows, and a generated eval split cut into validation and eval."""
  from recsys_smelu.data import synthetic  # pylint: disable=g-import-not-at-top
  out = str(tmp_path_factory.mktemp("logreg_data"))
  synthetic.generate(out, num_train=4000, num_eval=3000, seed=7,
                     num_dense=NUM_DENSE, num_categorical=NUM_CATEGORICAL,
                     max_cardinality=25, linear_share=1.0)
  with open(os.path.join(out, "eval-00000-of-00001.tsv")) as f:
    lines = f.readlines()
  paths = {}
  for name, part in (("validation", lines[:1500]), ("test", lines[1500:])):
    paths[name] = os.path.join(out, f"{name}.tsv")
    with open(paths[name], "w") as f:
      f.writelines(part)
  paths["train"] = os.path.join(out, "train-00000-of-00001.tsv")
  return paths


def base_config(files, **changes):
  values = {
      "data.train_files": files["train"], "data.eval_files": files["test"],
      "data.validation_files": files["validation"],
      "data.num_dense": NUM_DENSE, "data.num_categorical": NUM_CATEGORICAL,
      "data.num_buckets": NUM_BUCKETS, "data.shuffle_buffer": 4000,
      "train.batch_size": 100, "train.steps": 400,
      "train.checkpoint_every": 400, "train.log_every": 400,
  }
  values.update(changes)
  return config_lib.override(config_lib.default_config(), values)


def test_design_matrix_is_the_one_hot_ids_and_dense_features(data_files):
  """Hand-checked against the pipeline's own batches of the same rows."""
  config = base_config(data_files)
  x, y = logreg.design_matrix(config, "validation")
  assert x.shape == (1500, NUM_CATEGORICAL * NUM_BUCKETS + NUM_DENSE)
  features, label = next(iter(data_lib.build_dataset(config, "validation",
                                                     1500)))
  np.testing.assert_array_equal(y, label.numpy().reshape(-1))
  one_hot = x[:, :NUM_CATEGORICAL * NUM_BUCKETS].toarray()
  for k in range(NUM_CATEGORICAL):
    block = one_hot[:, k * NUM_BUCKETS:(k + 1) * NUM_BUCKETS]
    np.testing.assert_array_equal(block.sum(axis=1), 1.0)
    ids = features[data_lib.features.SPARSE_KEY][f"C{k + 1}"].numpy()
    np.testing.assert_array_equal(block.argmax(axis=1), ids)
  np.testing.assert_allclose(
      x[:, NUM_CATEGORICAL * NUM_BUCKETS:].toarray(),
      features[data_lib.features.DENSE_KEY].numpy(), rtol=1e-6)
  # The train split is read whole, in file order, its short last batch kept.
  x_train, y_train = logreg.design_matrix(config, "train")
  assert x_train.shape[0] == len(y_train) == 4000


def test_sklearn_reference_rejects_a_bad_grid(data_files):
  with pytest.raises(ValueError, match="C values must be > 0"):
    logreg.sklearn_reference(base_config(data_files), c_grid=(0.1, 0.0))


@pytest.mark.slow
def test_logreg_matches_sklearn_on_identical_hashed_features(data_files,
                                                             tmp_path):
  config = base_config(data_files)
  work_dir = str(tmp_path / "select")
  validation = data_lib.build_dataset(config, "validation", 1000)
  selection = logreg.select(config, validation, l2_grid=(1e-4, 1e-3, 1e-2),
                            learning_rates=(0.1, 0.3), work_dir=work_dir)
  assert len(selection.grid) == 6
  assert selection.validation_logloss == min(
      p["validation_logloss"] for p in selection.grid)
  best = logreg.logreg_config(config, selection.l2, selection.learning_rate)
  result = train_lib.train(
      best, logreg.point_dir(work_dir, selection.l2, selection.learning_rate),
      mode="eval")
  ours = result.eval_metrics["logloss"]
  reference = logreg.sklearn_reference(config, SKLEARN_C)["eval_logloss"]
  print(f"logreg eval log loss {ours:.5f} (l2={selection.l2:g}, "
        f"lr={selection.learning_rate:g}); sklearn {reference:.5f}")
  assert abs(ours - reference) < 0.002, (ours, reference, selection.grid)


def test_logreg_is_a_built_in_twin_variant_and_linear_an_activation():
  variants = twin.variants_from_flags("relu,logreg,linear", [], {},
                                      config_lib.default_config())
  assert [v.name for v in variants] == ["relu", "logreg", "linear"]
  assert variants[1].changes == logreg.MODEL_CHANGES
  assert variants[2].changes == {"model.activation": "linear"}


def test_logreg_variant_needs_validation_data(tmp_path):
  config = config_lib.default_config()
  with pytest.raises(config_lib.ConfigError, match="data.validation_files"):
    twin.select_on_validation(config, twin.parse_variant("logreg"),
                              str(tmp_path))


def test_select_rejects_an_empty_or_bad_grid(data_files):
  config = base_config(data_files)
  with pytest.raises(ValueError, match="at least one"):
    logreg.select(config, None, l2_grid=())
  with pytest.raises(ValueError, match="learning rates > 0"):
    logreg.select(config, None, learning_rates=(0.0,))


@pytest.mark.slow
def test_twin_trains_logreg_at_the_point_chosen_on_validation(
    data_files, tmp_path, monkeypatch):
  monkeypatch.setattr(logreg, "L2_GRID", (1e-4, 1e-2))
  monkeypatch.setattr(logreg, "LEARNING_RATES", (0.3,))
  config = base_config(data_files, **{"train.steps": 100,
                                      "train.checkpoint_every": 100})
  out = str(tmp_path / "twin")
  variant = twin.parse_variant("logreg")
  results, failures = twin.evaluate_variants(
      config, out, [variant], num_models=2, vary=("data_order",))
  assert not failures
  with open(os.path.join(out, "runs", "logreg", twin.SELECTION_FILE)) as f:
    selection = json.load(f)
  assert [p["l2"] for p in selection["grid"]] == [1e-4, 1e-2]
  assert selection["validation_logloss"] == min(
      p["validation_logloss"] for p in selection["grid"])
  for i in range(2):
    run = config_lib.load(os.path.join(out, "runs", "logreg", str(i)))
    assert run.model.embedding_l2 == selection["l2"]
    assert run.train.learning_rate == selection["learning_rate"]
    assert not run.model.deep and run.model.wide
  (entry,) = results["variants"]
  assert entry["name"] == "logreg"
  # The report reuses the saved choice instead of choosing again.
  monkeypatch.setattr(logreg, "select", None)
  again, _ = twin.evaluate_variants(config, out, [variant], num_models=2,
                                    vary=("data_order",), mode="report")
  assert again["variants"][0]["name"] == "logreg"
