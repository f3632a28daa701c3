"""Every private TensorFlow, Keras and TFRS API that recsys_smelu uses.

Private attributes and ``tensorflow.python`` modules can change in any
release. Each one is reached through a function here, and each function has a
behavioural test in ``tests/test_compat.py``, so an upgrade that breaks one
fails there, with its name, instead of deep inside a training run. A test
there also fails on private access anywhere else in the package.

Importing this module imports TensorFlow (quietly, as ``recsys_smelu.data``
does) but does not resolve ``tf.keras``; the Keras shims are called from
modules that set up Keras 2 first (``recsys_smelu.tf_keras2``).
"""

from __future__ import annotations

from recsys_smelu import tf_keras2

tf_keras2.import_tensorflow_quietly()

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
# pylint: disable=g-direct-tensorflow-import,wrong-import-position
from tensorflow.python.ops import control_flow_util  # noqa: F401 (re-exported)
from tensorflow.python.ops import resource_variable_ops
# pylint: enable=g-direct-tensorflow-import,wrong-import-position
# pylint: disable=protected-access

__all__ = [
    "adagrad_accumulator", "control_flow_util", "cross_dense_layers",
    "current_learning_rate", "direct_sublayers", "local_resource_variable",
    "model_distribution_strategy", "receive_logs_as_tensors",
    "refresh_current_learning_rate", "set_dtype_policy", "set_layer_name",
    "tpu_embedding_feature",
]

# ``control_flow_util``: TF's module; ``recsys_smelu.native`` uses its
# ``GraphOrParentsInXlaContext(graph)`` (whether ops built now go into an XLA
# computation), which has no public equivalent.


# ----------------------------------------------------------------------------
# Keras optimizers


def current_learning_rate(optimizer) -> float:
  """The learning rate ``optimizer`` applies at its current step.

  ``schedule(optimizer.iterations)`` for a schedule, else the constant. A
  loss-scale wrapper is looked through. (The public ``learning_rate`` of a
  scheduled optimizer is the value of the last ``apply_gradients``, one step
  behind.)
  """
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # loss scaling
  lr = optimizer._learning_rate
  if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
    return float(lr(optimizer.iterations))
  return float(tf.keras.backend.get_value(lr))


def refresh_current_learning_rate(optimizer) -> None:
  """Sets ``optimizer.learning_rate`` to ``schedule(iterations)``.

  What Keras' ``apply_gradients`` does before updating; for an
  ``apply_gradients`` that updates the variables itself. No-op without a
  schedule.
  """
  optimizer._compute_current_learning_rate()


def adagrad_accumulator(optimizer, variable) -> tf.Variable:
  """The accumulator slot that a built Keras ``Adagrad`` keeps for ``variable``."""
  return optimizer._accumulators[optimizer._index_dict[
      optimizer._var_key(variable)]]


# ----------------------------------------------------------------------------
# Keras layers, models and callbacks


def set_layer_name(layer, name: str) -> None:
  """Renames an unbuilt layer (its variables are then created as ``name/...``).

  Keras takes a name only in the constructor; some constructors (TFRS'
  ``TPUEmbedding``, the activation registry's) do not pass one on.
  """
  layer._name = name


def set_dtype_policy(layer, policy) -> None:
  """Sets an unbuilt layer's dtype policy (name or Policy), as ``dtype=`` would."""
  layer._set_dtype_policy(policy)


def direct_sublayers(layer) -> list:
  """The layers ``layer`` tracks directly, in order, not their sublayers."""
  return list(layer._flatten_layers(include_self=False, recursive=False))


def model_distribution_strategy(model):
  """The ``tf.distribute`` strategy ``model`` was created under, None for the
  default one (the public ``distribute_strategy`` cannot tell them apart from
  inside a strategy scope)."""
  return getattr(model, "_distribution_strategy", None)


def receive_logs_as_tensors(callback) -> None:
  """Makes Keras hand ``callback`` its batch logs as tensors, not numbers.

  Keras otherwise copies every metric to the host on every report, one sync
  per metric; the callback then reads only the values it needs.
  """
  callback._supports_tf_logs = True


# ----------------------------------------------------------------------------
# TensorFlow Recommenders layers


def cross_dense_layers(cross) -> dict:
  """The Dense layers inside a built TFRS ``Cross``.

  ``{"w": W}`` for a full-rank cross (``x0 * (W x + b) + x``), ``{"u": U,
  "v": V}`` for a low-rank one (``W = V U``, U applied first).
  """
  if cross._projection_dim is None:
    return {"w": cross._dense}
  return {"u": cross._dense_u, "v": cross._dense_v}


def tpu_embedding_feature(layer):
  """The TPU embedding hardware a TFRS ``TPUEmbedding`` layer targets.

  ``tf.tpu.experimental.HardwareFeature.EmbeddingFeature.V1``/``V2`` on TPUs
  with an embedding engine; None off TPU (the tables are plain variables).
  """
  return layer._embedding_feature


# ----------------------------------------------------------------------------
# TensorFlow internals


def local_resource_variable(initial_value, name=None, dtype=None,
                            trainable: bool = False) -> tf.Variable:
  """A plain resource variable created past the variable-creator stack.

  So no ``tf.distribute`` strategy or ``variable_creator_scope`` in effect
  sees it (``tf.Variable`` would go through them).
  """
  return resource_variable_ops.ResourceVariable(
      initial_value=initial_value, trainable=trainable, name=name, dtype=dtype)
