"""SmeLU parameters, shared by the Keras 2 and Keras 3 layers.

Everything about the parameters of ``smelu`` / ``gsmelu`` and their layers
that needs no tensor library: names, validation of constants, the softplus
parametrization of trainable positive parameters, the resolution of
``trainable_params`` and the layer configs. ``recsys_smelu.activations``
(tf.keras 2) and ``recsys_smelu.keras3`` (Keras 3) both use it, so the two
sides accept the same values and reject bad ones with the same message.

Trainable positive parameters (``alpha``, ``beta``) are stored as ``raw``
with value ``softplus(raw) + MIN_POSITIVE``: strictly positive for any raw
value. The other parameters are stored as their value.

No TensorFlow, no Keras: importing this costs nothing.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

# Trainable positive parameters are ``softplus(raw) + MIN_POSITIVE``: strictly
# positive for any raw value, and never so small that float16 rounds them to 0.
MIN_POSITIVE = 1e-6

GSMELU_PARAMS = ("g_neg", "g_pos", "alpha", "beta", "t")
POSITIVE_PARAMS = frozenset({"alpha", "beta"})


def check_constant_param(name: str, value: Any, positive: bool) -> None:
  """Validates a parameter given as a Python number / numpy array.

  Raises:
    ValueError naming ``name``: not a number, not finite, or (``positive``)
    not > 0.
  """
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number, a numpy array or a tensor, "
                     f"got {value!r}") from None
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} must be finite, got {value!r}")
  if positive and not np.all(array > 0):
    raise ValueError(f"{name} must be > 0, got {value!r}")


def softplus_inverse(value: float) -> float:
  """raw with softplus(raw) = value, for value > 0 (stable for large value)."""
  value = float(value)
  if value > 30.0:
    return value + math.log(-math.expm1(-value))
  return math.log(math.expm1(value))


def positive_to_raw(value: float) -> float:
  """Inverse of ``softplus(raw) + MIN_POSITIVE`` (value must be > 2e-6)."""
  if value <= 2 * MIN_POSITIVE:
    raise ValueError(f"trainable positive parameters must start above "
                     f"{2 * MIN_POSITIVE}, got {value}")
  return softplus_inverse(value - MIN_POSITIVE)


def gsmelu_trainable_names(
    trainable_params: Union[bool, Sequence[str]]) -> tuple[str, ...]:
  """``GeneralizedSmeLU``'s ``trainable_params`` as parameter names.

  False: none; True: all of ``GSMELU_PARAMS``; a sequence: those names
  (ValueError naming any unknown one).
  """
  if isinstance(trainable_params, bool):
    return GSMELU_PARAMS if trainable_params else ()
  names = tuple(trainable_params)
  unknown = sorted(set(names) - set(GSMELU_PARAMS))
  if unknown:
    raise ValueError(f"GeneralizedSmeLU: unknown trainable_params "
                     f"{unknown}; valid: {', '.join(GSMELU_PARAMS)}")
  return names


def layer_parameters(
    layer_name: str, initial: Mapping[str, Any],
    trainable_names: Iterable[str],
    per_unit: bool) -> tuple[dict[str, float], tuple[str, ...]]:
  """Validates a layer's parameters; returns ``(initial, trainable)``.

  ``initial`` comes back as floats (each checked finite, and > 0 for
  ``alpha``/``beta``); ``trainable`` holds the names of ``trainable_names``
  in the order of ``initial``. Trainable positive values must be above
  ``2 * MIN_POSITIVE``, and ``per_unit`` needs a trainable parameter (a fixed
  per-unit value equals the scalar one); the errors name ``layer_name`` or
  the parameter.
  """
  values = {}
  for name, value in initial.items():
    check_constant_param(name, value, positive=name in POSITIVE_PARAMS)
    values[name] = float(value)
  wanted = set(trainable_names)
  trainable = tuple(name for name in initial if name in wanted)
  if per_unit and not trainable:
    raise ValueError(
        f"{layer_name}: per_unit=True needs trainable parameters "
        "(a fixed per-unit value equals the scalar one)")
  for name in trainable:
    if name in POSITIVE_PARAMS:
      positive_to_raw(values[name])  # fail here, not at build
  return values, trainable


def variable_shape(layer_name: str, per_unit: bool, units: Optional[int],
                   input_shape: Any) -> tuple[int, ...]:
  """Shape of the trainable variables: ``()``, or ``(units,)`` per unit
  (ValueError naming the layer when the last dimension ``units`` is None)."""
  if not per_unit:
    return ()
  if units is None:
    raise ValueError(f"{layer_name}(per_unit=True) needs a known "
                     f"last dimension, got input shape {input_shape}")
  return (units,)


def raw_variable(name: str, value: float) -> tuple[str, float]:
  """``(variable name, initial raw value)`` for trainable parameter ``name``:
  ``name_raw`` holding ``positive_to_raw(value)`` for positive ones, else
  ``name`` holding the value."""
  if name in POSITIVE_PARAMS:
    return f"{name}_raw", positive_to_raw(value)
  return name, value


def decode_parameters(initial: Mapping[str, float], raws: Mapping[str, Any],
                      softplus: Callable[[Any], Any]) -> dict[str, Any]:
  """Parameter values: ``initial`` for fixed ones, and for each trainable
  ``raws[name]`` (a tensor) decoded: ``softplus(raw) + MIN_POSITIVE`` for
  positive ones, the raw value for the rest."""
  values = dict(initial)
  for name, raw in raws.items():
    values[name] = (softplus(raw) + MIN_POSITIVE
                    if name in POSITIVE_PARAMS else raw)
  return values


def smelu_config(beta: float, trainable_beta: bool,
                 per_unit: bool) -> dict[str, Any]:
  """``SmeLU``'s own get_config entries (added to the Layer's)."""
  return dict(beta=beta, trainable_beta=trainable_beta, per_unit=per_unit)


def gsmelu_config(initial: Mapping[str, float], trainable_params: Sequence[str],
                  per_unit: bool) -> dict[str, Any]:
  """``GeneralizedSmeLU``'s own get_config entries (added to the Layer's):
  the five initial values, ``trainable_params`` and ``per_unit``."""
  return dict(initial, trainable_params=list(trainable_params),
              per_unit=per_unit)


SMELU_LAYER_DOC = """Smooth ReLU layer: ``smelu(x, beta)``, elementwise.

  Args:
    beta: half-width of the quadratic region (> 0); the fixed value, or the
      initial value when trainable.
    trainable_beta: learn beta. It is stored as ``beta_raw`` with
      ``beta = softplus(beta_raw) + 1e-6`` (always > 0).
    per_unit: with ``trainable_beta``, one beta per unit of the last axis
      (a vector built at first call) instead of one per layer.
    **kwargs: standard Layer arguments (name, dtype, ...).
  """

GSMELU_LAYER_DOC = """Generalized SmeLU layer: ``gsmelu(x, g_neg, g_pos, alpha, beta, t)``.

  Args:
    g_neg: slope left of ``-alpha``.
    g_pos: slope right of ``beta``.
    alpha: left extent of the quadratic region (> 0).
    beta: right extent of the quadratic region (> 0).
    t: value at ``x = -alpha``.
    trainable_params: which parameters to learn: False (none), True (all
      five), or a list of names from ``g_neg, g_pos, alpha, beta, t``. Alpha
      and beta are stored as ``softplus(raw) + 1e-6`` (always > 0); slopes and
      t are unconstrained.
    per_unit: one value per unit of the last axis for the trained parameters.
    **kwargs: standard Layer arguments (name, dtype, ...).
  """
