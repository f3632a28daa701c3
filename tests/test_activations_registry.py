"""Activation registry: spec strings, callables, layers, and spec errors."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_smelu import activations
from recsys_smelu.activations import (ActivationSpecError, GeneralizedSmeLU,
                                      SmeLU, get_activation, list_activations,
                                      parse_activation_spec)
import tensorflow as tf

_X = np.array([-3.0, -1.0, -0.3, 0.0, 0.4, 1.0, 2.5], np.float32)
_ERF = np.vectorize(__import__("math").erf)


def _gelu_exact(x):
  return 0.5 * x * (1 + _ERF(x / np.sqrt(2)))


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("spec,expected", [
    ("relu", np.maximum(_X, 0)),
    ("smelu", activations.smelu(_X, 1.0).numpy()),
    ("smelu:beta=0.5", activations.smelu(_X, 0.5).numpy()),
    (" SmeLU : beta = 2 ", activations.smelu(_X, 2.0).numpy()),
    ("gsmelu:g_neg=0.1,g_pos=1,alpha=1,beta=1",
     activations.gsmelu(_X, 0.1, 1.0, 1.0, 1.0).numpy()),
    ("gelu", _gelu_exact(_X)),
    ("gelu:approximate=true", _gelu_tanh(_X)),
    ("swish", _X / (1 + np.exp(-_X))),
    ("softplus", np.log1p(np.exp(_X))),
    ("tanh", np.tanh(_X)),
    ("elu", np.where(_X > 0, _X, np.expm1(_X))),
    ("elu:alpha=0.5", np.where(_X > 0, _X, 0.5 * np.expm1(_X))),
    ("selu", 1.0507009873554805 * np.where(
        _X > 0, _X, 1.6732632423543772 * np.expm1(_X))),
    ("leaky_relu", np.where(_X > 0, _X, 0.3 * _X)),
    ("leaky_relu:alpha=0.1", np.where(_X > 0, _X, 0.1 * _X)),
    ("linear", _X),
])
def test_spec_builds_layer_with_expected_values(spec, expected):
  layer = get_activation(spec)
  assert isinstance(layer, tf.keras.layers.Layer)
  np.testing.assert_allclose(layer(_X).numpy(), expected, rtol=1e-5,
                             atol=1e-6)
  # Every registry layer serializes and revives to the same function.
  revived = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
  np.testing.assert_allclose(revived(_X).numpy(), expected, rtol=1e-5,
                             atol=1e-6)


def test_gelu_exact_and_tanh_forms_differ():
  exact = get_activation("gelu")(_X).numpy()
  approx = get_activation("gelu:approximate=true")(_X).numpy()
  assert np.max(np.abs(exact - approx)) > 1e-4


def test_trainable_specs_build_trainable_layers():
  layer = get_activation("smelu:beta=1,trainable=true")
  assert isinstance(layer, SmeLU) and layer.trainable_beta
  assert not layer.per_unit
  layer(tf.zeros([2, 5]))
  assert [w.shape for w in layer.trainable_weights] == [()]
  layer = get_activation("smelu:beta=1,trainable=true,per_unit=true")
  layer(tf.zeros([2, 5]))
  assert [w.shape for w in layer.trainable_weights] == [(5,)]
  layer = get_activation("gsmelu:g_neg=0.1,trainable=true")
  assert isinstance(layer, GeneralizedSmeLU)
  layer(tf.zeros([2, 5]))
  assert len(layer.trainable_weights) == 5


def test_string_specs_give_a_new_layer_every_call():
  a = get_activation("smelu:trainable=true")
  b = get_activation("smelu:trainable=true")
  assert a is not b
  a(tf.zeros([1, 3]))
  b(tf.zeros([1, 3]))
  assert a.trainable_weights[0] is not b.trainable_weights[0]
  assert get_activation("relu") is not get_activation("relu")


def test_layers_and_callables():
  layer = tf.keras.layers.ReLU()
  assert get_activation(layer) is layer
  wrapped = get_activation(tf.keras.activations.swish)
  assert isinstance(wrapped, tf.keras.layers.Activation)
  np.testing.assert_allclose(wrapped(_X).numpy(), _X / (1 + np.exp(-_X)),
                             rtol=1e-6)
  assert isinstance(get_activation(activations.smelu), SmeLU)
  assert isinstance(get_activation(activations.gsmelu), GeneralizedSmeLU)


def test_parse_activation_spec():
  assert parse_activation_spec("relu") == ("relu", {})
  assert parse_activation_spec("smelu:beta=0.5,trainable=TRUE") == (
      "smelu", {"beta": 0.5, "trainable": True})
  assert parse_activation_spec("gsmelu:g_neg=-0.1,t=2") == (
      "gsmelu", {"g_neg": -0.1, "t": 2.0})


def test_list_activations_names_params_and_defaults():
  listed = list_activations()
  assert "relu" in listed
  assert "smelu:beta=1.0,trainable=false,per_unit=false" in listed
  assert "leaky_relu:alpha=0.3" in listed
  names = {entry.split(":")[0] for entry in listed}
  assert names == {"relu", "smelu", "gsmelu", "gelu", "swish", "softplus",
                   "tanh", "elu", "selu", "leaky_relu", "linear"}


@pytest.mark.parametrize("spec,problem", [
    ("smeLu2", "unknown activation 'smelu2'"),
    ("", "unknown activation ''"),
    ("smelu:gamma=1", "unknown parameter 'gamma' for 'smelu'; valid "
     "parameters: beta=1.0, trainable=false, per_unit=false"),
    ("relu:alpha=1", "unknown parameter 'alpha' for 'relu'; valid "
     "parameters: (none)"),
    ("smelu:beta=abc", "beta='abc' is not a number"),
    ("smelu:beta=nan", "beta='nan' must be finite"),
    ("smelu:beta=0", "beta='0' must be > 0"),
    ("smelu:beta=-1", "beta='-1' must be > 0"),
    ("gsmelu:alpha=0", "alpha='0' must be > 0"),
    ("gsmelu:beta=-0.5", "beta='-0.5' must be > 0"),
    ("smelu:trainable=maybe", "trainable='maybe' must be true or false"),
    ("smelu:beta", "parameter 'beta' is not key=value"),
    ("smelu:beta=1,,trainable=true", "parameter '' is not key=value"),
    ("smelu:beta=1,beta=2", "parameter 'beta' given twice"),
    ("smelu:", "nothing after ':'"),
    ("smelu:per_unit=true", "per_unit=True needs trainable"),
])
def test_bad_specs_raise_value_error_naming_spec_and_valid_names(spec, problem):
  with pytest.raises(ValueError) as info:
    get_activation(spec)
  assert isinstance(info.value, ActivationSpecError)
  message = str(info.value)
  assert f"invalid activation spec {spec!r}" in message
  assert problem in message
  assert "Valid activations: relu; smelu:beta=1.0" in message
  assert "leaky_relu:alpha=0.3; linear" in message


def test_non_string_non_callable_is_rejected():
  with pytest.raises(ValueError, match="spec string, a Keras layer or a "
                     "callable.*Valid activations: relu"):
    get_activation(3.5)
  with pytest.raises(ValueError, match="must be a string"):
    parse_activation_spec(None)
