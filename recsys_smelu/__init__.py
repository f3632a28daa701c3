"""recsys-smelu: reproducible CTR / recommendation models with Smooth ReLU.

Importing this package prepares TensorFlow for the rest of the library:

* ``TF_USE_LEGACY_KERAS=1`` is set before tensorflow is first imported, so that
  ``tf.keras`` is Keras 2 (tf-keras), which TensorFlow Recommenders requires.
* TensorFlow's C++ start-up lines (oneDNN notice, "CUDA not found", ...) are
  hidden unless ``RECSYS_SMELU_TF_LOGS=1`` is set. TF 2.21 prints them through
  absl before ``TF_CPP_MIN_LOG_LEVEL`` is read, so they are captured while
  tensorflow is imported and replayed only if the import fails.

If tensorflow was already imported with Keras 3 behind ``tf.keras`` we stop with
a clear message instead of failing later inside TFRS.
"""

import os
import sys
import tempfile

__version__ = "0.1.0"

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_KERAS3_MESSAGE = (
    "recsys_smelu needs tf.keras to be Keras 2 (the tf-keras package), but "
    "tensorflow was imported before recsys_smelu without TF_USE_LEGACY_KERAS=1, "
    "so tf.keras is Keras {version}. Import recsys_smelu before tensorflow, or "
    "export TF_USE_LEGACY_KERAS=1 before starting Python."
)


def _import_tensorflow_quietly():
  """Imports tensorflow with C-level stderr captured (see module docstring)."""
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


def _check_keras_is_keras2():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  version = getattr(tf.keras, "__version__", "")
  if not tf.keras.__name__.startswith("tf_keras") or version.startswith("3"):
    raise ImportError(_KERAS3_MESSAGE.format(version=version or "3"))


_import_tensorflow_quietly()
_check_keras_is_keras2()
