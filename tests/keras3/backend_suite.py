"""recsys_smelu.keras3 on the backend named by KERAS_BACKEND (one subprocess
per backend, started by test_keras3_backends.py with
RECSYS_SMELU_GOLDEN=<the TF-side golden .npz>). Not collected by the main
test run: its file name does not match test_*.py.

With RECSYS_SMELU_BLOCK_TENSORFLOW=1 any import of tensorflow or tf_keras
fails, so a passing run shows that this backend needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import os
import subprocess
import sys

_BLOCKED = ("tensorflow", "tf_keras", "tensorflow_recommenders")


class _BlockTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Finds the blocked modules (so probes such as torch's find_spec see a
  spec without origin) and fails when one is actually imported."""

  def find_spec(self, fullname, path=None, target=None):
    if fullname.split(".")[0] in _BLOCKED:
      return importlib.machinery.ModuleSpec(fullname, self)
    return None

  def create_module(self, spec):
    raise ImportError(f"{spec.name} is blocked in this test process "
                      "(RECSYS_SMELU_BLOCK_TENSORFLOW=1)")

  def exec_module(self, module):
    raise ImportError(f"{module.__name__} is blocked")


if os.environ.get("RECSYS_SMELU_BLOCK_TENSORFLOW") == "1":
  sys.meta_path.insert(0, _BlockTensorFlow())

import keras  # noqa: E402
from keras import ops  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smelu_cases  # noqa: E402

from recsys_smelu import keras3 as k3  # noqa: E402

BACKEND = keras.backend.backend()
GOLDEN = np.load(os.environ["RECSYS_SMELU_GOLDEN"])
X, DY = GOLDEN["x"], GOLDEN["dy"]
HALF = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def test_backend_is_the_requested_one():
  assert BACKEND == os.environ["KERAS_BACKEND"]
  assert "TF_USE_LEGACY_KERAS" not in os.environ
  if os.environ.get("RECSYS_SMELU_BLOCK_TENSORFLOW") == "1":
    assert "tensorflow" not in sys.modules


def test_constants_match_the_tf_side():
  assert k3.MIN_POSITIVE == GOLDEN["MIN_POSITIVE"]


# ---------------------------------------------------------------------------
# Backend-specific autodiff: y, dx and tensor-parameter gradients of
# sum(dy * fn(x, **constants, **params)).
# ---------------------------------------------------------------------------


def _tensor(array, dtype=None):
  return ops.convert_to_tensor(np.asarray(array), dtype=dtype)


def _numpy(tensor) -> np.ndarray:
  return np.asarray(ops.convert_to_numpy(tensor))


def vjp(fn, x, params: dict, dy, compiled: bool = False):
  """(y, dx, {name: dparam}) as numpy, eager or compiled (jax.jit /
  tf.function(jit_compile=True); PyTorch runs eagerly)."""
  names = list(params)
  if BACKEND == "jax":
    import jax  # pylint: disable=g-import-not-at-top

    def run(x, values, dy):
      y, pullback = jax.vjp(lambda x, v: fn(x, **dict(zip(names, v))), x,
                            values)
      dx, dvalues = pullback(dy)
      return y, dx, dvalues

    if compiled:
      run = jax.jit(run)
    y, dx, dvalues = run(x, [params[n] for n in names], dy)
  elif BACKEND == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def run(x, values, dy):
      with tf.GradientTape() as tape:
        tape.watch([x, *values])
        y = fn(x, **dict(zip(names, values)))
      dx, dvalues = tape.gradient(y, [x, values], output_gradients=dy)
      return y, dx, dvalues

    if compiled:
      run = tf.function(run, jit_compile=True)
    y, dx, dvalues = run(x, [params[n] for n in names], dy)
  elif BACKEND == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    x = x.detach().requires_grad_(True)
    values = [params[n].detach().requires_grad_(True) for n in names]
    y = fn(x, **dict(zip(names, values)))
    dx, *dvalues = torch.autograd.grad(y, [x, *values], grad_outputs=dy)
  else:
    pytest.skip(f"no autodiff helper for backend {BACKEND}")
  return _numpy(y), _numpy(dx), dict(zip(names, map(_numpy, dvalues)))


def _case_fn(case: str):
  function, constants, _ = smelu_cases.CASES[case]
  op = getattr(k3, function)
  return lambda x, **params: op(x, **constants, **params)


def _assert_close_f32(actual, expected, what: str):
  """|actual - expected| <= 1e-6 max(1, |expected|), elementwise."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, what
  same_nan = np.isnan(actual) == np.isnan(expected)
  assert same_nan.all(), f"{what}: NaN positions differ"
  finite = np.isfinite(expected)
  assert (actual[~finite & ~np.isnan(expected)] ==
          expected[~finite & ~np.isnan(expected)]).all(), f"{what}: infs"
  error = np.abs(actual[finite] - expected[finite])
  bound = 1e-6 * np.maximum(1.0, np.abs(expected[finite]))
  worst = np.max(error / bound) if error.size else 0.0
  assert worst <= 1.0, f"{what}: error {worst:.3g}x the 1e-6 bound"


def _ordered(values: np.ndarray) -> np.ndarray:
  """Half-precision values as integers whose difference counts ulps."""
  bits = values.view(np.uint16).astype(np.int32)
  magnitude = bits & 0x7FFF
  return np.where(bits & 0x8000, -magnitude, magnitude)


def _assert_within_one_ulp(actual, expected_f32, dtype: str, what: str):
  half = HALF[dtype]
  actual = np.asarray(actual).astype(half)
  expected = np.asarray(expected_f32, np.float32).astype(half)
  ulps = np.abs(_ordered(actual) - _ordered(expected))
  assert ulps.max() <= 1, f"{what}: {ulps.max()} ulps from float32 cast down"


# ---------------------------------------------------------------------------
# Numbers against the TF-side golden arrays.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [False, True],
                         ids=["eager", "compiled"])
@pytest.mark.parametrize("case", list(smelu_cases.CASES))
def test_float32_values_and_gradients_match_the_tf_side(case, compiled):
  _, _, tensor_params = smelu_cases.CASES[case]
  params = {k: _tensor(v, "float32") for k, v in tensor_params.items()}
  y, dx, dparams = vjp(_case_fn(case), _tensor(X), params, _tensor(DY),
                       compiled=compiled)
  assert y.dtype == np.float32 and dx.dtype == np.float32
  _assert_close_f32(y, GOLDEN[f"{case}/y"], f"{case} y")
  _assert_close_f32(dx, GOLDEN[f"{case}/dx"], f"{case} dx")
  for name, grad in dparams.items():
    assert grad.shape == np.shape(tensor_params[name]), name
    _assert_close_f32(grad, GOLDEN[f"{case}/d_{name}"], f"{case} d_{name}")


@pytest.mark.parametrize("case", [  # per-unit vectors do not fit SPECIAL_X
    case for case, (_, _, tensor_params) in smelu_cases.CASES.items()
    if all(np.ndim(v) == 0 for v in tensor_params.values())])
def test_special_values_match_the_tf_side(case):
  _, _, tensor_params = smelu_cases.CASES[case]
  params = {k: _tensor(v, "float32") for k, v in tensor_params.items()}
  y = _numpy(_case_fn(case)(_tensor(smelu_cases.SPECIAL_X), **params))
  _assert_close_f32(y, GOLDEN[f"{case}/special_y"], f"{case} special")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("compiled", [False, True],
                         ids=["eager", "compiled"])
@pytest.mark.parametrize("case", list(smelu_cases.CASES))
def test_half_precision_within_one_ulp_of_float32_cast_down(case, compiled,
                                                             dtype):
  _, _, tensor_params = smelu_cases.CASES[case]
  x = X.astype(HALF[dtype])
  assert (x.astype(np.float32) == X).all()  # the inputs are exact in half
  params = {k: _tensor(v, "float32") for k, v in tensor_params.items()}
  y, dx, dparams = vjp(_case_fn(case), _tensor(x, dtype), params,
                       _tensor(DY.astype(HALF[dtype]), dtype),
                       compiled=compiled)
  assert keras.backend.standardize_dtype(y.dtype) == dtype
  _assert_within_one_ulp(y, GOLDEN[f"{case}/y"], dtype, f"{case} y")
  _assert_within_one_ulp(dx, GOLDEN[f"{case}/dx"], dtype, f"{case} dx")
  for name, grad in dparams.items():  # float32 parameters: float32 grads
    assert grad.dtype == np.float32
    _assert_close_f32(grad, GOLDEN[f"{case}/d_{name}"], f"{case} d_{name}")


@pytest.mark.parametrize("case", list(smelu_cases.LAYER_CASES))
def test_layers_match_the_tf_side_layers(case):
  class_name, kwargs = smelu_cases.LAYER_CASES[case]
  layer = getattr(k3, class_name)(**kwargs)
  layer.build(X.shape)
  variables = layer._raw_variables  # pylint: disable=protected-access
  for name, variable in variables.items():
    np.testing.assert_array_equal(_numpy(variable),
                                  GOLDEN[f"{case}/raw_{name}"])
  names = list(variables)
  trainable = [variables[n] for n in names]
  assert [id(v) for v in layer.trainable_variables] == list(map(id, trainable))
  if BACKEND == "jax":
    import jax  # pylint: disable=g-import-not-at-top

    def pure(values, x):  # the layer with its variables as inputs
      return layer.stateless_call(values, [], x)[0]

    y, pullback = jax.vjp(pure, [v.value for v in trainable], _tensor(X))
    grads, _ = pullback(_tensor(DY))
  elif BACKEND == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.GradientTape() as tape:
      y = layer(_tensor(X))
    grads = tape.gradient(y, [v.value for v in trainable],
                          output_gradients=_tensor(DY))
  elif BACKEND == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    y = layer(_tensor(X))
    grads = torch.autograd.grad(y, [v.value for v in trainable],
                                grad_outputs=_tensor(DY))
  else:
    pytest.skip(f"no autodiff helper for backend {BACKEND}")
  y, dparams = _numpy(y), dict(zip(names, map(_numpy, grads)))
  _assert_close_f32(y, GOLDEN[f"{case}/y"], f"{case} y")
  for name in names:
    _assert_close_f32(dparams[name], GOLDEN[f"{case}/d_{name}"],
                      f"{case} d_{name}")


# ---------------------------------------------------------------------------
# Gradients against finite differences on this backend (float32, central
# differences; points within 3 eps of a joint are left out).
# ---------------------------------------------------------------------------

_EPS = 1e-2


@pytest.mark.parametrize("case", list(smelu_cases.CASES))
def test_gradients_match_finite_differences(case):
  function, constants, tensor_params = smelu_cases.CASES[case]
  fn = _case_fn(case)
  all_params = {**constants, **tensor_params}
  away = np.ones(X.shape, bool)
  for joint in smelu_cases.joints(function, all_params):
    away &= np.abs(X - np.asarray(joint, np.float32)) > 3 * _EPS
  params = {k: _tensor(v, "float32") for k, v in tensor_params.items()}
  _, dx, dparams = vjp(fn, _tensor(X), params, _tensor(DY))

  def value(x, **changed):
    return _numpy(fn(_tensor(x), **{**params, **changed})).astype(np.float64)

  numeric_dx = (value(X + _EPS) - value(X - _EPS)) / (2 * _EPS)
  np.testing.assert_allclose(dx[away], (DY * numeric_dx)[away], atol=2e-4)
  for name, base in tensor_params.items():
    base = np.asarray(base, np.float32)
    up = value(X, **{name: _tensor(base + _EPS, "float32")})
    down = value(X, **{name: _tensor(base - _EPS, "float32")})
    # Per element d y / d param; summed as the parameter was broadcast.
    numeric = DY * (up - down) / (2 * _EPS)
    numeric = np.where(away, numeric, 0.0)
    reduce_axes = tuple(range(X.ndim)) if base.ndim == 0 else (0,)
    analytic_terms = np.where(away, DY, 0.0)
    # The analytic gradient restricted to the same elements: recompute with
    # dy zeroed near the joints.
    _, _, masked = vjp(fn, _tensor(X), params,
                       _tensor(analytic_terms.astype(np.float32)))
    np.testing.assert_allclose(masked[name], numeric.sum(axis=reduce_axes),
                               rtol=1e-3, atol=2e-3, err_msg=name)
    assert np.abs(dparams[name]).max() > 0, name


# ---------------------------------------------------------------------------
# The backward pass keeps only x and the parameters.
# ---------------------------------------------------------------------------


@ops.custom_gradient
def _saves_an_intermediate(x):
  """x sigmoid(x) whose backward reads the forward's sigmoid: the checks
  below must catch this."""
  s = ops.sigmoid(x)

  def grad(*args, upstream=None):
    upstream = args[-1] if upstream is None else upstream
    return upstream * (s + x * s * (1 - s))

  return x * s, grad


def test_backward_saves_only_x_and_the_parameters():
  beta = _tensor(np.float32(0.7))
  params5 = {k: _tensor(v, "float32")
             for k, v in smelu_cases.CASES["gsmelu_tensor"][2].items()}
  x = _tensor(X)
  if BACKEND == "jax":
    import jax  # pylint: disable=g-import-not-at-top

    def residuals(f, *args):
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        jax.ad_checkpoint.print_saved_residuals(f, *args)
      return out.getvalue().strip().splitlines()

    assert residuals(lambda x: k3.smelu(x, 1.0), x) == [
        "f32[64,8] from the argument x"]
    assert any("output of logistic" in line
               for line in residuals(_saves_an_intermediate, x))
    assert residuals(lambda x: k3.smelu(x, 1.0),
                     x.astype("bfloat16")) == [
                         "bf16[64,8] from the argument x"]
    assert residuals(lambda x, b: k3.smelu(x, b), x, beta) == [
        "f32[64,8] from the argument x", "f32[] from the argument b"]
    lines = residuals(lambda x, p: k3.gsmelu(x, **p), x, params5)
    assert lines[0] == "f32[64,8] from the argument x"
    # t needs no residual: its gradient is dy itself.
    assert lines[1:] == [f"f32[] from the argument p['{name}']"
                         for name in ("alpha", "beta", "g_neg", "g_pos")]
  elif BACKEND == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def forward_tensors_read_by_backward(fn, *specs):
      """Names of the non-constant nodes that both the forward output and
      the gradients depend on: what the backward reads from the forward."""

      @tf.function
      def step(x, dy, *params):
        with tf.GradientTape() as tape:
          tape.watch([x, *params])
          y = fn(x, *params)
        return tape.gradient(y, [x, *params], output_gradients=dy)

      graph = step.get_concrete_function(
          tf.TensorSpec([None, 8]), tf.TensorSpec([None, 8]), *specs).graph
      nodes = {n.name: n for n in graph.as_graph_def().node}

      def ancestors(names):
        seen, todo = set(), list(names)
        while todo:
          name = todo.pop().split(":")[0].lstrip("^")
          if name not in seen:
            seen.add(name)
            todo.extend(nodes[name].input)
        return seen

      # The custom-gradient marker (IdentityN) takes the forward output first.
      marker = [n for n in nodes.values() if n.op == "IdentityN"]
      assert len(marker) == 1
      forward = ancestors([marker[0].input[0]])
      assert "dy" not in forward
      backward = ancestors([t.name for t in graph.outputs]) - {marker[0].name}
      return {name for name in forward & backward
              if nodes[name].op != "Const"}

    assert forward_tensors_read_by_backward(
        lambda x: k3.smelu(x, 1.0)) == {"x"}
    assert forward_tensors_read_by_backward(_saves_an_intermediate) == {
        "x", "Sigmoid"}
    assert forward_tensors_read_by_backward(
        lambda x, b: k3.smelu(x, b), tf.TensorSpec([])) == {"x", "params_0"}
    assert forward_tensors_read_by_backward(
        lambda x: k3.gsmelu(x, 0.1, 1.2, 0.8, 1.5, -0.1)) == {"x"}
  elif BACKEND == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    saved = []
    x = x.detach().requires_grad_(True)
    beta = beta.detach().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t) or t, lambda t: t):
      y = k3.smelu(x, beta)
    # keras's autograd function saves its inputs: x and beta, nothing else.
    assert [t.data_ptr() for t in saved] == [x.data_ptr(), beta.data_ptr()]

    def closure_tensors(y):
      """Tensors the gradient function's closure holds (besides saved)."""
      cells = y.grad_fn.grad_fn.__closure__ or ()
      found = []
      for cell in cells:
        value = cell.cell_contents
        items = value if isinstance(value, (tuple, list)) else (value,)
        found += [t for t in items if isinstance(t, torch.Tensor)]
      return {t.data_ptr() for t in found}

    assert closure_tensors(y) <= {x.data_ptr(), beta.data_ptr()}
    assert not closure_tensors(_saves_an_intermediate(x)) <= {x.data_ptr()}
    y.backward(_tensor(DY))
  else:
    pytest.skip(f"no residual check for backend {BACKEND}")


# ---------------------------------------------------------------------------
# Layers: training, serialization, mixed precision.
# ---------------------------------------------------------------------------


def _model():
  keras.utils.set_random_seed(0)
  return keras.Sequential([
      keras.Input((smelu_cases.UNITS,)),
      keras.layers.Dense(16),
      k3.SmeLU(beta=0.5, trainable_beta=True, per_unit=True),
      keras.layers.Dense(8),
      k3.GeneralizedSmeLU(g_neg=0.05, trainable_params=True),
      keras.layers.Dense(8),
      k3.get_activation("smelu:beta=0.75"),
      keras.layers.Dense(1),
  ])


def test_trainable_parameters_learn_and_keras_file_round_trips(tmp_path):
  model = _model()
  model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
  smelu_layer, gsmelu_layer = model.layers[1], model.layers[3]
  before = {w.path: _numpy(w) for w in
            smelu_layer.trainable_weights + gsmelu_layer.trainable_weights}
  assert [tuple(w.shape) for w in smelu_layer.trainable_weights] == [(16,)]
  assert len(gsmelu_layer.trainable_weights) == 5
  rng = np.random.default_rng(0)
  x = rng.normal(size=(128, smelu_cases.UNITS)).astype(np.float32)
  y = (np.abs(x).sum(axis=1, keepdims=True) - 3.0).astype(np.float32)
  model.fit(x, y, epochs=3, batch_size=32, verbose=0)
  for w in smelu_layer.trainable_weights + gsmelu_layer.trainable_weights:
    assert not np.array_equal(_numpy(w), before[w.path]), w.path
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded.layers[1], k3.SmeLU)
  assert isinstance(loaded.layers[3], k3.GeneralizedSmeLU)
  assert loaded.layers[1].get_config()["per_unit"]
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(_numpy(a), _numpy(b))
  np.testing.assert_array_equal(_numpy(model(x[:16])), _numpy(loaded(x[:16])))
  # beta stays positive however far training pushes raw.
  smelu_layer.trainable_weights[0].assign(np.full((16,), -50.0, np.float32))
  beta = _numpy(smelu_layer.parameter_values()["beta"])
  assert (beta >= k3.MIN_POSITIVE).all()


def test_functions_serialize_as_dense_activations(tmp_path):
  model = keras.Sequential([keras.Input((4,)),
                            keras.layers.Dense(4, activation=k3.smelu)])
  path = str(tmp_path / "dense.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
  np.testing.assert_array_equal(_numpy(model(x)), _numpy(loaded(x)))


def test_mixed_precision_keeps_parameters_in_float32():
  layer = k3.SmeLU(beta=0.5, trainable_beta=True, dtype="mixed_bfloat16")
  y = layer(_tensor(X))
  assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
  assert keras.backend.standardize_dtype(
      layer.trainable_weights[0].dtype) == "float32"
  _assert_within_one_ulp(
      _numpy(y).astype(np.float32),
      _numpy(k3.smelu(_tensor(X.astype(ml_dtypes.bfloat16), "bfloat16"),
                      0.5)).astype(np.float32), "bfloat16", "mixed")


# Every name of recsys_smelu.activation_specs, some with parameters.
_ALL_SPECS = [
    "relu", "smelu", "smelu:beta=0.5,trainable=true,per_unit=true",
    "gsmelu:g_neg=0.1,trainable=true", "gelu", "gelu:approximate=true",
    "swish", "softplus", "tanh", "elu:alpha=0.5", "selu",
    "leaky_relu:alpha=0.1", "linear"]


def test_get_activation_builds_every_spec():
  x = _tensor(X[:4])
  for spec in _ALL_SPECS:
    layer = k3.get_activation(spec)
    assert isinstance(layer, keras.layers.Layer), spec
    assert tuple(layer(x).shape) == tuple(X[:4].shape), spec
  np.testing.assert_allclose(_numpy(k3.get_activation("linear")(x)), X[:4])
  np.testing.assert_allclose(_numpy(k3.get_activation("smelu:beta=0.5")(x)),
                             _numpy(k3.smelu(x, 0.5)))
  exact = _numpy(k3.get_activation("gelu")(x))
  approx = _numpy(k3.get_activation("gelu:approximate=true")(x))
  assert 0 < np.abs(exact - approx).max() < 1e-2
  assert {spec.split(":")[0] for spec in _ALL_SPECS} == set(
      k3.activation_specs.SPECS)
  v = X[:4].astype(np.float64)
  expected = {
      "relu": np.maximum(v, 0), "swish": v / (1 + np.exp(-v)),
      "softplus": np.log1p(np.exp(v)), "tanh": np.tanh(v),
      "elu:alpha=0.5": np.where(v > 0, v, 0.5 * np.expm1(v)),
      "leaky_relu:alpha=0.1": np.where(v > 0, v, 0.1 * v),
      "selu": 1.0507009873554805 * np.where(
          v > 0, v, 1.6732632423543772 * np.expm1(v)),
  }
  for spec, values in expected.items():
    np.testing.assert_allclose(_numpy(k3.get_activation(spec)(x)), values,
                               rtol=1e-5, atol=1e-6, err_msg=spec)


# ---------------------------------------------------------------------------
# Bad input: ValueError naming the parameter.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("call,name", [
    (lambda x: k3.smelu(x, 0.0), "beta must be > 0"),
    (lambda x: k3.smelu(x, -1.0), "beta must be > 0"),
    (lambda x: k3.smelu(x, float("nan")), "beta must be finite"),
    (lambda x: k3.smelu(x, float("inf")), "beta must be finite"),
    (lambda x: k3.smelu(x, np.array([1.0, 0.0])), "beta must be > 0"),
    (lambda x: k3.gsmelu(x, alpha=0.0), "alpha must be > 0"),
    (lambda x: k3.gsmelu(x, beta=-2.0), "beta must be > 0"),
    (lambda x: k3.gsmelu(x, t=float("inf")), "t must be finite"),
    (lambda x: k3.gsmelu(x, g_neg=float("nan")), "g_neg must be finite"),
    (lambda x: k3.smelu(np.arange(4), 1.0), "floating input x, got int"),
    (lambda x: k3.gsmelu(_tensor([1, 2], "int32")),
     "floating input x, got int32"),
    (lambda x: k3.SmeLU(beta=0.0), "beta must be > 0"),
    (lambda x: k3.GeneralizedSmeLU(alpha=-1.0), "alpha must be > 0"),
    (lambda x: k3.GeneralizedSmeLU(trainable_params=["gamma"]),
     "unknown trainable_params ['gamma']"),
    (lambda x: k3.get_activation("smelu:gamma=1"),
     "unknown parameter 'gamma' for 'smelu'"),
    (lambda x: k3.get_activation("smeluu"),
     "unknown activation 'smeluu' (nearest: 'smelu')"),
    (lambda x: k3.get_activation("smelu:beta=0"), "beta='0' must be > 0"),
])
def test_bad_input_raises_value_error_naming_the_parameter(call, name):
  with pytest.raises(ValueError) as info:
    call(_tensor(X))
  assert name in str(info.value)


def test_module_imports_no_keras2_tf_keras_or_tfrs():
  code = (
      "import os, sys\n"
      "import recsys_smelu.keras3\n"
      "bad = [m for m in sys.modules if m.split('.')[0] in "
      "('tf_keras', 'tensorflow_recommenders') or m in "
      "('recsys_smelu.activations', 'recsys_smelu.models', "
      "'recsys_smelu.tf_keras2', 'recsys_smelu.train', 'recsys_smelu.data')]\n"
      "assert not bad, bad\n"
      "assert 'TF_USE_LEGACY_KERAS' not in os.environ\n"
      "tf = sys.modules.get('tensorflow')\n"
      "print('tensorflow' if tf else 'no-tensorflow')\n")
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  result = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  if BACKEND != "tensorflow":
    assert result.stdout.strip().endswith("no-tensorflow"), result.stdout
