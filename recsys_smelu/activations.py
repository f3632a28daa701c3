"""The SmeLU activation family, its Keras layers, and the activation registry.

Smooth ReLU (SmeLU) with half-width ``beta > 0`` [Shamir & Lin 2022]::

    smelu(x) = 0                   if x <= -beta
             = (x + beta)^2 / (4 beta)   if |x| <= beta
             = x                   if x >= beta
    d/dx     = clip((x + beta) / (2 beta), 0, 1)
    d/dbeta  = h (1 - h)  with h = d/dx,  i.e. (beta^2 - x^2) / (4 beta^2) on
               |x| <= beta and 0 outside.

It is ReLU convolved with a box of width ``2 beta``; ``beta -> 0`` gives ReLU.

Generalized SmeLU (gSmeLU) [Shamir, Lin & Coviello 2020]: slope ``g_neg`` left
of ``-alpha``, slope ``g_pos`` right of ``beta``, joined by the quadratic whose
value and slope are continuous at both joints; ``t`` is the value at ``-alpha``::

    w = alpha + beta,  z = x + alpha,  s = clip(z / w, 0, 1)
    gsmelu(x) = t + g_neg z                                  if x <= -alpha
              = t + g_neg z + (g_pos - g_neg) z^2 / (2 w)    if -alpha <= x <= beta
              = t + (g_neg + g_pos) w / 2 + g_pos (x - beta) if x >= beta
    d/dx      = g_neg + (g_pos - g_neg) s
    d/dt      = 1
    d/dg_neg  = min(z, 0) + w s (1 - s / 2)
    d/dg_pos  = w s^2 / 2 + max(z - w, 0)
    d/dalpha  = g_neg + (g_pos - g_neg) (s - s^2 / 2)
    d/dbeta   = -(g_pos - g_neg) s^2 / 2

SmeLU is gSmeLU with ``g_neg=0, g_pos=1, alpha=beta, t=0``. Both functions use
``tf.custom_gradient``: the forward pass keeps only ``x`` and the parameters,
and the backward pass is a single elementwise expression in ``x`` (no second
pass through the piecewise formula, no stored masks). Only ``tf.where``,
``clip`` and arithmetic are used, so everything compiles under XLA on
CPU/GPU/TPU, and all computation happens in ``x.dtype`` (float16, bfloat16,
float32, float64). Parameters that are tensors or variables receive gradients
(reduced to their own shape and accumulated in at least float32); parameters
given as Python numbers or numpy arrays are constants.

Speed: in graph mode (``tf.function`` without ``jit_compile``) the forward and
the backward expressions each run as one fused pass over memory instead of one
TF kernel per elementwise op: SmeLU with a constant beta on float32 through
the native CPU ops ``SmeluForward``/``SmeluBackward`` (``recsys_smelu.native``,
bit-identical to the plain ops; used on hosts without GPUs when the native
ops are available), everything else as one small XLA-compiled function per
pass. Eager mode runs the plain ops, and an outer ``jit_compile``/TPU
function inlines them. :func:`set_fused_kernels` / :func:`fused_kernels` (or
``RECSYS_SMELU_FUSED_ACTIVATIONS=0``) switch both off, e.g. for graphs
exported to a server without XLA's JIT or the native ops.

Keras layers: :class:`SmeLU` and :class:`GeneralizedSmeLU`, with fixed or
trainable parameters (per layer, or per unit over the last axis). Registry:
:func:`get_activation` turns specs such as ``"smelu:beta=0.5"`` into new layers.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np
from recsys_smelu import activation_params
from recsys_smelu import activation_specs
from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

import tensorflow as tf  # pylint: disable=wrong-import-position

from recsys_smelu import native

_PACKAGE = "recsys_smelu"

# Parameter names, validation and the softplus parametrization are shared
# with the Keras 3 side (recsys_smelu.keras3) in recsys_smelu.activation_params.
MIN_POSITIVE = activation_params.MIN_POSITIVE
GSMELU_PARAMS = activation_params.GSMELU_PARAMS
softplus_inverse = activation_params.softplus_inverse
_POSITIVE_PARAMS = activation_params.POSITIVE_PARAMS
_check_constant_param = activation_params.check_constant_param


# ---------------------------------------------------------------------------
# Functional ops.
# ---------------------------------------------------------------------------


def _is_tensor_param(value: Any) -> bool:
  return tf.is_tensor(value) or isinstance(value, tf.Variable)


def _sum_to_shape(grad: tf.Tensor, param: tf.Tensor) -> tf.Tensor:
  """Sums ``grad`` (shaped like x) over the axes ``param`` was broadcast over.

  Accumulates in at least float32 and returns ``param``'s dtype, so that a
  float32 ``beta`` used with float16 activations gets an accurate gradient.
  """
  accumulate_dtype = param.dtype if param.dtype.size >= 4 else tf.float32
  grad = tf.cast(grad, accumulate_dtype)
  if param.shape.rank == 0:
    total = tf.reduce_sum(grad)
  elif (param.shape.is_fully_defined() and grad.shape.rank is not None and
        param.shape.rank == 1 and grad.shape.rank >= 1):
    # Per-unit vector over the last axis: sum every other axis.
    total = tf.reduce_sum(grad, axis=list(range(grad.shape.rank - 1)))
    if param.shape[0] == 1 and grad.shape[-1] != 1:
      total = tf.reduce_sum(total, keepdims=True)
  else:
    _, reduce_axes = tf.raw_ops.BroadcastGradientArgs(
        s0=tf.shape(grad), s1=tf.shape(param))
    total = tf.reshape(tf.reduce_sum(grad, axis=reduce_axes), tf.shape(param))
  return tf.cast(total, param.dtype)


# In graph mode (tf.function without jit_compile) every elementwise op of the
# formula would be its own kernel and its own pass over memory: SmeLU's forward
# and backward take ~11 passes against ReLU's 2, and memory traffic sets the
# cost. We therefore run the forward and the backward expression each as one
# small XLA-compiled function (one fused loop), one pass each like ReLU
# (docs/benchmarks.md#activations measures both). Inside an outer
# jit_compile / TPU function they are simply inlined; in eager mode the plain
# ops run (no per-shape compilation).
_fused_kernels_enabled = os.environ.get(
    "RECSYS_SMELU_FUSED_ACTIVATIONS", "1").strip().lower() not in (
        "0", "false", "no")
_jit_cache: dict[Callable[..., Any], Any] = {}


def set_fused_kernels(enabled: bool) -> None:
  """Turns the XLA-fused forward/backward kernels for graph mode on or off.

  Default: on, unless the environment variable
  ``RECSYS_SMELU_FUSED_ACTIVATIONS=0``. Turn it off while tracing graphs that
  must run where XLA's JIT is unavailable (e.g. TF Serving, whose CPU XLA JIT
  is off by default): functions traced then use the plain TF ops.
  """
  global _fused_kernels_enabled
  _fused_kernels_enabled = bool(enabled)


def fused_kernels_enabled() -> bool:
  return _fused_kernels_enabled


@contextlib.contextmanager
def fused_kernels(enabled: bool) -> Iterator[None]:
  """Context manager form of :func:`set_fused_kernels` (restores on exit)."""
  previous = _fused_kernels_enabled
  set_fused_kernels(enabled)
  try:
    yield
  finally:
    set_fused_kernels(previous)


def _maybe_fused(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` as one XLA-compiled function when building a graph, else ``fn``."""
  if tf.executing_eagerly() or not _fused_kernels_enabled:
    return fn
  if fn not in _jit_cache:
    _jit_cache[fn] = tf.function(fn, jit_compile=True, autograph=False,
                                 reduce_retracing=True)
  return _jit_cache[fn]


def _apply_with_param_grads(
    x: tf.Tensor,
    params: Mapping[str, Any],
    forward: Callable[..., tf.Tensor],
    backward: Callable[..., tuple[tf.Tensor, dict[str, tf.Tensor]]],
) -> tf.Tensor:
  """Runs ``forward(x, **params)`` with a custom gradient.

  Parameters that are tensors/variables become inputs of the custom-gradient
  function (so they receive gradients); the rest are constants of x.dtype.
  ``backward(x, dy, wanted, **params)`` returns ``dx`` and a dict with the
  elementwise gradients of the ``wanted`` parameters (shaped like x).
  """
  dtype = x.dtype
  constants = {}
  tensor_names, tensor_values = [], []
  for name, value in params.items():
    if _is_tensor_param(value):
      tensor_names.append(name)
      tensor_values.append(tf.convert_to_tensor(value))
    else:
      constants[name] = tf.constant(value, dtype)
  wanted = tuple(tensor_names)

  @tf.custom_gradient
  def _op(x, *tensor_params):
    values = dict(constants)
    values.update(
        (name, tf.cast(value, dtype))
        for name, value in zip(tensor_names, tensor_params))
    y = _maybe_fused(forward)(x, **values)

    def _grad(dy):
      dx, elementwise = _maybe_fused(backward)(x, dy, wanted, **values)
      param_grads = [_sum_to_shape(elementwise[name], value)
                     for name, value in zip(tensor_names, tensor_params)]
      return (dx, *param_grads)

    return y, _grad

  return _op(x, *tensor_values)


def _smelu_slope(x: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
  """h = clip((x + beta) / (2 beta), 0, 1), the derivative d smelu / dx."""
  return tf.clip_by_value((x + beta) / (beta + beta), 0, 1)


def _smelu_forward(x: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
  # With h = slope: smelu = beta h^2 on x <= beta (0 left of -beta, the
  # quadratic inside), and beta h^2 <= x exactly when x >= beta, so a maximum
  # picks the linear branch. h = 1 exactly at x = beta (y/y is exact in IEEE),
  # so the joint values are exact; x = +-inf gives inf / 0 and NaN stays NaN.
  h = _smelu_slope(x, beta)
  return tf.maximum(x, beta * h * h)


def _smelu_backward(x, dy, wanted, beta):
  h = _smelu_slope(x, beta)
  grads = {}
  if "beta" in wanted:
    grads["beta"] = dy * (h - h * h)
  return dy * h, grads


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
def smelu(x, beta=1.0) -> tf.Tensor:
  """Smooth ReLU, elementwise (formula in the module docstring).

  Args:
    x: floating tensor (float16, bfloat16, float32 or float64).
    beta: half-width of the quadratic region, > 0. A Python number or numpy
      array is a constant (checked to be finite and > 0); a tensor or variable
      receives a gradient. It must broadcast against ``x`` (scalar, or a
      vector over the last axis) and is cast to ``x.dtype``.

  Returns:
    ``smelu(x)`` with ``x``'s dtype and shape.
  """
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating:
    raise ValueError(f"smelu needs a floating input, got {x.dtype.name}")
  if not _is_tensor_param(beta):
    _check_constant_param("beta", beta, positive=True)
  ops = _native_smelu_ops(x, beta)
  if ops is not None:
    return _native_smelu(ops, x, float(beta))
  return _apply_with_param_grads(
      x, {"beta": beta}, _smelu_forward, _smelu_backward)


def _native_smelu_ops(x: tf.Tensor, beta: Any):
  """The native ops module when ``smelu(x, beta)`` may use it, else None.

  Only while tracing a graph outside XLA (custom ops do not compile there)
  with fused kernels on, for float32 ``x`` and a constant scalar beta, on a
  host without GPUs (the ops have CPU kernels only).
  """
  if tf.executing_eagerly() or not _fused_kernels_enabled:
    return None
  if x.dtype != tf.float32 or _is_tensor_param(beta) or np.ndim(beta) != 0:
    return None
  if native.building_xla_graph():
    return None
  if tf.config.list_logical_devices("GPU"):
    return None
  return native.load()


def _native_smelu(ops, x: tf.Tensor, beta: float) -> tf.Tensor:
  """``smelu(x, beta)`` through ``SmeluForward``/``SmeluBackward``."""

  @tf.custom_gradient
  def _op(x):
    def _grad(dy):
      return native.smelu_backward(ops, x, dy, beta)
    return native.smelu_forward(ops, x, beta), _grad

  return _op(x)


def _gsmelu_forward(x, g_neg, g_pos, alpha, beta, t):
  width = alpha + beta
  z = x + alpha
  # Linear tails use multiply_no_nan so that a zero slope gives a flat tail
  # even at x = +-inf (0 * inf would be NaN). NaN inputs fail both
  # comparisons and land in the quadratic branch, which propagates them.
  left = t + tf.math.multiply_no_nan(z, g_neg)
  right = (t + (g_neg + g_pos) * width * 0.5 +
           tf.math.multiply_no_nan(x - beta, g_pos))
  middle = t + g_neg * z + (g_pos - g_neg) * (z * z) / (width + width)
  return tf.where(x <= -alpha, left, tf.where(x >= beta, right, middle))


def _gsmelu_backward(x, dy, wanted, g_neg, g_pos, alpha, beta, t):
  width = alpha + beta
  z = x + alpha
  s = tf.clip_by_value(z / width, 0, 1)
  slope_change = g_pos - g_neg
  grads = {}
  if "t" in wanted:
    grads["t"] = dy
  if "g_neg" in wanted:
    grads["g_neg"] = dy * (tf.minimum(z, 0) + width * s * (1 - 0.5 * s))
  if "g_pos" in wanted:
    grads["g_pos"] = dy * (0.5 * width * s * s + tf.maximum(z - width, 0))
  if "alpha" in wanted:
    grads["alpha"] = dy * (g_neg + slope_change * (s - 0.5 * s * s))
  if "beta" in wanted:
    grads["beta"] = dy * (-0.5 * slope_change * s * s)
  return dy * (g_neg + slope_change * s), grads


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
def gsmelu(x, g_neg=0.0, g_pos=1.0, alpha=1.0, beta=1.0, t=0.0) -> tf.Tensor:
  """Generalized SmeLU, elementwise (formula in the module docstring).

  Args:
    x: floating tensor (float16, bfloat16, float32 or float64).
    g_neg: slope left of ``-alpha``.
    g_pos: slope right of ``beta``.
    alpha: extent of the quadratic region left of 0, > 0.
    beta: extent of the quadratic region right of 0, > 0.
    t: value at ``x = -alpha``.
    Each parameter may be a Python number / numpy array (a constant; checked
    finite, and > 0 for alpha and beta) or a tensor/variable (gets a
    gradient); each must broadcast against ``x`` and is cast to ``x.dtype``.

  Returns:
    ``gsmelu(x)`` with ``x``'s dtype and shape.
  """
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating:
    raise ValueError(f"gsmelu needs a floating input, got {x.dtype.name}")
  params = {"g_neg": g_neg, "g_pos": g_pos, "alpha": alpha, "beta": beta,
            "t": t}
  for name, value in params.items():
    if not _is_tensor_param(value):
      _check_constant_param(name, value, positive=name in _POSITIVE_PARAMS)
  return _apply_with_param_grads(x, params, _gsmelu_forward, _gsmelu_backward)


# ---------------------------------------------------------------------------
# Keras layers.
# ---------------------------------------------------------------------------


class _ParametrizedActivation(tf.keras.layers.Layer):
  """Shared machinery: fixed or trainable (scalar / per-unit) parameters.

  A fixed parameter is a Python float baked into the graph. A trainable one is
  a float32 variable (the layer's variable dtype) read without autocasting;
  positive ones are stored as ``raw`` with value ``softplus(raw) +
  MIN_POSITIVE``, the rest as the value itself. The value is cast to the
  layer's compute dtype by the op, so mixed precision computes in
  float16/bfloat16 while the variables and their gradients stay float32.
  """

  def __init__(self, initial: Mapping[str, float], trainable_names: Iterable[str],
               per_unit: bool, **kwargs):
    super().__init__(**kwargs)
    self._initial, self._trainable_names = activation_params.layer_parameters(
        type(self).__name__, initial, trainable_names, per_unit)
    self.per_unit = bool(per_unit)
    self._raw_variables: dict[str, tf.Variable] = {}
    self.supports_masking = True

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    shape = activation_params.variable_shape(
        type(self).__name__, self.per_unit,
        input_shape[-1] if input_shape.rank else None, input_shape)
    for name in self._trainable_names:
      variable_name, raw = activation_params.raw_variable(
          name, self._initial[name])
      self._raw_variables[name] = self.add_weight(
          name=variable_name,
          shape=shape,
          initializer=tf.keras.initializers.Constant(raw),
          trainable=True,
          experimental_autocast=False)
    super().build(input_shape)

  def parameter_values(self) -> dict[str, Any]:
    """Current parameter values: float for fixed ones, float32 tensors for
    trainable ones (positive ones decoded from their softplus raw)."""
    return activation_params.decode_parameters(
        self._initial,
        {name: tf.convert_to_tensor(variable)
         for name, variable in self._raw_variables.items()},
        tf.nn.softplus)

  def compute_output_shape(self, input_shape):
    return input_shape


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SmeLU(_ParametrizedActivation):
  __doc__ = activation_params.SMELU_LAYER_DOC

  def __init__(self, beta: float = 1.0, trainable_beta: bool = False,
               per_unit: bool = False, **kwargs):
    super().__init__({"beta": beta}, ("beta",) if trainable_beta else (),
                     per_unit, **kwargs)
    self.beta = float(beta)
    self.trainable_beta = bool(trainable_beta)

  def call(self, inputs):
    return smelu(inputs, self.parameter_values()["beta"])

  def get_config(self):
    config = super().get_config()
    config.update(activation_params.smelu_config(
        self.beta, self.trainable_beta, self.per_unit))
    return config


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class GeneralizedSmeLU(_ParametrizedActivation):
  __doc__ = activation_params.GSMELU_LAYER_DOC

  def __init__(self, g_neg: float = 0.0, g_pos: float = 1.0,
               alpha: float = 1.0, beta: float = 1.0, t: float = 0.0,
               trainable_params: Union[bool, Sequence[str]] = False,
               per_unit: bool = False, **kwargs):
    names = activation_params.gsmelu_trainable_names(trainable_params)
    initial = dict(g_neg=g_neg, g_pos=g_pos, alpha=alpha, beta=beta, t=t)
    super().__init__(initial, names, per_unit, **kwargs)
    self.trainable_params = list(self._trainable_names)

  def call(self, inputs):
    return gsmelu(inputs, **self.parameter_values())

  def get_config(self):
    config = super().get_config()
    config.update(activation_params.gsmelu_config(
        self._initial, self.trainable_params, self.per_unit))
    return config


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class GELU(tf.keras.layers.Layer):
  """GELU layer, exact (``x Phi(x)``, erf) or tanh approximation.

  ``tf.keras.layers.Activation`` can only name the exact form; this layer
  keeps ``approximate`` in its config so both forms serialize.
  """

  def __init__(self, approximate: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.approximate = bool(approximate)
    self.supports_masking = True

  def call(self, inputs):
    return tf.nn.gelu(inputs, approximate=self.approximate)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(approximate=self.approximate)
    return config


# ---------------------------------------------------------------------------
# Registry.
# ---------------------------------------------------------------------------


# The spec strings themselves (names, parameters, defaults, validation) live
# in recsys_smelu.activation_specs, shared with the Keras 3 side; here each
# name gets its tf.keras 2 layer.
ActivationSpecError = activation_specs.ActivationSpecError
list_activations = activation_specs.list_activations
parse_activation_spec = activation_specs.parse_activation_spec


def _build_smelu(beta, trainable, per_unit):
  return SmeLU(beta=beta, trainable_beta=trainable, per_unit=per_unit)


def _build_gsmelu(g_neg, g_pos, alpha, beta, t, trainable, per_unit):
  return GeneralizedSmeLU(g_neg=g_neg, g_pos=g_pos, alpha=alpha, beta=beta,
                          t=t, trainable_params=trainable, per_unit=per_unit)


def _keras_activation(name: str) -> Callable[[], tf.keras.layers.Layer]:
  return lambda: tf.keras.layers.Activation(name)


# One builder per name of activation_specs.SPECS, called with every parameter
# of the spec (defaults filled in) as keyword arguments.
_BUILDERS: dict[str, Callable[..., tf.keras.layers.Layer]] = {
    "relu": _keras_activation("relu"),
    "smelu": _build_smelu,
    "gsmelu": _build_gsmelu,
    "gelu": lambda approximate: GELU(approximate=approximate),
    "swish": _keras_activation("swish"),
    "softplus": _keras_activation("softplus"),
    "tanh": _keras_activation("tanh"),
    "elu": lambda alpha: tf.keras.layers.ELU(alpha=alpha),
    "selu": _keras_activation("selu"),
    "leaky_relu": lambda alpha: tf.keras.layers.LeakyReLU(alpha=alpha),
    "linear": _keras_activation("linear"),
}
if set(_BUILDERS) != set(activation_specs.SPECS):
  raise ImportError("recsys_smelu.activations: every activation spec needs a "
                    "tf.keras builder")


ActivationLike = Union[str, tf.keras.layers.Layer, Callable[[tf.Tensor],
                                                             tf.Tensor]]


def get_activation(spec: ActivationLike) -> tf.keras.layers.Layer:
  """An activation layer from a spec string, a callable or a layer.

  Args:
    spec: a registry string (see :func:`list_activations`; e.g. ``"relu"``,
      ``"smelu:beta=0.5"``, ``"smelu:beta=1,trainable=true,per_unit=true"``,
      ``"gsmelu:g_neg=0.1,g_pos=1,alpha=1,beta=1"``, ``"gelu:approximate=true"``,
      ``"leaky_relu:alpha=0.1"``); a Keras layer (returned as is); ``smelu``
      or ``gsmelu`` themselves (their layers with default parameters); or
      another callable tensor -> tensor, wrapped in
      ``tf.keras.layers.Activation`` (it serializes as Keras serializes
      activations: Keras's own by name, others need custom objects on load).

  Returns:
    For strings and callables a NEW layer on every call, so each model block
    gets its own trainable parameters. All registry layers serialize
    (get_config / SavedModel / .h5).

  Raises:
    ActivationSpecError (a ValueError): see :func:`parse_activation_spec`.
  """
  if isinstance(spec, tf.keras.layers.Layer):
    return spec
  if isinstance(spec, str):
    name, kwargs = activation_specs.resolve_activation_spec(spec)
    try:
      return _BUILDERS[name](**kwargs)
    except ValueError as e:  # cross-parameter problems, e.g. per_unit alone
      raise activation_specs.spec_error(spec, str(e)) from e
  if spec is smelu:
    return SmeLU()
  if spec is gsmelu:
    return GeneralizedSmeLU()
  if callable(spec):
    return tf.keras.layers.Activation(spec)
  raise ActivationSpecError(
      f"activation must be a spec string, a Keras layer or a callable, got "
      f"{type(spec).__name__} {spec!r}. Valid activations: "
      f"{'; '.join(list_activations())}")
