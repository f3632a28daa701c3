"""Keras 2 behind ``tf.keras`` for the modules built on TensorFlow Recommenders.

TFRS 0.7.7 refuses Keras 3, so every module that uses ``tf.keras``
(activations, models, train, export) calls ``ensure_keras2()`` before it
imports TensorFlow.
TensorFlow 2.21 resolves ``tf.keras`` lazily, at its first attribute access,
from ``TF_USE_LEGACY_KERAS``; so setting the flag here works even when the
user imported tensorflow first, as long as nothing touched ``tf.keras`` yet.
If something did and got Keras 3, we stop with a clear message instead of
failing later inside TFRS.

TensorFlow's C++ start-up lines (oneDNN notice, "CUDA not found", ...) are
hidden unless ``RECSYS_SMELU_TF_LOGS=1`` is set. TF 2.21 prints them through
absl before ``TF_CPP_MIN_LOG_LEVEL`` is read, so they are captured while
tensorflow is imported and replayed only if the import fails
(``import_tensorflow_quietly``, also used by ``recsys_smelu.data``).
"""

import os
import sys
import tempfile

KERAS3_MESSAGE = (
    "recsys_smelu's TensorFlow modules need tf.keras to be Keras 2 (the "
    "tf-keras package), but tf.keras was already resolved to Keras {version} "
    "in this process before TF_USE_LEGACY_KERAS=1 was set. Import "
    "recsys_smelu.models (or .train, .activations, .export) before using "
    "tf.keras, or export TF_USE_LEGACY_KERAS=1 before starting Python. For "
    "Keras 3, use recsys_smelu.keras3."
)


def import_tensorflow_quietly():
  """Imports tensorflow with C-level stderr captured (see module docstring)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "tensorflow" in sys.modules or os.environ.get("RECSYS_SMELU_TF_LOGS") == "1":
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return
  sys.stderr.flush()
  saved_fd = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # device probing logs ("cuInit") too
    except BaseException:
      os.dup2(saved_fd, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode("utf-8", "replace"))
      raise
    finally:
      os.dup2(saved_fd, 2)
      os.close(saved_fd)


def ensure_keras2():
  """Sets TF_USE_LEGACY_KERAS=1, imports TF and checks tf.keras is Keras 2."""
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  import_tensorflow_quietly()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  version = getattr(tf.keras, "__version__", "")
  if not tf.keras.__name__.startswith("tf_keras") or version.startswith("3"):
    raise ImportError(KERAS3_MESSAGE.format(version=version or "3"))

