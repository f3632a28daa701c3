"""Regularization (model.embedding_l2, model.dense_l2) and the wide part
(model.wide, model.deep=false): values against hand computations, gradients,
structure, bad configs."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import models
import tensorflow as tf

from test_models_ctr import SCHEMA, first_batch, make_config, random_batches, trainable_model


def table(model, name):
  """The embedding table variable ``<model>/embedding/<name>``."""
  (variable,) = [v for v in model.embedding.variables
                 if v.name.endswith(f"embedding/{name}:0")]
  return variable


def randomize_wide(model, seed=0):
  """Gives the (zero-initialized) wide weights random values."""
  rng = np.random.default_rng(seed)
  for v in model.embedding.variables:
    if "_wide_" in v.name:
      v.assign(rng.normal(size=v.shape).astype(np.float32))
  for tower in model.towers:
    for w in tower.wide.weights:
      w.assign(rng.normal(size=w.shape).astype(np.float32))


def test_embedding_penalty_is_frequency_weighted_and_batch_averaged():
  lam = 0.3
  config = make_config(model__embedding_l2=lam, model__wide=True,
                       model__ensemble_size=2)
  model = models.build_model(config, SCHEMA)
  features = first_batch(SCHEMA, n=8)
  model(features)
  randomize_wide(model)
  penalty = model.embedding_penalty(model.lookup(features)).numpy()
  per_tower = []
  for i in range(2):
    total = 0.0
    for f in SCHEMA.categorical_names:
      ids = features["sparse_features"][f]
      for kind in ("", "wide_"):
        rows = table(model, f"tower_{i}_{kind}{f}").numpy()[ids]
        total += float(np.sum(rows.astype(np.float64) ** 2))
    per_tower.append(lam * total / 8)  # B = 8 examples
  np.testing.assert_allclose(penalty, np.mean(per_tower), rtol=1e-5)
  assert penalty > 0


def test_a_row_looked_up_twice_gets_twice_the_pull():
  lam = 0.5
  model = models.build_model(make_config(model__embedding_l2=lam), SCHEMA)
  features = first_batch(SCHEMA, n=3)
  features["sparse_features"]["C1"] = np.array([5, 5, 7], np.int32)
  model(features)
  variable = table(model, "tower_0_C1")
  with tf.GradientTape() as tape:
    penalty = model.embedding_penalty(model.lookup(features))
  gradient = tf.convert_to_tensor(tape.gradient(penalty, variable)).numpy()
  rows = variable.numpy()
  # d/de of lam * (1/B) * sum over occurrences ||e||^2 = 2 lam e / B each.
  np.testing.assert_allclose(gradient[5], 2 * (2 * lam * rows[5] / 3),
                             rtol=1e-5)
  np.testing.assert_allclose(gradient[7], 2 * lam * rows[7] / 3, rtol=1e-5)
  untouched = np.setdiff1d(np.arange(len(rows)), [5, 7])
  assert not gradient[untouched].any()


def test_dense_l2_covers_kernels_not_biases_or_norm_parameters():
  mu = 0.01
  config = make_config(model__dense_l2=mu, model__normalization="layer",
                       model__interaction="cross", model__wide=True,
                       model__activation="smelu:beta=1,trainable=true")
  model = models.build_model(config, SCHEMA)
  model(first_batch(SCHEMA))
  randomize_wide(model)
  kernels = [v for v in model.trainable_variables
             if v.name.endswith("kernel:0") and "embedding" not in v.name]
  # bottom 2, two full-rank crosses, top 1, logit, wide
  assert len(kernels) == 7
  expected = mu * sum(float(np.sum(v.numpy().astype(np.float64) ** 2))
                      for v in kernels)
  np.testing.assert_allclose(float(tf.add_n(model.losses)), expected,
                             rtol=1e-5)
  penalized = {id(v) for v in kernels}
  others = [v for v in model.trainable_variables if id(v) not in penalized]
  assert any("bias" in v.name for v in others)
  assert any("layer_norm" in v.name for v in others)
  assert any("beta" in v.name for v in others)


def test_train_step_reports_both_penalties_as_regularization_loss():
  config = make_config(model__embedding_l2=0.2, model__dense_l2=0.05)
  model = trainable_model(config)
  model.compile(optimizer=tf.keras.optimizers.SGD(0.0))
  features, labels, _ = random_batches(SCHEMA, n=32)
  model(features)
  # Before the step: the step moves the tables.
  expected = (float(tf.add_n(model.losses)) +
              float(model.embedding_penalty(model.lookup(features))))
  loss = float(model.compute_loss((features, labels)))
  logs = model.train_step((features, labels))
  np.testing.assert_allclose(float(logs["regularization_loss"]), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(float(logs["loss"]), loss, rtol=1e-6)
  np.testing.assert_allclose(float(logs["total_loss"]),
                             float(logs["loss"]) + expected, rtol=1e-6)


def test_defaults_add_no_penalty():
  model = trainable_model(make_config())
  model.compile(optimizer=tf.keras.optimizers.SGD(0.0))
  features, labels, _ = random_batches(SCHEMA, n=32)
  logs = model.train_step((features, labels))
  assert model.losses == [] and float(logs["regularization_loss"]) == 0.0
  assert model.loss_terms((features, labels))[1] is None


def test_embedding_l2_shrinks_rows_in_training():
  features, labels, dataset = random_batches(SCHEMA, n=256)
  norms = {}
  for lam in (0.0, 1.0):
    config = make_config(model__embedding_l2=lam, train__embedding_optimizer="sgd",
                         train__embedding_learning_rate=0.1)
    model = trainable_model(config)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    model.fit(dataset, epochs=3, verbose=0)
    norms[lam] = float(tf.norm(table(model, "tower_0_C1")))
  assert norms[1.0] < 0.9 * norms[0.0]


@pytest.mark.parametrize("interaction", ["dot", "cross", "concat"])
def test_wide_adds_a_linear_term_to_the_deep_logit(interaction):
  deep = models.build_model(make_config(model__interaction=interaction),
                            SCHEMA)
  wide = models.build_model(make_config(model__interaction=interaction,
                                        model__wide=True), SCHEMA)
  features = first_batch(SCHEMA, n=16)
  # Zero-initialized wide weights, same seeded deep weights: same logits.
  np.testing.assert_allclose(wide(features).numpy(), deep(features).numpy(),
                             rtol=0, atol=1e-6)
  randomize_wide(wide)
  linear = features["dense_features"] @ wide.towers[0].wide.kernel.numpy()
  for f in SCHEMA.categorical_names:
    linear += table(wide, f"tower_0_wide_{f}").numpy()[
        features["sparse_features"][f]]
  np.testing.assert_allclose(wide(features).numpy(),
                             deep(features).numpy() + linear, rtol=1e-5,
                             atol=1e-5)
  assert wide.towers[0].wide.bias is None  # the deep logit has the bias


def test_logistic_regression_is_the_wide_part_alone():
  # deep=false ignores the deep keys (a 'dot' bottom_mlp mismatch is fine).
  config = make_config(model__wide=True, model__deep=False,
                       model__bottom_mlp=[3], model__ensemble_size=2)
  model = models.build_model(config, SCHEMA)
  features = first_batch(SCHEMA, n=16)
  model(features)
  randomize_wide(model)
  assert sorted(v.name for v in model.embedding.variables) == sorted(
      f"ctr_model/embedding/tower_{i}_wide_{f}:0" for i in range(2)
      for f in SCHEMA.categorical_names)
  assert [l.name for l in model.towers[0].layers] == ["wide"]
  logits = []
  for i, tower in enumerate(model.towers):
    logit = features["dense_features"] @ tower.wide.kernel.numpy() + (
        tower.wide.bias.numpy())
    for f in SCHEMA.categorical_names:
      logit += table(model, f"tower_{i}_wide_{f}").numpy()[
          features["sparse_features"][f]]
    logits.append(logit)
  np.testing.assert_allclose(model(features).numpy(), np.mean(logits, axis=0),
                             rtol=1e-5, atol=1e-6)


def test_logistic_regression_trains():
  config = make_config(model__wide=True, model__deep=False,
                       model__embedding_l2=1e-3, model__dense_l2=1e-3)
  model = trainable_model(config)
  model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
  features, labels, dataset = random_batches(SCHEMA, n=256)
  before = float(model.compute_loss((features, labels)))
  model.fit(dataset, epochs=5, verbose=0)
  assert float(model.compute_loss((features, labels))) < before - 0.01


def test_embedding_init_stddev_scales_the_same_seeded_init():
  """Same seed, same truncated-normal draws: the tables scale exactly."""
  features = first_batch(SCHEMA, n=4)
  default = models.build_model(make_config(), SCHEMA)
  small = models.build_model(make_config(model__embedding_init_stddev=0.01),
                             SCHEMA)
  default(features)
  small(features)
  scale = 0.01 / SCHEMA.categorical[0].embedding_dim ** -0.5
  for f in SCHEMA.categorical_names:
    rows = table(default, f"tower_0_{f}").numpy()
    assert 0.3 < rows.std() < 0.6  # 1/sqrt(4), truncated
    np.testing.assert_allclose(table(small, f"tower_0_{f}").numpy(),
                               rows * scale, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("changes,key", [
    ({"model.embedding_init_stddev": -0.1}, "model.embedding_init_stddev"),
    ({"model.embedding_l2": -0.1}, "model.embedding_l2"),
    ({"model.dense_l2": -1.0}, "model.dense_l2"),
    ({"model.deep": False}, "model.deep"),
])
def test_bad_regularization_and_wide_keys_name_the_key(changes, key):
  config = config_lib.override(config_lib.default_config(), changes)
  with pytest.raises(config_lib.ConfigError, match=key.replace(".", r"\.")):
    config_lib.validate(config, check_paths=False)
