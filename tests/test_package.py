"""Package import contract, as a user imports it (each case in a fresh process).

* ``import recsys_smelu`` and its TF-free parts (config, metrics, report) load
  neither TensorFlow nor Keras and leave ``TF_USE_LEGACY_KERAS`` alone.
* The tf.keras parts (activations, models, train, export) make ``tf.keras``
  Keras 2, also when tensorflow was imported first, and fail clearly when
  ``tf.keras`` was already resolved to Keras 3.
* TensorFlow's start-up noise is hidden unless asked for.
"""

import os
import subprocess
import sys

import pytest

_HEAVY = ("tensorflow", "keras", "tf_keras", "tensorflow_recommenders", "jax",
          "torch")


def _run(code: str, **env) -> subprocess.CompletedProcess:
  full_env = {k: v for k, v in os.environ.items()
              if k not in ("TF_USE_LEGACY_KERAS", "RECSYS_SMELU_TF_LOGS")}
  full_env.update(env)
  return subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, env=full_env, timeout=180)


@pytest.mark.parametrize("modules", [
    "recsys_smelu",
    "recsys_smelu.config",
    "recsys_smelu.metrics",
    "recsys_smelu.report",
    "recsys_smelu.activation_params",
    "recsys_smelu.config, recsys_smelu.metrics, recsys_smelu.report",
])
def test_light_parts_import_no_tensorflow_or_keras(modules):
  result = _run(f"import os, sys; import {modules}\n"
                f"heavy = [m for m in {_HEAVY!r} if m in sys.modules]\n"
                "print(heavy, os.environ.get('TF_USE_LEGACY_KERAS'))")
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "[] None", result.stdout


def test_metrics_and_report_work_without_tensorflow_importable():
  # A tensorflow that cannot be imported at all: the TF-free parts still work.
  code = ("import sys; sys.modules['tensorflow'] = None\n"
          "from recsys_smelu import metrics, report\n"
          "print(round(metrics.log_loss([0, 1], [0.5, 0.5]), 6))")
  result = _run(code)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "0.693147"


@pytest.mark.parametrize("module", ["activations", "models", "train", "export"])
def test_tf_keras_parts_make_tf_keras_keras2(module):
  result = _run(f"import recsys_smelu.{module}, os, tensorflow as tf\n"
                "print(tf.keras.__name__, os.environ['TF_USE_LEGACY_KERAS'])")
  assert result.returncode == 0, result.stderr
  name, flag = result.stdout.split()
  assert name.startswith("tf_keras") and flag == "1"


def test_tensorflow_imported_first_but_keras_untouched_is_fine():
  result = _run("import tensorflow as tf; import recsys_smelu.models; "
                "print(tf.keras.__name__)")
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("tf_keras")


def test_keras3_already_resolved_fails_with_clear_message():
  code = "import tensorflow as tf; tf.keras.layers.Dense; import recsys_smelu"
  light = _run(code)
  assert light.returncode == 0, light.stderr  # the package itself is fine
  heavy = _run(code + ".models")
  assert heavy.returncode != 0
  assert "need tf.keras to be Keras 2" in heavy.stderr
  assert "TF_USE_LEGACY_KERAS=1" in heavy.stderr
  assert "recsys_smelu.keras3" in heavy.stderr


def test_startup_noise_hidden_by_default_and_shown_on_request():
  quiet = _run("import recsys_smelu.models")
  assert quiet.returncode == 0, quiet.stderr
  assert "oneDNN" not in quiet.stderr and "cuda" not in quiet.stderr.lower()
  loud = _run("import recsys_smelu.models", RECSYS_SMELU_TF_LOGS="1",
              TF_CPP_MIN_LOG_LEVEL="0")
  assert loud.returncode == 0, loud.stderr
  assert loud.stderr.strip(), "RECSYS_SMELU_TF_LOGS=1 should let TF log"
