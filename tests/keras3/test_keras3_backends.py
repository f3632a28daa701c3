"""recsys_smelu.keras3 on every Keras 3 backend against the TF-side ops.

This process (Keras 2 behind tf.keras, see tests/conftest.py) writes golden
arrays with ``recsys_smelu.activations`` into a temporary .npz; then each
backend runs ``backend_suite.py`` in its own subprocess with
``KERAS_BACKEND`` set, reading those arrays. The JAX run blocks any import of
TensorFlow, so it also shows the JAX path needs none. PyTorch is optional
(its PyPI wheels pull CUDA packages): skipped with a reason when absent.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smelu_cases  # noqa: E402  pylint: disable=wrong-import-position

from recsys_smelu import activations  # noqa: E402
import tensorflow as tf  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402

_SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "backend_suite.py")


def _tf_side(function: str, x, dy, constants: dict, tensor_params: dict):
  """y, dx and the tensor parameters' gradients from the TF-side op."""
  fn = getattr(activations, function)
  x = tf.constant(x)
  params = {k: tf.constant(v) for k, v in tensor_params.items()}
  with tf.GradientTape() as tape:
    tape.watch([x, *params.values()])
    y = fn(x, **constants, **params)
  dx, dparams = tape.gradient(y, [x, params], output_gradients=tf.constant(dy))
  return y.numpy(), dx.numpy(), {k: v.numpy() for k, v in dparams.items()}


def _tf_side_layer(class_name: str, kwargs: dict, x, dy):
  layer = getattr(activations, class_name)(**kwargs)
  x = tf.constant(x)
  layer.build(x.shape)
  with tf.GradientTape() as tape:
    y = layer(x)
  names = list(layer._raw_variables)  # pylint: disable=protected-access
  grads = tape.gradient(
      y, [layer._raw_variables[n] for n in names],  # pylint: disable=protected-access
      output_gradients=tf.constant(dy))
  out = {"y": y.numpy()}
  for name, grad in zip(names, grads):
    out[f"d_{name}"] = grad.numpy()
    out[f"raw_{name}"] = layer._raw_variables[name].numpy()  # pylint: disable=protected-access
  return out


def write_golden(path: str) -> None:
  """Every case of smelu_cases through the TF-side ops, into ``path``."""
  x, dy = smelu_cases.inputs()
  arrays = {"x": x, "dy": dy, "special_x": smelu_cases.SPECIAL_X,
            "MIN_POSITIVE": np.float64(activations.MIN_POSITIVE)}
  for case, (function, constants, tensor_params) in smelu_cases.CASES.items():
    y, dx, dparams = _tf_side(function, x, dy, constants, tensor_params)
    arrays[f"{case}/y"] = y
    arrays[f"{case}/dx"] = dx
    for name, grad in dparams.items():
      arrays[f"{case}/d_{name}"] = grad
    special, _, _ = _tf_side(function, smelu_cases.SPECIAL_X,
                             np.ones_like(smelu_cases.SPECIAL_X), constants,
                             {k: v for k, v in tensor_params.items()
                              if np.ndim(v) == 0})
    arrays[f"{case}/special_y"] = special
  for case, (class_name, kwargs) in smelu_cases.LAYER_CASES.items():
    for key, value in _tf_side_layer(class_name, kwargs, x, dy).items():
      arrays[f"{case}/{key}"] = value
  np.savez(path, **arrays)


@pytest.fixture(scope="module")
def golden_path(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("keras3_golden") / "tf_side.npz")
  write_golden(path)
  return path


def test_golden_arrays_are_written_by_the_tf_side(golden_path):
  golden = np.load(golden_path)
  x = golden["x"]
  # Spot-check one value against the formula, so a broken writer fails here.
  beta = 1.0
  expected = np.where(x >= beta, x, np.where(x <= -beta, 0.0,
                                             (x + beta) ** 2 / (4 * beta)))
  np.testing.assert_allclose(golden["smelu_beta1/y"], expected, rtol=1e-6,
                             atol=1e-7)
  assert golden["gsmelu_per_unit/d_alpha"].shape == (smelu_cases.UNITS,)


def _run_suite(backend: str, golden_path: str, extra_env: dict | None = None):
  python_path = os.pathsep.join(
      p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
  env = {"KERAS_BACKEND": backend, "RECSYS_SMELU_GOLDEN": golden_path,
         "PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "2",
         "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
  env.update(extra_env or {})
  # The parent process runs Keras 2 behind tf.keras; the child must not
  # inherit that choice.
  child_env = {k: v for k, v in os.environ.items()
               if k != "TF_USE_LEGACY_KERAS"}
  child_env.update(env)
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       f"--confcutdir={os.path.dirname(_SUITE)}", "-o", "addopts=", _SUITE],
      cwd=REPO_ROOT, env=child_env, capture_output=True, text=True,
      timeout=900)
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-8000:]
  assert " passed" in output and " failed" not in output, output[-3000:]
  return output


@pytest.mark.slow
def test_tensorflow_backend(golden_path):
  _run_suite("tensorflow", golden_path)


@pytest.mark.slow
def test_jax_backend_without_tensorflow(golden_path):
  _run_suite("jax", golden_path, {"RECSYS_SMELU_BLOCK_TENSORFLOW": "1"})


@pytest.mark.slow
def test_torch_backend(golden_path):
  if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed (optional, kept out of CI: its PyPI "
                "wheels pull CUDA packages); pip install torch to run this")
  _run_suite("torch", golden_path, {"RECSYS_SMELU_BLOCK_TENSORFLOW": "1"})
