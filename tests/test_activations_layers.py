"""SmeLU / GeneralizedSmeLU layers: parameters, mixed precision, XLA training,
serialization round trips."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_smelu import activations
from recsys_smelu.activations import GELU, GeneralizedSmeLU, SmeLU
import tensorflow as tf

_X = np.linspace(-3, 3, 24, dtype=np.float32).reshape(6, 4)


def test_fixed_layers_equal_the_functions_and_have_no_weights():
  layer = SmeLU(beta=0.5)
  np.testing.assert_array_equal(layer(_X).numpy(),
                                activations.smelu(_X, 0.5).numpy())
  assert not layer.weights
  g = GeneralizedSmeLU(g_neg=0.1, g_pos=1.2, alpha=0.5, beta=1.5, t=0.2)
  np.testing.assert_array_equal(
      g(_X).numpy(), activations.gsmelu(_X, 0.1, 1.2, 0.5, 1.5, 0.2).numpy())
  assert not g.weights


def test_trainable_beta_softplus_parametrization_and_gradient():
  layer = SmeLU(beta=0.7, trainable_beta=True)
  layer.build(_X.shape)
  (raw,) = layer.trainable_weights
  assert raw.name.endswith("beta_raw:0") and raw.shape == ()
  assert raw.dtype == tf.float32
  # beta = softplus(raw) + 1e-6, initialised so that beta starts at 0.7.
  np.testing.assert_allclose(np.log1p(np.exp(raw.numpy())) + 1e-6, 0.7,
                             rtol=1e-6)
  np.testing.assert_allclose(layer(_X).numpy(),
                             activations.smelu(_X, 0.7).numpy(), rtol=1e-6)
  with tf.GradientTape() as tape:
    y = tf.reduce_sum(layer(_X))
  (g_raw,) = tape.gradient(y, [raw])
  # chain rule: dL/draw = sum((b^2 - x^2) / (4 b^2) on |x| < b) * sigmoid(raw)
  inside = np.abs(_X) < 0.7
  dbeta = np.sum((0.49 - _X[inside] ** 2) / (4 * 0.49))
  sigmoid = 1 / (1 + np.exp(-raw.numpy()))
  np.testing.assert_allclose(g_raw.numpy(), dbeta * sigmoid, rtol=1e-5)
  # Any raw value keeps beta > 0.
  raw.assign(-1e4)
  assert float(layer.parameter_values()["beta"]) > 0
  assert np.all(np.isfinite(layer(_X).numpy()))


def test_per_unit_parameters_are_vectors_over_last_axis():
  layer = SmeLU(beta=1.0, trainable_beta=True, per_unit=True)
  layer(_X)
  (raw,) = layer.trainable_weights
  assert raw.shape == (4,)
  raw.assign(activations.softplus_inverse(1.0 - 1e-6) + np.array(
      [0.0, 1.0, 2.0, -1.0], np.float32))
  betas = layer.parameter_values()["beta"].numpy()
  np.testing.assert_allclose(layer(_X).numpy(),
                             activations.smelu(_X, betas).numpy(), rtol=1e-6)
  g = GeneralizedSmeLU(trainable_params=["alpha", "g_neg"], per_unit=True)
  g(_X)
  assert sorted(w.name.split("/")[-1] for w in g.trainable_weights) == [
      "alpha_raw:0", "g_neg:0"]
  assert all(w.shape == (4,) for w in g.trainable_weights)
  with tf.GradientTape() as tape:
    y = tf.reduce_sum(g(_X) ** 2)
  grads = tape.gradient(y, g.trainable_weights)
  assert all(gr.shape == (4,) and np.all(np.isfinite(gr)) for gr in grads)


def test_layer_argument_errors():
  with pytest.raises(ValueError, match="beta must be > 0"):
    SmeLU(beta=-1.0)
  with pytest.raises(ValueError, match="per_unit=True needs trainable"):
    SmeLU(per_unit=True)
  with pytest.raises(ValueError, match="unknown trainable_params"):
    GeneralizedSmeLU(trainable_params=["gamma"])
  with pytest.raises(ValueError, match="known last dimension"):
    SmeLU(trainable_beta=True, per_unit=True).build(tf.TensorShape([None]))


def test_mixed_precision_computes_in_float16_with_float32_variables():
  layer = GeneralizedSmeLU(g_neg=0.1, trainable_params=True, per_unit=True,
                           dtype="mixed_float16")
  x = tf.constant(_X)
  with tf.GradientTape() as tape:
    y = layer(x)
    loss = tf.reduce_sum(tf.cast(y, tf.float32))
  assert y.dtype == tf.float16
  assert all(w.dtype == tf.float32 for w in layer.weights)
  grads = tape.gradient(loss, layer.trainable_weights)
  assert all(g.dtype == tf.float32 and np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_allclose(
      y.numpy(), activations.gsmelu(_X, 0.1).numpy(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("make", [
    lambda: SmeLU(beta=0.5),
    lambda: SmeLU(beta=0.5, trainable_beta=True, per_unit=True),
    lambda: GeneralizedSmeLU(g_neg=0.1, alpha=0.5, trainable_params=True),
])
def test_layers_compile_with_xla_forward_and_backward(make):
  layer = make()
  layer(_X)

  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
    return y, tape.gradient(y, [x, *layer.trainable_weights])

  eager_y, eager_grads = step(tf.constant(_X))
  xla_y, xla_grads = tf.function(step, jit_compile=True)(tf.constant(_X))
  np.testing.assert_allclose(xla_y.numpy(), eager_y.numpy(), rtol=1e-6)
  for got, want in zip(xla_grads, eager_grads):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5,
                               atol=1e-6)


def _tiny_model(seed=0):
  tf.keras.utils.set_random_seed(seed)
  inputs = tf.keras.Input((8,))
  h = tf.keras.layers.Dense(16)(inputs)
  h = SmeLU(beta=0.5, trainable_beta=True, per_unit=True)(h)
  h = tf.keras.layers.Dense(16)(h)
  h = GeneralizedSmeLU(g_neg=0.05, trainable_params=["beta", "g_pos"])(h)
  h = tf.keras.layers.Dense(8)(h)
  h = activations.get_activation("gelu:approximate=true")(h)
  h = activations.get_activation("leaky_relu:alpha=0.1")(h)
  h = activations.get_activation(activations.smelu)(h)
  h = activations.get_activation(tf.keras.activations.swish)(h)
  outputs = tf.keras.layers.Dense(1)(h)
  return tf.keras.Model(inputs, outputs)


def _regression_data(n=256):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  y = (np.abs(x[:, :1]) + 0.5 * x[:, 1:2] ** 2).astype(np.float32)
  return x, y


def test_keras_model_trains_with_jit_compile():
  model = _tiny_model()
  x, y = _regression_data()
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse",
                jit_compile=True)
  betas_before = [w.numpy().copy() for w in model.trainable_weights
                  if "beta_raw" in w.name]
  history = model.fit(x, y, batch_size=64, epochs=4, verbose=0)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.8 * losses[0]
  betas_after = [w.numpy() for w in model.trainable_weights
                 if "beta_raw" in w.name]
  assert len(betas_after) == 2  # SmeLU per unit + gSmeLU's beta
  assert any(np.any(a != b) for a, b in zip(betas_after, betas_before))


def test_get_config_from_config_round_trip():
  for layer in [SmeLU(beta=0.3, trainable_beta=True, per_unit=True, name="s"),
                GeneralizedSmeLU(g_neg=0.2, g_pos=0.9, alpha=0.4, beta=2.0,
                                 t=0.1, trainable_params=["t", "beta"]),
                GELU(approximate=True)]:
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    serialized = tf.keras.layers.serialize(layer)
    assert serialized["registered_name"] == (
        "recsys_smelu>" + type(layer).__name__)
    revived = tf.keras.layers.deserialize(serialized)
    assert type(revived) is type(layer)
    np.testing.assert_allclose(revived(_X).numpy(), layer(_X).numpy(),
                               rtol=1e-6)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5")
@pytest.mark.parametrize("save_format", ["tf", "h5"])
def test_model_save_and_load_gives_identical_outputs(tmp_path, save_format):
  model = _tiny_model(seed=1)
  x, y = _regression_data(64)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="mse")
  model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # move params off init
  path = str(tmp_path / ("model" if save_format == "tf" else "model.h5"))
  model.save(path, save_format=save_format)
  loaded = tf.keras.models.load_model(path)
  assert [type(l).__name__ for l in loaded.layers] == [
      type(l).__name__ for l in model.layers]
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                model.predict(x, verbose=0))
