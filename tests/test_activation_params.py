"""recsys_smelu.activation_params: the SmeLU parameter logic both sides share
(TF-free; its import is checked in test_package)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_smelu import activation_params as params


@pytest.mark.parametrize("value", [1e-5, 0.3, 1.0, 29.9, 30.1, 200.0])
def test_softplus_inverse_inverts_softplus(value):
  raw = params.softplus_inverse(value)
  softplus = math.log1p(math.exp(-abs(raw))) + max(raw, 0.0)
  assert softplus == pytest.approx(value, rel=1e-12)


def test_positive_to_raw_decodes_back_and_rejects_tiny_values():
  raw = params.positive_to_raw(0.5)
  decoded = params.decode_parameters(
      {"beta": 0.5}, {"beta": raw},
      lambda r: math.log1p(math.exp(r)))["beta"]
  assert decoded == pytest.approx(0.5, rel=1e-12)
  with pytest.raises(ValueError, match="must start above 2e-06, got 2e-06"):
    params.positive_to_raw(2e-6)


@pytest.mark.parametrize("name,value,positive,message", [
    ("beta", 0.0, True, "beta must be > 0, got 0.0"),
    ("beta", np.array([1.0, -1.0]), True, "beta must be > 0"),
    ("t", float("inf"), False, "t must be finite, got inf"),
    ("g_neg", float("nan"), False, "g_neg must be finite"),
    ("alpha", "wide", True, "alpha must be a number, a numpy array or a "
     "tensor, got 'wide'"),
    ("alpha", object, True, "alpha must be a number"),
])
def test_check_constant_param_names_the_parameter(name, value, positive,
                                                  message):
  with pytest.raises(ValueError) as info:
    params.check_constant_param(name, value, positive)
  assert message in str(info.value)


def test_check_constant_param_accepts_negative_unconstrained_values():
  params.check_constant_param("g_neg", -3.0, positive=False)
  params.check_constant_param("beta", np.array([0.5, 2.0]), positive=True)


def test_gsmelu_trainable_names():
  assert params.gsmelu_trainable_names(False) == ()
  assert params.gsmelu_trainable_names(True) == params.GSMELU_PARAMS
  assert params.gsmelu_trainable_names(["beta", "t"]) == ("beta", "t")
  with pytest.raises(ValueError, match=r"unknown trainable_params \['gamma'\]; "
                     "valid: g_neg, g_pos, alpha, beta, t"):
    params.gsmelu_trainable_names(["gamma", "beta"])


def test_layer_parameters_validates_and_orders():
  initial = dict(g_neg=0, g_pos=1, alpha=2, beta=3, t=0)
  values, trainable = params.layer_parameters(
      "GeneralizedSmeLU", initial, ["t", "alpha"], per_unit=True)
  assert values == dict(g_neg=0.0, g_pos=1.0, alpha=2.0, beta=3.0, t=0.0)
  assert all(type(v) is float for v in values.values())
  assert trainable == ("alpha", "t")  # the order of initial
  with pytest.raises(ValueError, match="SmeLU: per_unit=True needs trainable"):
    params.layer_parameters("SmeLU", {"beta": 1.0}, (), per_unit=True)
  with pytest.raises(ValueError, match="alpha must be > 0"):
    params.layer_parameters("GeneralizedSmeLU", dict(initial, alpha=-1), (),
                            per_unit=False)
  with pytest.raises(ValueError, match="must start above"):  # not at build
    params.layer_parameters("SmeLU", {"beta": 1e-6}, ("beta",), per_unit=False)


def test_variable_shape_and_raw_variable():
  assert params.variable_shape("SmeLU", False, None, (None, None)) == ()
  assert params.variable_shape("SmeLU", True, 4, (None, 4)) == (4,)
  with pytest.raises(ValueError, match=r"SmeLU\(per_unit=True\) needs a known "
                     r"last dimension, got input shape \(None, None\)"):
    params.variable_shape("SmeLU", True, None, (None, None))
  assert params.raw_variable("beta", 1.0) == (
      "beta_raw", params.positive_to_raw(1.0))
  assert params.raw_variable("g_neg", -0.5) == ("g_neg", -0.5)


def test_decode_parameters_shifts_only_positive_ones():
  values = params.decode_parameters(
      {"g_neg": 0.1, "alpha": 1.0, "t": 0.0}, {"alpha": 0.0, "t": -2.0},
      lambda raw: 10.0 + raw)
  assert values == {"g_neg": 0.1, "alpha": 10.0 + params.MIN_POSITIVE,
                    "t": -2.0}


def test_configs_keep_their_keys_and_order():
  assert list(params.smelu_config(0.5, True, False).items()) == [
      ("beta", 0.5), ("trainable_beta", True), ("per_unit", False)]
  initial = dict(g_neg=0.0, g_pos=1.0, alpha=1.0, beta=2.0, t=0.0)
  config = params.gsmelu_config(initial, ("beta",), True)
  assert list(config) == [*params.GSMELU_PARAMS, "trainable_params",
                          "per_unit"]
  assert config["trainable_params"] == ["beta"] and config["beta"] == 2.0
