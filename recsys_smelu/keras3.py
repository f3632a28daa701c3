"""SmeLU for Keras 3: the ops and layers on ``keras.ops``, for every backend.

The same functions as ``recsys_smelu.activations`` (the tf.keras 2 side), with
the same formulas, parametrization and validation, written on ``keras.ops``
so they run on the TensorFlow, JAX and PyTorch backends and inside keras-rs
models. Smooth ReLU with half-width ``beta > 0``::

    h         = clip((x + beta) / (2 beta), 0, 1)      (= d smelu / dx)
    smelu(x)  = max(x, beta h^2)
              = 0 for x <= -beta,  (x + beta)^2 / (4 beta) on |x| <= beta,
                x for x >= beta
    d/dbeta   = h (1 - h)

Generalized SmeLU (slope ``g_neg`` left of ``-alpha``, ``g_pos`` right of
``beta``, value ``t`` at ``-alpha``; ``w = alpha + beta``, ``z = x + alpha``,
``s = clip(z / w, 0, 1)``)::

    gsmelu(x) = t + g_neg z                                  if x <= -alpha
              = t + g_neg z + (g_pos - g_neg) z^2 / (2 w)    if -alpha <= x <= beta
              = t + (g_neg + g_pos) w / 2 + g_pos (x - beta) if x >= beta
    d/dx      = g_neg + (g_pos - g_neg) s
    d/dt = 1,  d/dg_neg = min(z, 0) + w s (1 - s / 2),
    d/dg_pos = w s^2 / 2 + max(z - w, 0),
    d/dalpha = g_neg + (g_pos - g_neg) (s - s^2 / 2),
    d/dbeta  = -(g_pos - g_neg) s^2 / 2

Backward pass: ``keras.ops.custom_gradient``. The gradient function reads
only ``x`` and the parameters and evaluates one elementwise expression (the
formulas above), so the forward pass saves nothing else: no output, no mask.
On TensorFlow and JAX the gradient function is called as ``grad(upstream)``
and closes over ``x``; on PyTorch it is called as ``grad(*inputs,
upstream=...)`` with the tensors the autograd function saved (``x`` and the
tensor parameters) and uses those.

Dtypes: float32 and float64 compute in their own dtype. float16 and bfloat16
inputs are computed in float32 inside the op (parameters too) and the result
is rounded once to the input dtype, so they equal the float32 result cast
down; under XLA the casts fuse into the same elementwise loop. Only ``where``, ``clip``, ``maximum``/``minimum`` and
arithmetic are used, so everything compiles under ``jax.jit`` and
``tf.function(jit_compile=True)``.

Parameters: a Python number or numpy array is a constant (checked finite,
and > 0 for ``alpha``/``beta``, else ``ValueError`` naming it). A backend
tensor or ``keras.Variable`` receives a gradient, summed over the axes it
was broadcast over, accumulated in at least float32 and returned in its own
dtype. Layers store trainable ``alpha``/``beta`` as ``raw`` with value
``softplus(raw) + MIN_POSITIVE``, as the TF side does, so they stay positive.

This module imports ``keras`` on its configured backend (``KERAS_BACKEND``)
and never imports ``tf_keras``, TensorFlow Recommenders or the Keras 2
modules of this package; with the JAX or PyTorch backend TensorFlow need not
be installed.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import keras
from keras import ops

from recsys_smelu import activation_params
from recsys_smelu import activation_specs

_PACKAGE = "recsys_smelu"

# Parameter names, validation and the softplus parametrization are shared
# with the tf.keras 2 side in recsys_smelu.activation_params (TF-free).
MIN_POSITIVE = activation_params.MIN_POSITIVE
GSMELU_PARAMS = activation_params.GSMELU_PARAMS
softplus_inverse = activation_params.softplus_inverse
_POSITIVE_PARAMS = activation_params.POSITIVE_PARAMS
_check_constant_param = activation_params.check_constant_param
_HALF_DTYPES = frozenset({"float16", "bfloat16"})


# ---------------------------------------------------------------------------
# Functional ops.
# ---------------------------------------------------------------------------


def _is_tensor_param(value: Any) -> bool:
  return isinstance(value, keras.Variable) or ops.is_tensor(value)


def _floating_input(op_name: str, x: Any):
  """``x`` as a backend tensor; ValueError naming ``x`` unless floating."""
  x = ops.convert_to_tensor(x)
  dtype = keras.backend.standardize_dtype(x.dtype)
  if not keras.backend.is_float_dtype(dtype):
    raise ValueError(f"{op_name} needs a floating input x, got {dtype}")
  return x


def _compute_dtype(dtype: str) -> str:
  """float16/bfloat16 compute in float32 (one rounding at the end)."""
  return "float32" if dtype in _HALF_DTYPES else dtype


def _sum_to_shape(grad, param):
  """Sums ``grad`` (shaped like x) over the axes ``param`` was broadcast
  over (leading axes and axes where ``param`` has size 1).

  Accumulates in at least float32 and returns ``param``'s dtype, so that a
  float32 parameter used with float16 activations gets an accurate gradient.
  """
  param_dtype = keras.backend.standardize_dtype(param.dtype)
  accumulate = "float32" if param_dtype in _HALF_DTYPES else param_dtype
  grad = ops.cast(grad, accumulate)
  param_shape = tuple(param.shape)
  leading = len(grad.shape) - len(param_shape)
  if leading < 0:
    raise ValueError(f"parameter of shape {param_shape} has more axes than "
                     f"the input of shape {tuple(grad.shape)}")
  if leading:
    grad = ops.sum(grad, axis=tuple(range(leading)))
  size_one = tuple(i for i, d in enumerate(param_shape)
                   if d == 1 and grad.shape[i] != 1)
  if size_one:
    grad = ops.sum(grad, axis=size_one, keepdims=True)
  return ops.cast(ops.reshape(grad, param_shape), param_dtype)


def _apply_with_param_grads(
    op_name: str,
    x,
    params: Mapping[str, Any],
    forward: Callable[..., Any],
    backward: Callable[..., tuple[Any, dict[str, Any]]],
):
  """Runs ``forward(x, **params)`` with a custom gradient.

  Tensor/variable parameters become inputs of the custom-gradient function
  (so they receive gradients); the rest are constants, made into tensors of
  the compute dtype wherever they are used (so the JAX backward closes over
  no array but x and the tensor parameters). ``backward(x, dy, wanted,
  **params)`` returns ``dx`` and the elementwise gradients of the ``wanted``
  parameters (shaped like x).
  """
  x = _floating_input(op_name, x)
  dtype = keras.backend.standardize_dtype(x.dtype)
  compute = _compute_dtype(dtype)
  constants, tensor_names, tensor_values = {}, [], []
  for name, value in params.items():
    if _is_tensor_param(value):
      tensor_names.append(name)
      tensor_values.append(value.value if isinstance(value, keras.Variable)
                           else value)
    else:
      _check_constant_param(name, value,
                            positive=name in _POSITIVE_PARAMS)
      constants[name] = value
  wanted = tuple(tensor_names)

  def _values(tensor_params) -> dict[str, Any]:
    values = {name: ops.convert_to_tensor(value, dtype=compute)
              for name, value in constants.items()}
    values.update((name, ops.cast(value, compute))
                  for name, value in zip(tensor_names, tensor_params))
    return values

  @ops.custom_gradient
  def _op(x, *tensor_params):
    y = forward(ops.cast(x, compute), **_values(tensor_params))

    def _grad(*args, upstream=None):
      if upstream is None:  # TensorFlow, JAX: grad(upstream)
        (upstream,) = args
        saved_x, saved_params = x, tensor_params
      else:  # PyTorch: grad(*saved inputs, upstream=...)
        saved_x, saved_params = args[0], args[1:]
      dx, elementwise = backward(ops.cast(saved_x, compute),
                                 ops.cast(upstream, compute), wanted,
                                 **_values(saved_params))
      param_grads = [_sum_to_shape(elementwise[name], value)
                     for name, value in zip(tensor_names, saved_params)]
      return (ops.cast(dx, dtype), *param_grads)

    return ops.cast(y, dtype), _grad

  return _op(x, *tensor_values)


def _smelu_slope(x, beta):
  """h = clip((x + beta) / (2 beta), 0, 1), the derivative d smelu / dx."""
  return ops.clip((x + beta) / (beta + beta), 0, 1)


def _smelu_forward(x, beta):
  # smelu = beta h^2 on x <= beta and beta h^2 <= x exactly when x >= beta,
  # so a maximum picks the linear branch (the TF side's expression).
  h = _smelu_slope(x, beta)
  return ops.maximum(x, beta * h * h)


def _smelu_backward(x, dy, wanted, beta):
  h = _smelu_slope(x, beta)
  grads = {}
  if "beta" in wanted:
    grads["beta"] = dy * (h - h * h)
  return dy * h, grads


@keras.saving.register_keras_serializable(package=_PACKAGE)
def smelu(x, beta=1.0):
  """Smooth ReLU, elementwise (formula in the module docstring).

  Args:
    x: floating tensor (float16, bfloat16, float32 or float64).
    beta: half-width of the quadratic region, > 0. A Python number or numpy
      array is a constant (checked finite and > 0); a tensor or
      ``keras.Variable`` receives a gradient. It must broadcast against
      ``x`` (scalar, or a vector over the last axis).

  Returns:
    ``smelu(x)`` with ``x``'s dtype and shape.

  Raises:
    ValueError: ``x`` is not floating, or a constant ``beta`` is not finite
      or not > 0.
  """
  return _apply_with_param_grads("smelu", x, {"beta": beta}, _smelu_forward,
                                 _smelu_backward)


def _multiply_no_nan(z, slope):
  """``z * slope``, and exactly 0 where ``slope`` is 0 (even for z = +-inf)."""
  return ops.where(slope == 0, ops.zeros_like(z * slope), z * slope)


def _gsmelu_forward(x, g_neg, g_pos, alpha, beta, t):
  width = alpha + beta
  z = x + alpha
  # NaN inputs fail both comparisons and land in the quadratic branch, which
  # propagates them.
  left = t + _multiply_no_nan(z, g_neg)
  right = (t + (g_neg + g_pos) * width * 0.5 +
           _multiply_no_nan(x - beta, g_pos))
  middle = t + g_neg * z + (g_pos - g_neg) * (z * z) / (width + width)
  return ops.where(x <= -alpha, left, ops.where(x >= beta, right, middle))


def _gsmelu_backward(x, dy, wanted, g_neg, g_pos, alpha, beta, t):
  width = alpha + beta
  z = x + alpha
  s = ops.clip(z / width, 0, 1)
  slope_change = g_pos - g_neg
  grads = {}
  if "t" in wanted:
    grads["t"] = dy
  if "g_neg" in wanted:
    grads["g_neg"] = dy * (ops.minimum(z, 0) + width * s * (1 - 0.5 * s))
  if "g_pos" in wanted:
    grads["g_pos"] = dy * (0.5 * width * s * s + ops.maximum(z - width, 0))
  if "alpha" in wanted:
    grads["alpha"] = dy * (g_neg + slope_change * (s - 0.5 * s * s))
  if "beta" in wanted:
    grads["beta"] = dy * (-0.5 * slope_change * s * s)
  return dy * (g_neg + slope_change * s), grads


@keras.saving.register_keras_serializable(package=_PACKAGE)
def gsmelu(x, g_neg=0.0, g_pos=1.0, alpha=1.0, beta=1.0, t=0.0):
  """Generalized SmeLU, elementwise (formula in the module docstring).

  Args:
    x: floating tensor (float16, bfloat16, float32 or float64).
    g_neg: slope left of ``-alpha``.
    g_pos: slope right of ``beta``.
    alpha: extent of the quadratic region left of 0, > 0.
    beta: extent of the quadratic region right of 0, > 0.
    t: value at ``x = -alpha``.
    Each parameter may be a Python number / numpy array (a constant; checked
    finite, and > 0 for alpha and beta) or a tensor / ``keras.Variable``
    (gets a gradient); each must broadcast against ``x``.

  Returns:
    ``gsmelu(x)`` with ``x``'s dtype and shape.

  Raises:
    ValueError: ``x`` is not floating, or a constant parameter is not finite
      (or not > 0 for alpha and beta); the message names it.
  """
  params = {"g_neg": g_neg, "g_pos": g_pos, "alpha": alpha, "beta": beta,
            "t": t}
  return _apply_with_param_grads("gsmelu", x, params, _gsmelu_forward,
                                 _gsmelu_backward)


# ---------------------------------------------------------------------------
# Keras layers.
# ---------------------------------------------------------------------------


class _ParametrizedActivation(keras.layers.Layer):
  """Shared machinery: fixed or trainable (scalar / per-unit) parameters.

  A fixed parameter is a Python float. A trainable one is a variable of the
  layer's variable dtype (float32 under the mixed policies) read without
  autocasting; positive ones are stored as ``raw`` with value
  ``softplus(raw) + MIN_POSITIVE``, the rest as the value itself. The op
  computes float16/bfloat16 activations in float32, so mixed precision
  keeps the parameters and their gradients in float32.
  """

  def __init__(self, initial: Mapping[str, float],
               trainable_names: Iterable[str], per_unit: bool, **kwargs):
    super().__init__(**kwargs)
    self._initial, self._trainable_names = activation_params.layer_parameters(
        type(self).__name__, initial, trainable_names, per_unit)
    self.per_unit = bool(per_unit)
    self._raw_variables: dict[str, keras.Variable] = {}
    self.supports_masking = True

  def build(self, input_shape):
    shape = activation_params.variable_shape(
        type(self).__name__, self.per_unit,
        input_shape[-1] if input_shape else None, input_shape)
    for name in self._trainable_names:
      variable_name, raw = activation_params.raw_variable(
          name, self._initial[name])
      self._raw_variables[name] = self.add_weight(
          name=variable_name,
          shape=shape,
          initializer=keras.initializers.Constant(raw),
          trainable=True,
          autocast=False)
    self.built = True

  def parameter_values(self) -> dict[str, Any]:
    """Current parameter values: floats for fixed ones, tensors of the
    variable dtype for trainable ones (positive ones decoded from raw)."""
    return activation_params.decode_parameters(
        self._initial,
        {name: variable.value for name, variable in self._raw_variables.items()},
        ops.softplus)

  def compute_output_shape(self, input_shape):
    return input_shape

  def compute_mask(self, inputs, mask=None):
    return mask


@keras.saving.register_keras_serializable(package=_PACKAGE)
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


@keras.saving.register_keras_serializable(package=_PACKAGE)
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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GELU(keras.layers.Layer):
  """GELU layer, exact (``x Phi(x)``, erf) or tanh approximation, with
  ``approximate`` kept in its config so both forms serialize."""

  def __init__(self, approximate: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.approximate = bool(approximate)
    self.supports_masking = True

  def call(self, inputs):
    return ops.gelu(inputs, approximate=self.approximate)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(approximate=self.approximate)
    return config


# ---------------------------------------------------------------------------
# Registry: the spec strings of recsys_smelu.activation_specs, as Keras 3
# layers.
# ---------------------------------------------------------------------------

ActivationSpecError = activation_specs.ActivationSpecError
list_activations = activation_specs.list_activations
parse_activation_spec = activation_specs.parse_activation_spec


def _keras_activation(name: str) -> Callable[[], keras.layers.Layer]:
  return lambda: keras.layers.Activation(name)


_BUILDERS: dict[str, Callable[..., keras.layers.Layer]] = {
    "relu": _keras_activation("relu"),
    "smelu": lambda beta, trainable, per_unit: SmeLU(
        beta=beta, trainable_beta=trainable, per_unit=per_unit),
    "gsmelu": lambda g_neg, g_pos, alpha, beta, t, trainable, per_unit: (
        GeneralizedSmeLU(g_neg=g_neg, g_pos=g_pos, alpha=alpha, beta=beta,
                         t=t, trainable_params=trainable, per_unit=per_unit)),
    "gelu": lambda approximate: GELU(approximate=approximate),
    "swish": _keras_activation("silu"),
    "softplus": _keras_activation("softplus"),
    "tanh": _keras_activation("tanh"),
    "elu": lambda alpha: keras.layers.ELU(alpha=alpha),
    "selu": _keras_activation("selu"),
    "leaky_relu": lambda alpha: keras.layers.LeakyReLU(negative_slope=alpha),
    "linear": _keras_activation("linear"),
}
if set(_BUILDERS) != set(activation_specs.SPECS):
  raise ImportError("recsys_smelu.keras3: every activation spec needs a "
                    "Keras 3 builder")


def get_activation(spec) -> keras.layers.Layer:
  """A Keras 3 activation layer from a spec string, a callable or a layer.

  Args:
    spec: a spec string of ``recsys_smelu.activation_specs`` (e.g.
      ``"smelu:beta=0.5"``, ``"smelu:trainable=true,per_unit=true"``,
      ``"gelu:approximate=true"``); a Keras layer (returned as is);
      ``smelu`` or ``gsmelu`` (their layers with default parameters); or
      another callable, wrapped in ``keras.layers.Activation``.

  Returns:
    For strings and callables a NEW layer on every call, so each model block
    gets its own trainable parameters.

  Raises:
    ActivationSpecError (a ValueError) naming the spec and the problem: an
    unknown name (with the nearest known one) or key, a bad value.
  """
  if isinstance(spec, keras.layers.Layer):
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
    return keras.layers.Activation(spec)
  raise ActivationSpecError(
      f"activation must be a spec string, a Keras layer or a callable, got "
      f"{type(spec).__name__} {spec!r}. Valid activations: "
      f"{'; '.join(list_activations())}")
