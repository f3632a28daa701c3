"""recsys_smelu.activation_specs: the spec parser both sides share (TF-free)."""

from __future__ import annotations

import pytest

from recsys_smelu import activation_specs
from recsys_smelu.activation_specs import (ActivationSpecError,
                                           parse_activation_spec,
                                           resolve_activation_spec)

from conftest import run_python


def test_import_loads_neither_tensorflow_nor_keras():
  code = ("import sys, recsys_smelu.activation_specs\n"
          "heavy = [m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'keras', 'tf_keras', 'jax', 'torch')]\n"
          "assert not heavy, heavy\n")
  result = run_python(["-c", code])
  assert result.returncode == 0, result.stderr[-2000:]


def test_required_names_are_known():
  for name in ("relu", "smelu", "gsmelu", "gelu", "swish", "linear"):
    assert parse_activation_spec(name) == (name, {})


def test_resolve_fills_in_every_default():
  assert resolve_activation_spec("smelu:beta=0.5") == (
      "smelu", {"beta": 0.5, "trainable": False, "per_unit": False})
  assert resolve_activation_spec("gsmelu:trainable=yes") == (
      "gsmelu", {"g_neg": 0.0, "g_pos": 1.0, "alpha": 1.0, "beta": 1.0,
                 "t": 0.0, "trainable": True, "per_unit": False})
  assert resolve_activation_spec("relu") == ("relu", {})


@pytest.mark.parametrize("spec,nearest", [
    ("smelu2", "smelu"), ("gsmeLU_", "gsmelu"), ("gelu_tanh", "gelu"),
    ("silu", "selu"), ("leakyrelu", "leaky_relu"), ("lineer", "linear"),
])
def test_unknown_name_names_the_nearest(spec, nearest):
  with pytest.raises(ActivationSpecError) as info:
    parse_activation_spec(spec)
  assert f"(nearest: {nearest!r})" in str(info.value)
  assert isinstance(info.value, ValueError)


def test_nearest_name_is_none_for_nothing_alike():
  assert activation_specs.nearest_name("") is None
  with pytest.raises(ValueError, match=r"unknown activation ''\. Valid"):
    parse_activation_spec("")


def test_unknown_key_is_named():
  with pytest.raises(ValueError, match="unknown parameter 'gamma' for "
                     "'smelu'; valid parameters: beta=1.0, trainable=false"):
    parse_activation_spec("smelu:gamma=2")
