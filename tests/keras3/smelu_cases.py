"""The inputs and parameter sets on which the TF side writes golden arrays and
every Keras 3 backend is compared with them. numpy and ml_dtypes only, so
both the TF-side test process and the backend subprocesses import it."""

from __future__ import annotations

import ml_dtypes
import numpy as np

UNITS = 8
BATCH = 64

# Per-unit parameter vectors (one value per unit of the last axis).
_RAMP = np.linspace(0.25, 2.0, UNITS, dtype=np.float32)

# name -> (function, constant params, tensor params). Tensor params receive
# gradients; constants are Python floats.
CASES: dict[str, tuple[str, dict, dict]] = {
    "smelu_beta1": ("smelu", {"beta": 1.0}, {}),
    "smelu_beta_half": ("smelu", {"beta": 0.5}, {}),
    "smelu_tensor_beta": ("smelu", {}, {"beta": np.float32(0.7)}),
    "smelu_per_unit_beta": ("smelu", {}, {"beta": _RAMP}),
    "gsmelu_default": ("gsmelu", {"g_neg": 0.0, "g_pos": 1.0, "alpha": 1.0,
                                  "beta": 1.0, "t": 0.0}, {}),
    "gsmelu_asymmetric": ("gsmelu", {"g_neg": -0.2, "g_pos": 1.5,
                                     "alpha": 0.5, "beta": 2.0, "t": 0.3}, {}),
    "gsmelu_tensor": ("gsmelu", {}, {
        "g_neg": np.float32(0.1), "g_pos": np.float32(1.2),
        "alpha": np.float32(0.8), "beta": np.float32(1.5),
        "t": np.float32(-0.1)}),
    "gsmelu_per_unit": ("gsmelu", {"t": 0.25}, {
        "g_neg": (_RAMP - 1.0) * 0.2, "g_pos": _RAMP,
        "alpha": _RAMP[::-1].copy(), "beta": _RAMP}),
}

# Layer cases: (class name, constructor kwargs).
LAYER_CASES: dict[str, tuple[str, dict]] = {
    "layer_smelu_per_unit": ("SmeLU", {"beta": 0.6, "trainable_beta": True,
                                       "per_unit": True}),
    "layer_gsmelu_all": ("GeneralizedSmeLU", {
        "g_neg": 0.05, "g_pos": 1.1, "alpha": 0.9, "beta": 1.3, "t": 0.0,
        "trainable_params": True}),
}

# Forward-only special values.
SPECIAL_X = np.array([[-np.inf, np.inf, np.nan, -1.0, 1.0, 0.0, -0.5, 0.5]],
                     np.float32)


def _bfloat16_exact(values: np.ndarray) -> np.ndarray:
  """float32 values exactly representable in bfloat16 and float16."""
  values = values.astype(ml_dtypes.bfloat16).astype(np.float32)
  values[np.abs(values) < 1e-3] = 0.0  # no float16 subnormals
  return values


def inputs() -> tuple[np.ndarray, np.ndarray]:
  """(x, dy): float32 [BATCH, UNITS], exact in bfloat16 and float16; the
  first row holds the joints of the cases above (0, +-0.5, +-1, +-2)."""
  rng = np.random.default_rng(17)
  x = _bfloat16_exact(rng.uniform(-4.0, 4.0, (BATCH, UNITS)))
  x[0] = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 0.25]
  dy = _bfloat16_exact(rng.normal(size=(BATCH, UNITS)))
  return x, dy


def joints(function: str, params: dict) -> list:
  """The points where the case's formula changes piece (for finite
  differences, which must not straddle them)."""
  if function == "smelu":
    return [-params["beta"], params["beta"]]
  return [-params["alpha"], params["beta"]]
