"""SmeLU / gSmeLU ops: values, joints, gradients, properties, dtypes, XLA."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from recsys_smelu import activations
from recsys_smelu import native
from recsys_smelu.activations import gsmelu, smelu
import tensorflow as tf

from conftest import graph_op_types, require_native_compiler

F64 = tf.float64


def _np(t) -> np.ndarray:
  return np.asarray(tf.cast(t, tf.float64))


def _grad(fn, x, *params):
  """Value and gradients of sum(fn(x, *params)) w.r.t. x and params."""
  x = tf.convert_to_tensor(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    for p in params:
      tape.watch(p)
    y = fn(x, *params)
  return y, tape.gradient(y, [x, *params])


# Plain piecewise formulas (recsys_smelu.activations' module docstring)
# differentiated by TF autodiff: the reference for the custom gradients.
def smelu_reference(x, beta):
  quadratic = (x + beta) ** 2 / (4 * beta)
  return tf.where(x <= -beta, tf.zeros_like(x),
                  tf.where(x >= beta, x, quadratic))


def gsmelu_reference(x, g_neg, g_pos, alpha, beta, t):
  left = t + g_neg * (x + alpha)
  middle = left + (g_pos - g_neg) * (x + alpha) ** 2 / (2 * (alpha + beta))
  right = t + (g_neg + g_pos) * (alpha + beta) / 2 + g_pos * (x - beta)
  return tf.where(x <= -alpha, left, tf.where(x >= beta, right, middle))


# --- values -----------------------------------------------------------------


def test_smelu_hand_values_beta_1_and_half():
  x = tf.constant([-3, -1, -0.5, 0, 0.5, 1, 3], F64)
  np.testing.assert_array_equal(
      smelu(x, 1.0).numpy(), [0, 0, 0.0625, 0.25, 0.5625, 1, 3])
  x = tf.constant([-0.5, -0.25, 0, 0.25, 0.5, 0.75], F64)
  np.testing.assert_array_equal(
      smelu(x, 0.5).numpy(), [0, 0.03125, 0.125, 0.28125, 0.5, 0.75])


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_smelu_exact_at_joints_and_slopes(beta):
  x = tf.constant([-beta, 0.0, beta], F64)
  y, (dx,) = _grad(lambda v: smelu(v, beta), x)
  np.testing.assert_allclose(y.numpy(), [0, beta / 4, beta], rtol=1e-15)
  np.testing.assert_allclose(dx.numpy(), [0, 0.5, 1], rtol=1e-15)


def test_smelu_infinities_and_nan():
  x = tf.constant([-np.inf, np.inf, np.nan], tf.float32)
  y, (dx,) = _grad(smelu, x)
  np.testing.assert_array_equal(y.numpy()[:2], [0, np.inf])
  assert np.isnan(y.numpy()[2])
  np.testing.assert_array_equal(dx.numpy()[:2], [0, 1])
  assert np.isnan(dx.numpy()[2])


def test_gsmelu_hand_values_asymmetric():
  # g_neg=-0.5, g_pos=2, alpha=0.5, beta=1.5, t=0.3: width 2, level 0.3 at
  # x=-0.5, 0.3 + (g_neg + g_pos) * 2 / 2 = 1.8 at x=1.5.
  params = dict(g_neg=-0.5, g_pos=2.0, alpha=0.5, beta=1.5, t=0.3)
  x = tf.constant([-1.5, -0.5, 0.5, 1.5, 2.5], F64)
  y, (dx,) = _grad(lambda v: gsmelu(v, **params), x)
  np.testing.assert_allclose(y.numpy(), [0.8, 0.3, 0.425, 1.8, 3.8],
                             rtol=1e-14)
  np.testing.assert_allclose(dx.numpy(), [-0.5, -0.5, 0.75, 2, 2],
                             rtol=1e-14)


def test_gsmelu_infinities_nan_and_flat_tails():
  x = tf.constant([-np.inf, np.inf, np.nan], tf.float32)
  np.testing.assert_array_equal(gsmelu(x).numpy()[:2], [0, np.inf])
  assert np.isnan(gsmelu(x).numpy()[2])
  # Zero slopes give flat tails even at +-inf (no 0 * inf = NaN).
  y = gsmelu(x, g_neg=0.0, g_pos=0.0, t=0.5).numpy()
  np.testing.assert_array_equal(y[:2], [0.5, 0.5])
  leaky = gsmelu(x, g_neg=-0.1, g_pos=1.0).numpy()
  np.testing.assert_array_equal(leaky[:2], [np.inf, np.inf])


def test_gsmelu_reduces_to_smelu_and_to_shifted_smelu():
  x = tf.constant(np.linspace(-4, 4, 81), F64)
  np.testing.assert_allclose(gsmelu(x, 0.0, 1.0, 0.7, 0.7, 0.0).numpy(),
                             smelu(x, 0.7).numpy(), atol=1e-15)
  # gsmelu = t + g_neg (x + alpha) + (g_pos - g_neg) smelu(x + (a - b)/2, (a + b)/2)
  g_neg, g_pos, alpha, beta, t = 0.2, 1.3, 0.4, 1.6, -0.3
  expected = (t + g_neg * (x + alpha) + (g_pos - g_neg) *
              smelu(x + (alpha - beta) / 2, (alpha + beta) / 2))
  np.testing.assert_allclose(gsmelu(x, g_neg, g_pos, alpha, beta, t).numpy(),
                             expected.numpy(), atol=1e-14)


def _joint_jumps(fn, joint, eps=1e-7):
  x = tf.constant([joint - eps, joint + eps], F64)
  y, (dx,) = _grad(fn, x)
  y, dx = y.numpy(), dx.numpy()
  return abs(y[1] - y[0]), abs(dx[1] - dx[0])


@pytest.mark.parametrize("fn,joints", [
    (lambda x: smelu(x, 0.8), [-0.8, 0.0, 0.8]),
    (lambda x: gsmelu(x, 0.1, 1.0, 1.0, 1.0, 0.0), [-1.0, 1.0]),
    (lambda x: gsmelu(x, -0.4, 2.0, 0.3, 1.7, 0.5), [-0.3, 1.7]),
    (lambda x: gsmelu(x, 1.5, -0.5, 2.0, 0.25, -1.0), [-2.0, 0.25]),
])
def test_value_and_slope_continuous_at_joints(fn, joints):
  for joint in joints:
    value_jump, slope_jump = _joint_jumps(fn, joint)
    # Across 2e-7 the value moves by |slope| * 2e-7 and the slope by
    # |g_pos - g_neg| / (alpha + beta) * 2e-7 at most; a kink or step would
    # leave a jump of order 1 (or 1e-7 * slope change for the value).
    assert value_jump <= 5e-7, (joint, value_jump)
    assert slope_jump <= 2e-6, (joint, slope_jump)


def test_beta_to_zero_is_relu():
  x = tf.constant(np.linspace(-3, 3, 601), F64)
  relu = tf.nn.relu(x).numpy()
  for beta in [1e-3, 1e-6, 1e-12]:
    y, (dx,) = _grad(lambda v, b=beta: smelu(v, b), x)
    np.testing.assert_allclose(y.numpy(), relu, atol=beta / 4 * (1 + 1e-12))
    away = np.abs(x.numpy()) > beta
    np.testing.assert_array_equal(dx.numpy()[away], (x.numpy() > 0)[away])


def test_large_beta_is_the_quadratic_everywhere_in_range():
  beta = 1e3
  x = tf.constant(np.linspace(-10, 10, 41), F64)
  y, (dx,) = _grad(lambda v: smelu(v, beta), x)
  xn = x.numpy()
  np.testing.assert_allclose(y.numpy(), (xn + beta) ** 2 / (4 * beta),
                             rtol=1e-14)
  # ... which near 0 is the line beta/4 + x/2 plus x^2 / (4 beta).
  np.testing.assert_allclose(dx.numpy(), 0.5 + xn / (2 * beta), rtol=1e-14)
  np.testing.assert_allclose(y.numpy(), beta / 4 + xn / 2, atol=0.026)


def test_constant_parameter_validation():
  with pytest.raises(ValueError, match="beta must be > 0"):
    smelu(tf.ones([2]), 0.0)
  with pytest.raises(ValueError, match="alpha must be > 0"):
    gsmelu(tf.ones([2]), alpha=-1.0)
  with pytest.raises(ValueError, match="t must be finite"):
    gsmelu(tf.ones([2]), t=np.nan)
  with pytest.raises(ValueError, match="floating"):
    smelu(tf.ones([2], tf.int32))


# --- gradients ----------------------------------------------------------------

_X64 = np.array([-2.7, -1.2, -0.6, -0.1, 0.2, 0.55, 0.9, 1.4, 3.1])


def _max_fd_error(fn, args):
  theoretical, numerical = tf.test.compute_gradient(fn, args, delta=1e-6)
  return max(float(np.max(np.abs(a - b)))
             for a, b in zip(theoretical, numerical))


def test_smelu_gradients_match_finite_differences_float64():
  x = tf.constant(_X64, F64)
  assert _max_fd_error(lambda v: smelu(v, 0.8), [x]) < 1e-7
  beta = tf.constant(0.8, F64)
  assert _max_fd_error(lambda v, b: smelu(v, b), [x, beta]) < 1e-7
  # d/dbeta by hand: (beta^2 - x^2) / (4 beta^2) inside, 0 outside.
  _, (_, dbeta) = _grad(smelu, x, beta)
  inside = np.abs(_X64) < 0.8
  assert dbeta.numpy() == pytest.approx(
      np.sum((0.64 - _X64[inside] ** 2) / (4 * 0.64)), rel=1e-14)


def test_smelu_per_unit_beta_gradient_float64():
  x = tf.constant(_X64[:8].reshape(2, 4), F64)
  beta = tf.constant([0.3, 0.8, 1.5, 2.0], F64)
  assert _max_fd_error(lambda v, b: smelu(v, b), [x, beta]) < 1e-7


@pytest.mark.parametrize("params", [
    (0.0, 1.0, 1.0, 1.0, 0.0),
    (0.1, 1.3, 0.7, 1.2, 0.2),
    (-0.4, 2.0, 0.3, 1.7, 0.5),
    (1.5, -0.5, 2.0, 0.25, -1.0),
])
def test_gsmelu_gradients_match_finite_differences_float64(params):
  x = tf.constant(_X64, F64)
  tensors = [tf.constant(p, F64) for p in params]
  assert _max_fd_error(lambda v, *p: gsmelu(v, *p), [x, *tensors]) < 1e-7


def test_gsmelu_per_unit_parameter_gradients_float64():
  x = tf.constant(_X64[:8].reshape(2, 4), F64)
  tensors = [tf.constant(v, F64) for v in (
      [0.0, 0.1, -0.2, 0.3], [1.0, 1.2, 0.8, 2.0], [0.5, 1.0, 1.5, 0.2],
      [1.0, 0.4, 2.0, 0.9], [0.0, 0.1, -0.1, 0.3])]
  assert _max_fd_error(lambda v, *p: gsmelu(v, *p), [x, *tensors]) < 1e-7
  # Mixed: only beta and t are tensors, the rest constants.
  assert _max_fd_error(
      lambda v, b, t: gsmelu(v, 0.1, 1.0, 0.5, b, t),
      [x, tensors[3], tensors[4]]) < 1e-7


def test_custom_gradients_equal_autodiff_of_piecewise_formula_float32():
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(0, 2, size=(64, 8)), tf.float32)
  beta = tf.constant(0.7, tf.float32)
  upstream = tf.constant(rng.normal(size=(64, 8)), tf.float32)
  loss = lambda f: (lambda v, *p: tf.reduce_sum(f(v, *p) * upstream))
  y, grads = _grad(loss(smelu), x, beta)
  y_ref, grads_ref = _grad(loss(smelu_reference), x, beta)
  np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-6)
  for got, want in zip(grads, grads_ref):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5,
                               atol=1e-5)
  params = [tf.constant(v, tf.float32) for v in (0.1, 1.2, 0.6, 1.1, 0.3)]
  y, grads = _grad(loss(gsmelu), x, *params)
  y_ref, grads_ref = _grad(loss(gsmelu_reference), x, *params)
  np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-6)
  for got, want in zip(grads, grads_ref):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5,
                               atol=1e-4)


# --- properties ---------------------------------------------------------------

_finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=16),
                    elements=_finite),
       beta=st.floats(1e-3, 1e2))
def test_smelu_monotone_and_within_beta_over_4_of_relu(x, beta):
  flat = np.sort(x.ravel())
  y_sorted = smelu(tf.constant(flat), beta).numpy()
  assert np.all(np.diff(y_sorted) >= 0)
  y = smelu(tf.constant(x), beta).numpy()
  assert y.shape == x.shape
  gap = y.astype(np.float64) - np.maximum(x, 0)
  assert np.all(gap >= 0)
  assert np.all(gap <= np.float32(beta) / 4 * (1 + 1e-6))


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float32, st.integers(1, 64), elements=_finite),
       g_neg=st.floats(0, 1), extra=st.floats(0, 2),
       alpha=st.floats(0.01, 5), beta=st.floats(0.01, 5))
def test_gsmelu_monotone_with_nonnegative_slopes(x, g_neg, extra, alpha, beta):
  flat = tf.constant(np.sort(x))
  y, (dx,) = _grad(lambda v: gsmelu(v, g_neg, g_neg + extra, alpha, beta), flat)
  assert np.all(np.diff(y.numpy()) >= -1e-6 * np.maximum(1, np.abs(y.numpy()[1:])))
  lo, hi = min(g_neg, g_neg + extra), max(g_neg, g_neg + extra)
  assert np.all(dx.numpy() >= np.float32(lo) * (1 - 1e-6) - 1e-7)
  assert np.all(dx.numpy() <= np.float32(hi) * (1 + 1e-6) + 1e-7)


# --- dtypes, fused kernels and XLA ---------------------------------------------

# float64's tolerance is set by the float32 parameter variables (0.1 in
# float32 is 0.1 + 1.5e-9).
_DTYPES = [(tf.float16, 2e-3), (tf.bfloat16, 1.6e-2), (tf.float32, 1e-6),
           (tf.float64, 1e-7)]
_XS = np.linspace(-3, 3, 25)


@pytest.mark.parametrize("dtype,rtol", _DTYPES)
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_dtype_matrix_forward_backward(dtype, rtol, mode):
  x = tf.constant(_XS, dtype)
  beta = tf.Variable(0.75, dtype=tf.float32)  # float32 variable, cast inside
  params = [tf.Variable(v, dtype=tf.float32) for v in (0.1, 1.0, 0.5, 1.5, 0.2)]

  def run(x):
    y1, g1 = _grad(smelu, x, beta)
    y2, g2 = _grad(gsmelu, x, *params)
    return y1, g1, y2, g2

  if mode != "eager":
    run = tf.function(run, jit_compile=(mode == "xla"))
  y1, (dx1, dbeta), y2, (dx2, *dparams) = run(x)
  for t in (y1, dx1, y2, dx2):
    assert t.dtype == dtype
  for t in (dbeta, *dparams):
    assert t.dtype == tf.float32
  x64 = tf.constant(_XS, F64)
  want1, (wdx1, wdbeta) = _grad(smelu_reference, x64, tf.constant(0.75, F64))
  want2, wgrads2 = _grad(gsmelu_reference, x64,
                         *[tf.constant(v, F64) for v in (0.1, 1.0, 0.5, 1.5, 0.2)])
  atol = 4 * rtol
  np.testing.assert_allclose(_np(y1), want1.numpy(), rtol=rtol, atol=atol)
  np.testing.assert_allclose(_np(dx1), wdx1.numpy(), rtol=rtol, atol=atol)
  np.testing.assert_allclose(_np(y2), want2.numpy(), rtol=rtol, atol=atol)
  np.testing.assert_allclose(_np(dx2), wgrads2[0].numpy(), rtol=rtol, atol=atol)
  # Parameter gradients are sums over 25 elements.
  np.testing.assert_allclose(float(dbeta), float(wdbeta), rtol=10 * rtol,
                             atol=25 * atol)
  for got, want in zip(dparams, wgrads2[1:]):
    np.testing.assert_allclose(float(got), float(want), rtol=10 * rtol,
                               atol=25 * atol)


def test_graph_fused_and_unfused_paths_agree():
  rng = np.random.default_rng(1)
  x = tf.constant(rng.normal(0, 2, size=(32, 16)), tf.float32)
  beta = tf.constant(rng.uniform(0.2, 2, size=16), tf.float32)

  def step(x):
    return _grad(lambda v, b: smelu(v, b) + gsmelu(v, 0.1, 1.1, b, 0.9), x, beta)

  fused = tf.function(step).get_concrete_function(x)
  with activations.fused_kernels(False):
    plain = tf.function(step).get_concrete_function(x)
  ops = lambda f: {op.type for op in f.graph.get_operations()}
  assert "StatefulPartitionedCall" in ops(fused) or "PartitionedCall" in ops(fused)
  assert "Maximum" in ops(plain)  # the formula inline, no compiled call
  assert activations.fused_kernels_enabled()
  # Same math; Grappler / XLA may reorder a rounding step (1 ulp).
  eager = tf.nest.flatten(step(x))
  for path in (fused, plain):
    for got, want in zip(tf.nest.flatten(path(x)), eager):
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6,
                                 atol=1e-6)


# --- the native SmeLU ops ----------------------------------------------------


def _native_required(monkeypatch):
  require_native_compiler()
  monkeypatch.setenv(native.ENV_SWITCH, "1")


def _value_and_input_grad(x, beta, dy):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = smelu(x, beta)
  return y, tape.gradient(y, x, output_gradients=dy)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_native_smelu_is_bit_identical_to_the_plain_ops(beta, monkeypatch):
  _native_required(monkeypatch)
  b = np.float32(beta)
  specials = [np.nan, -np.inf, np.inf, -0.0, 0.0, b, -b, 2 * b, -2 * b,
              np.nextafter(b, np.float32(0)), np.nextafter(b, np.float32(9)),
              np.nextafter(-b, np.float32(0)), np.nextafter(-b, np.float32(-9)),
              1e-30, -1e-30, 3e38, -3e38]
  rng = np.random.default_rng(int(beta * 10))
  values = np.concatenate([np.array(specials, np.float32),
                           rng.normal(0, 2 * beta, 4000).astype(np.float32)])
  x = tf.constant(values)
  dy = tf.constant(rng.normal(size=values.shape).astype(np.float32))
  traced = tf.function(_value_and_input_grad).get_concrete_function(x, beta, dy)
  assert {"SmeluForward", "SmeluBackward"} <= graph_op_types(traced)
  y, dx = traced(x, dy)
  want_y, want_dx = _value_and_input_grad(x, beta, dy)  # eager: plain ops
  np.testing.assert_array_equal(y.numpy(), want_y.numpy())
  np.testing.assert_array_equal(dx.numpy(), want_dx.numpy())
  assert np.isnan(y.numpy()[0]) and y.numpy()[1] == 0 and y.numpy()[2] == np.inf


@pytest.mark.parametrize("case", ["xla", "trainable_beta", "float16",
                                  "fused_off", "native_off"])
def test_native_smelu_only_where_it_applies(case, monkeypatch):
  _native_required(monkeypatch)
  if case == "native_off":
    monkeypatch.setenv(native.ENV_SWITCH, "0")
  dtype = tf.float16 if case == "float16" else tf.float32
  x = tf.constant(_XS, dtype)
  beta = tf.Variable(0.5) if case == "trainable_beta" else 0.5

  def step(x):
    return _grad(smelu, x)[1] if case != "trainable_beta" else _grad(
        smelu, x, beta)[1]

  function = tf.function(step, jit_compile=case == "xla")
  if case == "fused_off":
    with activations.fused_kernels(False):
      traced = function.get_concrete_function(x)
  else:
    traced = function.get_concrete_function(x)
  assert "SmeluForward" not in graph_op_types(traced)
  assert np.all(np.isfinite(tf.nest.flatten(traced(x))[0].numpy()))


def test_native_smelu_split_over_threads_is_bit_identical(monkeypatch):
  """Tensors over 2^20 elements run on the intra-op pool (smaller: inline)."""
  _native_required(monkeypatch)
  rng = np.random.default_rng(7)
  x = tf.constant(rng.normal(0, 2, (2**20 + 37,)).astype(np.float32))
  dy = tf.constant(rng.normal(size=x.shape).astype(np.float32))
  traced = tf.function(_value_and_input_grad).get_concrete_function(x, 0.7, dy)
  assert "SmeluForward" in graph_op_types(traced)
  for got, want in zip(traced(x, dy), _value_and_input_grad(x, 0.7, dy)):
    np.testing.assert_array_equal(got.numpy(), want.numpy())
