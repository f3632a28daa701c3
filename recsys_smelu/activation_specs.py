"""Activation spec strings, shared by the Keras 2 and Keras 3 sides.

A spec is ``"name"`` or ``"name:key=value,key=value"``, e.g. ``"relu"``,
``"smelu:beta=0.5"``, ``"smelu:beta=1,trainable=true,per_unit=true"``,
``"gsmelu:g_neg=0.1,alpha=1,beta=1"``, ``"gelu:approximate=true"``. This
module only parses and validates: it knows every name, its parameters,
their defaults and which must be positive. Building layers is each side's
job (``recsys_smelu.activations.get_activation`` for tf.keras 2,
``recsys_smelu.keras3.get_activation`` for Keras 3), so both accept exactly
the same strings and reject bad ones with the same message.

No TensorFlow, no Keras: importing this costs nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Union


class ActivationSpecError(ValueError):
  """An activation spec string that cannot be turned into a layer."""


@dataclasses.dataclass(frozen=True)
class Param:
  """One spec parameter: its default, and whether a number must be > 0."""
  default: Union[float, bool]
  positive: bool = False  # numbers only: must be > 0

  @property
  def is_bool(self) -> bool:
    return isinstance(self.default, bool)

  def describe(self, name: str) -> str:
    default = str(self.default).lower() if self.is_bool else repr(self.default)
    return f"{name}={default}"


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
  """A registry name's parameters (in order) and a one-line summary."""
  params: dict[str, Param]
  summary: str

  def describe_params(self) -> str:
    if not self.params:
      return "(none)"
    return ", ".join(p.describe(n) for n, p in self.params.items())


SPECS: dict[str, ActivationSpec] = {
    "relu": ActivationSpec({}, "max(x, 0)"),
    "smelu": ActivationSpec(
        {"beta": Param(1.0, positive=True), "trainable": Param(False),
         "per_unit": Param(False)},
        "Smooth ReLU; trainable beta per layer or per unit"),
    "gsmelu": ActivationSpec(
        {"g_neg": Param(0.0), "g_pos": Param(1.0),
         "alpha": Param(1.0, positive=True),
         "beta": Param(1.0, positive=True), "t": Param(0.0),
         "trainable": Param(False), "per_unit": Param(False)},
        "generalized SmeLU; trainable=true learns all five"),
    "gelu": ActivationSpec({"approximate": Param(False)},
                           "x Phi(x); approximate=true is the tanh form"),
    "swish": ActivationSpec({}, "x sigmoid(x)"),
    "softplus": ActivationSpec({}, "log(1 + e^x)"),
    "tanh": ActivationSpec({}, "tanh(x)"),
    "elu": ActivationSpec({"alpha": Param(1.0)}, "alpha (e^x - 1) for x < 0"),
    "selu": ActivationSpec({}, "scaled ELU"),
    "leaky_relu": ActivationSpec({"alpha": Param(0.3)}, "max(x, alpha x)"),
    "linear": ActivationSpec({}, "identity"),
}

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def list_activations() -> list[str]:
  """Every registry name with its parameters and defaults, for help texts.

  E.g. ``"smelu:beta=1.0,trainable=false,per_unit=false"``.
  """
  out = []
  for name, entry in SPECS.items():
    if entry.params:
      out.append(name + ":" + ",".join(
          p.describe(n) for n, p in entry.params.items()))
    else:
      out.append(name)
  return out


def spec_error(spec: Any, problem: str) -> ActivationSpecError:
  """The error for ``spec``: the spec, the problem, and every valid name."""
  return ActivationSpecError(
      f"invalid activation spec {spec!r}: {problem}. Valid activations: "
      f"{'; '.join(list_activations())}")


def nearest_name(name: str) -> str | None:
  """The registry name closest to ``name`` (difflib ratio), or None if none
  shares anything with it."""
  scored = [(difflib.SequenceMatcher(None, name, known).ratio(), known)
            for known in SPECS]
  score, best = max(scored, key=lambda pair: pair[0])
  return best if score > 0 else None


def parse_activation_spec(spec: str) -> tuple[str, dict[str, Any]]:
  """Parses ``"name"`` or ``"name:key=value,key=value"``.

  Returns:
    ``(name, params)`` where params holds only the parameters written in the
    spec, converted to float / bool and validated (defaults not filled in).

  Raises:
    ActivationSpecError (a ValueError) naming the spec and what is valid: for
    an unknown name (with the nearest known one), an unknown or repeated
    parameter, a value that is not a finite number (or true/false for flags),
    or beta/alpha <= 0 where they must be positive.
  """
  if not isinstance(spec, str):
    raise ActivationSpecError(
        f"activation spec must be a string, got {type(spec).__name__} "
        f"{spec!r}")
  name, _, rest = spec.strip().partition(":")
  name = name.strip().lower()
  if name not in SPECS:
    nearest = nearest_name(name)
    hint = f" (nearest: {nearest!r})" if nearest else ""
    raise spec_error(spec, f"unknown activation {name!r}{hint}")
  entry = SPECS[name]
  params: dict[str, Any] = {}
  if not rest.strip():
    if ":" in spec:
      raise spec_error(spec, "nothing after ':' (write e.g. 'smelu:beta=0.5' "
                       "or just the name)")
    return name, params
  for item in rest.split(","):
    key, eq, raw = item.partition("=")
    key, raw = key.strip().lower(), raw.strip()
    if not eq or not key or not raw:
      raise spec_error(spec, f"parameter {item.strip()!r} is not key=value")
    if key not in entry.params:
      raise spec_error(
          spec, f"unknown parameter {key!r} for {name!r}; valid parameters: "
          f"{entry.describe_params()}")
    if key in params:
      raise spec_error(spec, f"parameter {key!r} given twice")
    param = entry.params[key]
    if param.is_bool:
      if raw.lower() in _TRUE:
        params[key] = True
      elif raw.lower() in _FALSE:
        params[key] = False
      else:
        raise spec_error(spec, f"{key}={raw!r} must be true or false")
      continue
    try:
      value = float(raw)
    except ValueError:
      raise spec_error(spec, f"{key}={raw!r} is not a number") from None
    if not math.isfinite(value):
      raise spec_error(spec, f"{key}={raw!r} must be finite")
    if param.positive and value <= 0:
      raise spec_error(spec, f"{key}={raw!r} must be > 0")
    params[key] = value
  return name, params


def resolve_activation_spec(spec: str) -> tuple[str, dict[str, Any]]:
  """``parse_activation_spec`` with every default filled in: the keyword
  arguments a side's builder for ``name`` receives."""
  name, given = parse_activation_spec(spec)
  kwargs = {key: param.default for key, param in SPECS[name].params.items()}
  kwargs.update(given)
  return name, kwargs
