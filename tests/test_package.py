"""Package import contract: Keras 2 behind tf.keras, quiet TF start-up."""

import os
import subprocess
import sys

import recsys_smelu  # noqa: F401  (must come before tensorflow)
import tensorflow as tf


def _run(code: str, **env) -> subprocess.CompletedProcess:
  full_env = {k: v for k, v in os.environ.items()
              if k not in ("TF_USE_LEGACY_KERAS", "RECSYS_SMELU_TF_LOGS")}
  full_env.update(env)
  return subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, env=full_env, timeout=120)


def test_tf_keras_is_keras2_after_import():
  assert tf.keras.__name__.startswith("tf_keras")
  assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


def test_keras3_already_loaded_fails_with_clear_message():
  result = _run("import tensorflow as tf; tf.keras.layers.Dense; "
                "import recsys_smelu")
  assert result.returncode != 0
  assert "needs tf.keras to be Keras 2" in result.stderr
  assert "TF_USE_LEGACY_KERAS=1" in result.stderr


def test_tensorflow_imported_first_but_keras_untouched_is_fine():
  result = _run("import tensorflow as tf; import recsys_smelu; "
                "print(tf.keras.__name__)")
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("tf_keras")


def test_startup_noise_hidden_by_default_and_shown_on_request():
  quiet = _run("import recsys_smelu")
  assert quiet.returncode == 0, quiet.stderr
  assert "oneDNN" not in quiet.stderr and "cuda" not in quiet.stderr.lower()
  loud = _run("import recsys_smelu", RECSYS_SMELU_TF_LOGS="1",
              TF_CPP_MIN_LOG_LEVEL="0")
  assert loud.returncode == 0, loud.stderr
  assert loud.stderr.strip(), "RECSYS_SMELU_TF_LOGS=1 should let TF log"
