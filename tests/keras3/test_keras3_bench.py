"""scripts/bench_activations.py --keras3: JSON of jitted forward+backward
times on Keras 3/JAX, run (tiny shape) with every import of TensorFlow
blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, RUN_SCRIPT_WITHOUT_TENSORFLOW

_SCRIPT = os.path.join(REPO_ROOT, "scripts", "bench_activations.py")


def _bench(*args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
  env["PYTHONPATH"] = REPO_ROOT
  return subprocess.run(
      [sys.executable, "-c", RUN_SCRIPT_WITHOUT_TENSORFLOW, _SCRIPT, "--keras3",
       *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("dtype,short", [("float32", "f32"),
                                         ("bfloat16", "bf16")])
def test_keras3_benchmark_json(dtype, short):
  result = _bench("--shape=64,32", "--repeats=3", "--warmup=1",
                  f"--dtype={dtype}")
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report["keras3"] and report["backend"] == "jax"
  assert report["dtype"] == dtype and report["shape"] == [64, 32]
  assert report["device"].startswith(("CPU: ", "GPU: ", "TPU: "))
  jit = report["modes"]["jit"]
  assert set(jit) == {"relu", "smelu", "gsmelu", "gelu", "gelu_tanh",
                      "swish", "softplus"}
  assert jit["relu"]["ratio_to_relu"] == 1.0
  for timing in jit.values():
    assert timing["ms"] > 0 and timing["p10_ms"] <= timing["p90_ms"]
  # SmeLU's backward keeps only x; GELU's keeps intermediates.
  assert report["saved_residuals"]["smelu"] == [
      f"{short}[64,32] from the argument x"]
  assert report["saved_residuals"]["gsmelu"] == [
      f"{short}[64,32] from the argument x"]
  assert len(report["saved_residuals"]["gelu"]) > 1
  assert set(report["targets"]) == {"smelu_at_most_1.10x_relu",
                                    "smelu_faster_than_gelu",
                                    "smelu_faster_than_swish"}


def test_keras3_benchmark_refuses_another_backend():
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env.update(PYTHONPATH=REPO_ROOT, KERAS_BACKEND="torch")
  result = subprocess.run([sys.executable, _SCRIPT, "--keras3"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "run with KERAS_BACKEND=jax or unset, not 'torch'" in result.stderr
