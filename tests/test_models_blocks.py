"""MLP block and seed derivation (recsys_smelu.models.blocks)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from recsys_smelu.models import blocks
import tensorflow as tf


def test_derive_seed_is_sha256_of_base_and_path():
  expected = int.from_bytes(hashlib.sha256(b"7/tower_0/top_mlp/dense_1")
                            .digest()[:8], "big") % (2**31 - 1)
  assert blocks.derive_seed(7, "tower_0/top_mlp/dense_1") == expected
  # Stable across processes (no salted hash): a fixed value.
  assert blocks.derive_seed(1, "a") == int.from_bytes(
      hashlib.sha256(b"1/a").digest()[:8], "big") % (2**31 - 1)


def test_derive_seed_distinct_per_path_and_base():
  paths = [f"tower_{t}/{b}/dense_{i}" for t in range(3)
           for b in ("bottom_mlp", "top_mlp") for i in range(4)]
  seeds = [blocks.derive_seed(1, p) for p in paths]
  assert len(set(seeds)) == len(seeds)
  assert all(0 <= s < 2**31 - 1 for s in seeds)
  assert blocks.derive_seed(1, "x") != blocks.derive_seed(2, "x")


def _mlp(**kwargs):
  args = dict(widths=[5, 3], activation="relu", init_seed=1, dropout_seed=1,
              seed_path="t/mlp", name="mlp")
  args.update(kwargs)
  return blocks.MLP(**args)


def test_mlp_matches_numpy_forward_with_layer_norm():
  mlp = _mlp(normalization="layer")
  x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  y = mlp(x).numpy()
  h = x
  for i in range(2):
    dense = mlp.hidden_layers[i][0]
    norm = mlp.hidden_layers[i][1]
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
    h = h @ kernel + bias
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mu) / np.sqrt(var + norm.epsilon)  # gamma=1, beta=0 at init
    h = np.maximum(h, 0.0)
  np.testing.assert_allclose(y, h, rtol=1e-5, atol=1e-5)
  assert y.shape == (4, 3)


def test_mlp_layer_names_and_structure():
  mlp = _mlp(normalization="batch", dropout=0.5)
  names = [[l.name for l in layers] for layers in mlp.hidden_layers]
  assert names[0][0] == "dense_0" and names[1][0] == "dense_1"
  assert names[0][1:] == ["batch_norm_0", "activation_0", "dropout_0"]
  assert len(mlp.layers) == 8  # 2 x (dense, norm, activation, dropout)


def test_mlp_kernels_come_from_seeds():
  x = tf.ones([2, 4])
  a, b = _mlp(), _mlp()
  c = _mlp(init_seed=2)
  d = _mlp(seed_path="t/other")
  for m in (a, b, c, d):
    m(x)
  ka, kb, kc, kd = (m.hidden_layers[0][0].kernel.numpy() for m in (a, b, c, d))
  np.testing.assert_array_equal(ka, kb)
  assert not np.allclose(ka, kc) and not np.allclose(ka, kd)
  # Layers of one MLP get different seeds.
  k0 = a.hidden_layers[0][0].kernel.numpy()[:3, :3]
  k1 = a.hidden_layers[1][0].kernel.numpy()[:3, :3]
  assert not np.allclose(k0, k1)


def test_mlp_dropout_only_in_training_and_seeded():
  x = tf.ones([64, 8])
  a, b = _mlp(dropout=0.5, widths=[32]), _mlp(dropout=0.5, widths=[32])
  np.testing.assert_array_equal(a(x, training=False).numpy(),
                                a(x, training=False).numpy())
  ya, yb = a(x, training=True).numpy(), b(x, training=True).numpy()
  np.testing.assert_array_equal(ya, yb)  # same dropout seed -> same mask
  y_eval = a(x, training=False).numpy()
  alive = y_eval != 0
  dropped = np.mean(ya[alive] == 0)
  assert 0.4 < dropped < 0.6  # rate 0.5 over ~1000 live units
  kept = alive & (ya != 0)
  np.testing.assert_allclose(ya[kept], 2.0 * y_eval[kept], rtol=1e-6)
  c = _mlp(dropout=0.5, widths=[32], dropout_seed=9)
  assert not np.array_equal(c(x, training=True).numpy(), ya)


def test_mlp_dropout_active_in_fit_and_off_in_predict():
  """Keras' fit trains with the masks, predict and evaluate run without them."""
  widths = [64, 64]
  with_dropout = _mlp(dropout=0.5, widths=widths)
  without = _mlp(dropout=0.0, widths=widths)  # same kernels: same seed paths
  x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
  y = np.zeros((32, 64), np.float32)

  def keras_model(mlp):
    inputs = tf.keras.Input([6])
    model = tf.keras.Model(inputs, mlp(inputs))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.0), loss="mse")
    return model

  model, reference = keras_model(with_dropout), keras_model(without)
  dropouts = [layers[-1] for layers in with_dropout.hidden_layers]
  assert all(isinstance(d, blocks.SeededDropout) for d in dropouts)
  np.testing.assert_array_equal(model.predict(x, verbose=0),
                                reference.predict(x, verbose=0))
  assert model.evaluate(x, y, verbose=0) == reference.evaluate(x, y, verbose=0)
  assert [int(d.calls.numpy()) for d in dropouts] == [0, 0]  # no mask drawn
  # Learning rate 0: the weights stay, so the losses differ by the masks only.
  loss = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history["loss"]
  reference_loss = reference.fit(x, y, batch_size=32, epochs=3,
                                 verbose=0).history["loss"]
  assert [int(d.calls.numpy()) for d in dropouts] == [3, 3]  # one per step
  assert loss != reference_loss and len(set(loss)) == 3  # a new mask per step
  np.testing.assert_array_equal(model.predict(x, verbose=0),
                                reference.predict(x, verbose=0))


@pytest.mark.parametrize("kwargs,match", [
    ({"widths": []}, "must not be empty"),
    ({"widths": [4, 0]}, "positive"),
    ({"normalization": "group"}, "normalization"),
    ({"dropout": 1.0}, "dropout"),
])
def test_mlp_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _mlp(**kwargs)


def test_mlp_mixed_bfloat16_computes_in_bfloat16_with_float32_weights():
  mlp = _mlp(dtype="mixed_bfloat16", activation="smelu")
  y = mlp(tf.ones([2, 4]))
  assert y.dtype == tf.bfloat16
  for layers in mlp.hidden_layers:
    for layer in layers:
      assert layer.compute_dtype == "bfloat16", layer.name
  assert all(v.dtype == tf.float32 for v in mlp.variables)
  assert tf.keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("self_interaction", [False, True])
def test_dot_interaction_equals_tfrs_values_and_gradients(self_interaction):
  import tensorflow_recommenders as tfrs  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  inputs = [tf.constant(rng.normal(size=(5, 4)), tf.float32) for _ in range(6)]
  ours = blocks.DotInteraction(self_interaction=self_interaction)
  theirs = tfrs.layers.feature_interaction.DotInteraction(
      self_interaction=self_interaction)
  weights = tf.constant(rng.normal(size=(21 if self_interaction else 15, 1)),
                        tf.float32)

  def value_and_grads(layer):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      out = layer(inputs)
      loss = tf.reduce_sum(tf.matmul(out, weights) ** 2)
    return out, tape.gradient(loss, inputs)

  out, grads = value_and_grads(ours)
  want, want_grads = value_and_grads(theirs)
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
  for g, w in zip(grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
  # The pair order, by hand: (1, 0) first, then (2, 0), (2, 1), ...
  x = np.stack([i.numpy() for i in inputs], axis=1)
  first = 0 if self_interaction else 1
  np.testing.assert_allclose(out[:, 0], np.sum(x[:, first] * x[:, 0], -1),
                             rtol=1e-6)
  last = 5 if self_interaction else 4
  np.testing.assert_allclose(out[:, -1], np.sum(x[:, 5] * x[:, last], -1),
                             rtol=1e-6)


def test_dot_interaction_compiles_under_xla_and_keeps_bfloat16():
  rng = np.random.default_rng(4)
  inputs = [tf.constant(rng.normal(size=(3, 8)), tf.bfloat16) for _ in range(4)]
  layer = blocks.DotInteraction(dtype="mixed_bfloat16")
  out = tf.function(layer, jit_compile=True)(inputs)
  assert out.dtype == tf.bfloat16 and out.shape == (3, 6)
  np.testing.assert_allclose(tf.cast(out, tf.float32),
                             tf.cast(layer(inputs), tf.float32), rtol=1e-2)
