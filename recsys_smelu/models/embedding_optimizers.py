"""Keras Adagrad for embedding tables, with a fused native update on CPU.

``FusedEmbeddingAdagrad`` is ``tf.keras.optimizers.Adagrad`` (same slots,
checkpoints and hyper-parameters) whose ``apply_gradients`` sends sparse
table gradients to one native op, ``EmbeddingAdagradUpdate``
(``recsys_smelu.native``), when it can. For each table, duplicate ids are
summed, then for each distinct row r with summed gradient G::

  acc[r] += G * G
  w[r]   += (-lr * G) / sqrt(acc[r] + epsilon)

Why: Keras spends about a dozen ops per table and step on this (unique,
segment sum, two scatters, a gather, element-wise ops), each walking rows in
random order, a large share of a CPU training step
(docs/benchmarks.md#where-the-training-step-goes); the fused op updates all
tables in parallel, prefetching rows.

The fused path is taken only where it is exact to use: every gradient is an
``IndexedSlices`` of a float32 CPU variable, the step is not being compiled
with XLA (``jit_compile``; custom ops do not compile), no distribution strategy
is active (Mirrored/MultiWorker updates go per replica through Keras), and no
clipping, weight decay, EMA or constraint is configured. Otherwise, or when
``RECSYS_SMELU_NATIVE_OPS`` turns the native ops off or they cannot be built,
it is exactly Keras Adagrad. The two paths agree to float32 rounding (Keras'
graph computes ``G * rsqrt(...)`` after a Grappler rewrite), and the fused
path is deterministic: rows of a table are summed and updated in a fixed
order.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from recsys_smelu import compat
from recsys_smelu import native


class FusedEmbeddingAdagrad(tf.keras.optimizers.Adagrad):
  """Keras Adagrad with the fused CPU update for sparse table gradients.

  Args:
    fused: allow the native update; whether it is used also depends on the
      conditions in the module docstring.
    **kwargs: ``tf.keras.optimizers.Adagrad`` arguments.
  """

  def __init__(self, *args, fused: bool = True, **kwargs):
    super().__init__(*args, **kwargs)
    self.fused = bool(fused)

  def get_config(self):
    return {**super().get_config(), "fused": self.fused}

  def fused_update_applies(self, grads_and_vars) -> bool:
    """Whether ``apply_gradients(grads_and_vars)`` takes the native op."""
    if not self.fused or not grads_and_vars or native.building_xla_graph():
      return False
    if tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
      return False
    if (self.clipnorm or self.clipvalue or self.global_clipnorm
        or self.weight_decay or self.use_ema):
      return False
    for grad, var in grads_and_vars:
      if not isinstance(grad, tf.IndexedSlices):
        return False
      if grad.values.dtype != tf.float32 or var.dtype != tf.float32:
        return False
      if var.shape.rank != 2 or getattr(var, "constraint", None) is not None:
        return False
      if not _on_cpu(var):
        return False
    return native.load() is not None

  def apply_gradients(self, grads_and_vars, name: Optional[str] = None,
                      **kwargs):
    grads_and_vars = [(g, v) for g, v in grads_and_vars if g is not None]
    if not self.fused_update_applies(grads_and_vars):
      return super().apply_gradients(grads_and_vars, name=name, **kwargs)
    compat.refresh_current_learning_rate(self)
    variables = [v for _, v in grads_and_vars]
    with tf.name_scope(name or self.name):
      with tf.init_scope():
        self.build(variables)
      accumulators = [compat.adagrad_accumulator(self, v) for v in variables]
      indices = [g.indices for g, _ in grads_and_vars]
      if len({i.dtype for i in indices}) > 1:  # the op takes one index dtype
        indices = [tf.cast(i, tf.int64) for i in indices]
      native.embedding_adagrad_update(
          native.load(), variables, accumulators,
          indices=indices,
          gradients=[g.values for g, _ in grads_and_vars],
          learning_rate=tf.cast(self.learning_rate, tf.float32),
          epsilon=self.epsilon)
      return self.iterations.assign_add(1)


def _on_cpu(var) -> bool:
  """Whether ``var`` lives on a CPU (no device: on CPU when there is no GPU)."""
  device_type = tf.DeviceSpec.from_string(var.device or "").device_type
  if device_type is None:
    return not tf.config.list_logical_devices("GPU")
  return device_type.upper() == "CPU"
