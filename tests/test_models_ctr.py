"""CTR model builder: structure, optimizers, metrics, precision, bad configs.

Fast tests on tiny in-memory batches; learning quality is in
test_models_training.py, bit-identical twins in test_models_determinism.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from recsys_smelu import config as config_lib
from recsys_smelu.data.features import (CategoricalFeature, FeatureSchema,
                                        criteo_schema)
from recsys_smelu import models
import tensorflow as tf

SCHEMA = criteo_schema(num_buckets=20, embedding_dim=4, num_dense=3,
                       num_categorical=3)


def make_config(**changes):
  base = {"model.embedding_dim": 4, "model.bottom_mlp": [8, 4],
          "model.top_mlp": [8, 1]}
  base.update({k.replace("__", "."): v for k, v in changes.items()})
  return config_lib.override(config_lib.default_config(), base)


def trainable_model(config, schema=SCHEMA):
  """The model with the embedding optimizer ``config.train`` names (constant
  rate), as the trainer builds it."""
  t = config.train
  return models.build_model(
      config, schema, embedding_optimizer=models.embedding_optimizer(
          t.embedding_optimizer, t.embedding_learning_rate))


def random_batches(schema, n=64, batch_size=32, seed=0):
  rng = np.random.default_rng(seed)
  features = {
      "dense_features": rng.normal(size=(n, schema.num_dense)).astype(np.float32),
      "sparse_features": {f.name: rng.integers(0, f.num_buckets, n).astype(np.int32)
                          for f in schema.categorical},
  }
  labels = (rng.random(n) < 0.3).astype(np.float32)
  return features, labels, tf.data.Dataset.from_tensor_slices(
      (features, labels)).batch(batch_size)


def first_batch(schema, n=16):
  features, _, _ = random_batches(schema, n=n)
  return features


@pytest.mark.parametrize("changes,expected", [
    ({}, ["bottom_mlp", "dot_interaction", "top_mlp", "logit"]),
    ({"model__interaction": "cross"},
     ["bottom_mlp", "cross_0", "cross_1", "top_mlp", "logit"]),
    ({"model__interaction": "concat", "model__top_mlp": [1]},
     ["bottom_mlp", "logit"]),
])
def test_tower_layers_are_named(changes, expected):
  model = models.build_model(make_config(**changes), SCHEMA)
  logits = model(first_batch(SCHEMA))
  assert logits.shape == (16, 1) and logits.dtype == tf.float32
  assert [l.name for l in model.towers[0].layers] == expected
  lines = []
  model.summary(expand_nested=True, print_fn=lines.append)
  text = "\n".join(lines)
  for name in ["embedding", "tower_0", "ranking"] + expected:
    assert name in text
  table_names = sorted(v.name for v in model.embedding.variables)
  assert table_names == [f"ctr_model/embedding/tower_0_C{i}:0"
                         for i in (1, 2, 3)]


def test_dot_interaction_feeds_bottom_output_and_pairwise_dots():
  model = models.build_model(make_config(), SCHEMA)
  features = first_batch(SCHEMA, n=4)
  tower = model.towers[0]
  captured = {}
  original = tower.top_mlp.call

  def spy(x, training=False):
    captured["z"] = x
    return original(x, training=training)

  tower.top_mlp.call = spy
  model(features)
  z = captured["z"].numpy()
  d = tower.bottom_mlp(features["dense_features"]).numpy()
  tables = {t.name: v.numpy() for t, v in model.embedding.embedding_tables.items()}
  e = [tables[f"tower_0_{name}"][features["sparse_features"][name]]
       for name in ("C1", "C2", "C3")]
  vectors = [d] + e  # 4 vectors of width 4 -> 6 pairwise dots
  dots = [np.sum(vectors[i] * vectors[j], axis=1)
          for i in range(4) for j in range(i)]
  expected = np.concatenate([d, np.stack(dots, axis=1)], axis=1)
  np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)


def test_ensemble_mean_of_independently_seeded_towers():
  single = models.build_model(make_config(), SCHEMA)
  ensemble = models.build_model(make_config(model__ensemble_size=3), SCHEMA)
  features = first_batch(SCHEMA)
  single(features)
  tower_logits = [l.numpy() for l in ensemble.tower_logits(features)]
  np.testing.assert_allclose(ensemble(features).numpy(),
                             np.mean(tower_logits, axis=0), rtol=1e-6)
  assert [t.name for t in ensemble.towers] == ["tower_0", "tower_1", "tower_2"]
  assert len(ensemble.embedding.embedding_tables) == 3 * len(SCHEMA.categorical)
  # Tower i's seeds depend on i only: tower_0 equals the single model's tower.
  for a, b in zip(single.towers[0].weights, ensemble.towers[0].weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  single_tables = {t.name: v.numpy()
                   for t, v in single.embedding.embedding_tables.items()}
  ensemble_tables = {t.name: v.numpy()
                     for t, v in ensemble.embedding.embedding_tables.items()}
  for name, table in single_tables.items():
    np.testing.assert_array_equal(table, ensemble_tables[name])
  assert not np.allclose(ensemble_tables["tower_1_C1"],
                         ensemble_tables["tower_2_C1"])
  np.testing.assert_array_equal(single(features).numpy(), tower_logits[0])
  k1 = ensemble.towers[1].logit.kernel.numpy()
  k2 = ensemble.towers[2].logit.kernel.numpy()
  assert not np.allclose(k1, k2)


def test_init_seed_controls_every_weight():
  features = first_batch(SCHEMA)
  a = models.build_model(make_config(), SCHEMA)
  b = models.build_model(make_config(), SCHEMA)
  c = models.build_model(make_config(seed__init=2), SCHEMA)
  for m in (a, b, c):
    m(features)
  for va, vb, vc in zip(a.weights, b.weights, c.weights):
    np.testing.assert_array_equal(va.numpy(), vb.numpy())
    if "bias" not in va.name:
      assert not np.array_equal(va.numpy(), vc.numpy()), va.name


@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_metric_names_and_values_match_numpy(ensemble_size):
  """For an ensemble, the metrics are those of its (mean) prediction."""
  features, labels, ds = random_batches(SCHEMA, n=256, batch_size=64)
  model = models.build_model(make_config(model__ensemble_size=ensemble_size),
                             SCHEMA)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  result = model.evaluate(ds, return_dict=True, verbose=0)
  assert set(models.METRIC_NAMES) <= set(result)
  logits = model.predict(ds, verbose=0)[:, 0].astype(np.float64)
  p = 1 / (1 + np.exp(-logits))
  log_loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  assert result["log_loss"] == pytest.approx(log_loss, abs=1e-5)
  assert result["mean_prediction"] == pytest.approx(p.mean(), abs=1e-6)
  assert result["mean_label"] == pytest.approx(labels.mean(), abs=1e-7)
  assert result["auc"] == pytest.approx(roc_auc_score(labels, p), abs=2e-3)


def _one_step(model, features, labels):
  model.train_on_batch((features, labels))


@pytest.mark.parametrize("emb_optimizer", ["sgd", "adagrad"])
def test_tables_use_embedding_optimizer_and_dense_layers_the_compiled_one(
    emb_optimizer):
  lr_emb = 0.5
  config = make_config(train__embedding_optimizer=emb_optimizer,
                       train__embedding_learning_rate=lr_emb)
  features, labels, _ = random_batches(SCHEMA, n=32)
  model = trainable_model(config)
  model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.1))
  model(features)
  tables = model.embedding.trainable_variables
  table_ids = {id(v) for v in tables}
  before = [v.numpy() for v in model.trainable_variables]
  with tf.GradientTape() as tape:
    loss = model.compute_loss((features, labels), training=True)
  grads = [tf.convert_to_tensor(g).numpy() for g in
           tape.gradient(loss, model.trainable_variables)]
  model.train_step((features, labels))
  for v, w0, g in zip(model.trainable_variables, before, grads):
    if id(v) in table_ids:
      if emb_optimizer == "sgd":
        expected = w0 - lr_emb * g
      else:  # Adagrad: acc = 0.1 + g^2, w -= lr g / sqrt(acc + 1e-7)
        expected = w0 - lr_emb * g / np.sqrt(0.1 + g * g + 1e-7)
    else:
      expected = w0 - 0.1 * g
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6,
                               err_msg=v.name)
  assert any(np.abs(g).max() > 0 for v, g in zip(model.trainable_variables,
                                                  grads) if id(v) in table_ids)


def test_embedding_optimizer_by_name():
  emb = tf.tpu.experimental.embedding
  opt = models.embedding_optimizer("adagrad", 0.2)
  assert isinstance(opt, emb.Adagrad)
  assert opt.learning_rate == pytest.approx(0.2)
  assert opt.initial_accumulator_value == pytest.approx(0.1)
  assert isinstance(models.embedding_optimizer("adam", 0.1), emb.Adam)
  assert isinstance(models.embedding_optimizer("sgd", 0.1), emb.SGD)
  with pytest.raises(ValueError, match="'rmsprop'.*adam, adagrad, sgd"):
    models.embedding_optimizer("rmsprop", 0.1)
  twin = models.keras_embedding_optimizer(
      emb.Adam(learning_rate=0.3, beta_1=0.8, beta_2=0.99, epsilon=1e-6))
  assert twin.get_config()["beta_1"] == pytest.approx(0.8)
  assert twin.get_config()["epsilon"] == pytest.approx(1e-6)


@pytest.mark.parametrize("interaction", ["dot", "cross", "concat"])
def test_mixed_bfloat16_trains_with_float32_logits(interaction):
  config = make_config(model__interaction=interaction,
                       model__mixed_precision="mixed_bfloat16",
                       model__activation="smelu", model__normalization="layer")
  _, _, ds = random_batches(SCHEMA, n=128)
  model = trainable_model(config)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
  history = model.fit(ds, epochs=2, verbose=0).history
  assert np.all(np.isfinite(history["loss"]))
  features = first_batch(SCHEMA)
  assert model(features).dtype == tf.float32
  tower = model.towers[0]
  assert tower.compute_dtype == "bfloat16"
  assert tower.top_mlp.hidden_layers[0][-1].compute_dtype == "bfloat16"
  assert tower.logit.compute_dtype == "float32"
  assert all(v.dtype == tf.float32 for v in model.variables
             if v.dtype.is_floating)
  assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_mixed_float16_wraps_optimizer_in_loss_scaling_and_trains():
  config = make_config(model__interaction="cross",
                       model__mixed_precision="mixed_float16")
  _, _, ds = random_batches(SCHEMA, n=128)
  model = trainable_model(config)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
  assert isinstance(model.optimizer,
                    tf.keras.mixed_precision.LossScaleOptimizer)
  history = model.fit(ds, epochs=2, verbose=0).history
  assert np.all(np.isfinite(history["loss"]))
  assert model(first_batch(SCHEMA)).dtype == tf.float32


def test_jit_compile_trains_with_tpu_embedding_on_cpu():
  features, labels, ds = random_batches(SCHEMA, n=128)
  model = trainable_model(make_config(model__normalization="layer"))
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), jit_compile=True)
  model(features)
  before = [v.numpy() for v in model.trainable_variables]
  history = model.fit(ds, epochs=2, verbose=0).history
  assert np.all(np.isfinite(history["loss"]))
  for v, w0 in zip(model.trainable_variables, before):
    assert not np.array_equal(v.numpy(), w0), v.name


MOVIELENS_LIKE = FeatureSchema(dense=(), categorical=(
    CategoricalFeature("user_id", 30, 4), CategoricalFeature("item_id", 40, 4),
    CategoricalFeature("genre", 5, 4)))


@pytest.mark.parametrize("interaction", ["dot", "cross", "concat"])
def test_no_dense_features_uses_embeddings_only(interaction):
  model = trainable_model(make_config(model__interaction=interaction),
                          MOVIELENS_LIKE)
  features, labels, ds = random_batches(MOVIELENS_LIKE, n=64)
  assert model.towers[0].bottom_mlp is None
  assert model.embedding is not None
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
  history = model.fit(ds, epochs=1, verbose=0).history
  assert np.isfinite(history["loss"][-1])
  # Works whether or not the batch carries a [B, 0] dense tensor.
  del features["dense_features"]
  assert model(features).shape == (64, 1)


@pytest.mark.parametrize("changes,key", [
    ({"model__interaction": "attention"}, "model.interaction"),
    ({"model__top_mlp": []}, "model.top_mlp"),
    ({"model__top_mlp": [8, 2]}, "model.top_mlp"),
    ({"model__bottom_mlp": []}, "model.bottom_mlp"),
    ({"model__bottom_mlp": [8, 5]}, "model.embedding_dim"),
    ({"model__bottom_mlp": [8, -4]}, "model.bottom_mlp"),
    ({"model__activation": "no_such_activation"}, "model.activation"),
    ({"model__top_activation": "no_such_activation"}, "model.top_activation"),
    ({"model__interaction": "cross", "model__cross_num_layers": 0},
     "model.cross_num_layers"),
    ({"model__interaction": "cross", "model__cross_mode": "zigzag"},
     "model.cross_mode"),
    ({"model__interaction": "cross", "model__cross_activation": "nope"},
     "model.cross_activation"),
    ({"model__normalization": "group"}, "model.normalization"),
    ({"model__mixed_precision": "float8"}, "model.mixed_precision"),
])
def test_bad_config_names_the_key(changes, key):
  with pytest.raises(ValueError, match=key.replace(".", r"\.")):
    models.build_model(make_config(**changes), SCHEMA)


def test_dot_needs_equal_embedding_dims():
  schema = FeatureSchema(dense=("I1",), categorical=(
      CategoricalFeature("C1", 10, 4), CategoricalFeature("C2", 10, 8)))
  with pytest.raises(ValueError, match=r"model\.embedding_dim"):
    models.build_model(make_config(), schema)
  # Other interactions take mixed dims.
  model = models.build_model(make_config(model__interaction="concat"), schema)
  assert model(first_batch(schema)).shape == (16, 1)


def test_checkpoint_restores_weights_and_embedding_optimizer_slots(tmp_path):
  features, labels, ds = random_batches(SCHEMA, n=128)
  config = make_config(train__embedding_optimizer="adagrad")
  model = trainable_model(config)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
  model.fit(ds, epochs=1, verbose=0)
  path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(
      str(tmp_path / "ckpt"))
  saved = dict(tf.train.list_variables(path))
  assert any(k.startswith("model/embedding_optimizer/") for k in saved)

  restored = trainable_model(config)
  restored.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
  restored(features)
  restored.embedding_optimizer.build(restored.embedding.trainable_variables)
  tf.train.Checkpoint(model=restored).restore(path).expect_partial()
  np.testing.assert_array_equal(restored(features).numpy(),
                                model(features).numpy())
  for a, b in zip(model.embedding_optimizer.variables,
                  restored.embedding_optimizer.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
