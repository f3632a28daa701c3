"""Building blocks of the CTR models: seed derivation, the MLP block, the dot
interaction.

Every random number in a model comes from an explicit config seed
(``seed.init`` for weights, ``seed.dropout`` for dropout masks). A model has
many layers and each needs its own seed; ``derive_seed`` maps the base seed and
the layer's path (``"tower_0/top_mlp/dense_1"``) to a 31-bit seed through
SHA-256, so seeds are distinct per layer, identical across processes (unlike
Python's salted ``hash``) and independent of construction order.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_smelu import choices
from recsys_smelu import compat

NORMALIZATIONS = choices.NORMALIZATIONS


def derive_seed(base_seed: int, path: str) -> int:
  """Returns a seed in ``[0, 2**31 - 1)`` for ``path`` under ``base_seed``.

  ``int(sha256(f"{base_seed}/{path}")) mod (2**31 - 1)``: deterministic,
  well mixed (neighbouring base seeds or paths give unrelated seeds).
  """
  digest = hashlib.sha256(f"{int(base_seed)}/{path}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def glorot_uniform(base_seed: int, path: str) -> tf.keras.initializers.Initializer:
  """Glorot-uniform kernel initializer seeded from ``derive_seed``.

  Seeded tf.keras initializers use stateless random ops, so the same seed
  gives the same weights in any process.
  """
  return tf.keras.initializers.GlorotUniform(seed=derive_seed(base_seed, path))


def make_activation(spec: str, policy: tf.keras.mixed_precision.Policy,
                    name: Optional[str] = None) -> tf.keras.layers.Layer:
  """A fresh activation layer from the registry, computing in ``policy``.

  The registry builds layers with the default (global) dtype policy; we set
  the block's policy on the new, still unbuilt layer so that under
  ``mixed_bfloat16`` the activation runs in bfloat16 instead of autocasting
  its input back to float32 (trainable parameters such as SmeLU's beta stay
  float32 variables and are autocast in the call, as for any Keras layer).
  ``name`` replaces the registry's global-counter name (``sme_lu_7``) with a
  stable one; both are set before the layer builds its variables.
  """
  from recsys_smelu import activations  # pylint: disable=g-import-not-at-top
  layer = activations.get_activation(spec)
  compat.set_dtype_policy(layer, policy)
  if name is not None:
    compat.set_layer_name(layer, name)
  return layer


class SeededDropout(tf.keras.layers.Layer):
  """Inverted dropout whose masks survive a checkpoint restore.

  The mask of training call n is ``stateless_uniform(seed=(seed, replica * 2^31
  + n)) >= rate``, kept values scaled by ``1 / (1 - rate)``. The call counter n
  is a non-trainable weight, so it is checkpointed with the model: a run
  resumed from step s draws the masks an uninterrupted run draws after step s.
  (Keras' ``Dropout`` keeps its generator state outside the checkpoint.) Each
  replica folds in its replica id, so replicas drop different units.
  """

  def __init__(self, rate: float, seed: int, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    self.rate = float(rate)
    self.seed = int(seed)

  def build(self, input_shape):
    self.calls = self.add_weight(
        name="calls", shape=[], dtype=tf.int64, trainable=False,
        initializer="zeros",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    super().build(input_shape)

  def call(self, inputs, training=False):
    if not training or self.rate == 0.0:
      return inputs
    replica = tf.distribute.get_replica_context()
    replica_id = tf.cast(replica.replica_id_in_sync_group if replica else 0,
                         tf.int64)
    counter = self.calls.assign_add(1)
    seed = tf.stack([tf.constant(self.seed, tf.int64),
                     replica_id * (2 ** 31) + counter])
    keep = tf.random.stateless_uniform(tf.shape(inputs), seed=seed) >= self.rate
    scale = tf.cast(1.0 / (1.0 - self.rate), inputs.dtype)
    return tf.where(keep, inputs * scale, tf.zeros_like(inputs))

  def get_config(self):
    return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class MLP(tf.keras.layers.Layer):
  """A stack of ``Dense -> normalization -> activation -> dropout`` layers.

  Every listed width is a hidden layer (the logit is a separate layer of the
  model, so it stays linear and float32). Normalization ('layer' or 'batch')
  sits between the affine map and the activation, as in [SL22]'s setting
  where normalizing hidden layers helps reproducibility. Each Dense kernel is
  Glorot-uniform with its own derived seed; each dropout layer is a
  ``SeededDropout`` whose masks are a function of its seed and a checkpointed
  call counter, so resumed training continues the same masks.

  Args:
    widths: hidden widths, at least one.
    activation: activation registry spec (e.g. ``"smelu:beta=0.5"``); each
      hidden layer gets its own fresh activation layer (own trainable params).
    normalization: 'none' | 'layer' | 'batch'.
    dropout: dropout rate in [0, 1); 0 adds no dropout layer.
    init_seed: base seed for kernels (``seed.init``).
    dropout_seed: base seed for dropout masks (``seed.dropout``).
    seed_path: prefix for derived seeds, unique within the model
      (e.g. ``"tower_0/bottom_mlp"``).
    dtype: dtype policy (name or Policy), e.g. 'mixed_bfloat16'.
    kernel_regularizer: applied to every Dense kernel (``model.dense_l2``);
      None adds no penalty.
  """

  def __init__(self,
               widths: Sequence[int],
               activation: str,
               normalization: str = "none",
               dropout: float = 0.0,
               init_seed: int = 0,
               dropout_seed: int = 0,
               seed_path: str = "mlp",
               dtype: Optional[str | tf.keras.mixed_precision.Policy] = None,
               name: Optional[str] = None,
               kernel_regularizer: Optional[
                   tf.keras.regularizers.Regularizer] = None):
    super().__init__(name=name, dtype=dtype)
    if not widths:
      raise ValueError(f"MLP {name or seed_path!r}: widths must not be empty")
    if any(int(w) <= 0 for w in widths):
      raise ValueError(f"MLP {name or seed_path!r}: widths must be positive, "
                       f"got {list(widths)}")
    if normalization not in NORMALIZATIONS:
      raise ValueError(f"MLP {name or seed_path!r}: normalization "
                       f"{normalization!r} is not one of {NORMALIZATIONS}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"MLP {name or seed_path!r}: dropout must be in [0, 1), "
                       f"got {dropout}")
    self.widths = tuple(int(w) for w in widths)
    self.activation_spec = activation
    self.normalization = normalization
    self.dropout_rate = float(dropout)
    self.init_seed = int(init_seed)
    self.dropout_seed = int(dropout_seed)
    self.seed_path = seed_path
    policy = self.dtype_policy
    self.hidden_layers: list[list[tf.keras.layers.Layer]] = []
    for i, width in enumerate(self.widths):
      layers = [tf.keras.layers.Dense(
          width,
          kernel_initializer=glorot_uniform(init_seed, f"{seed_path}/dense_{i}"),
          bias_initializer="zeros",
          kernel_regularizer=kernel_regularizer,
          name=f"dense_{i}",
          dtype=policy)]
      if normalization == "layer":
        layers.append(tf.keras.layers.LayerNormalization(
            name=f"layer_norm_{i}", dtype=policy))
      elif normalization == "batch":
        layers.append(tf.keras.layers.BatchNormalization(
            name=f"batch_norm_{i}", dtype=policy))
      layers.append(make_activation(activation, policy, name=f"activation_{i}"))
      if self.dropout_rate > 0:
        layers.append(SeededDropout(
            self.dropout_rate,
            seed=derive_seed(dropout_seed, f"{seed_path}/dropout_{i}"),
            name=f"dropout_{i}",
            dtype=policy))
      self.hidden_layers.append(layers)

  @property
  def layers(self) -> list:
    """Direct sublayers (lets ``summary(expand_nested=True)`` expand us)."""
    return compat.direct_sublayers(self)

  def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
    x = inputs
    for layers in self.hidden_layers:
      for layer in layers:
        if isinstance(layer, (tf.keras.layers.BatchNormalization,
                              SeededDropout)):
          x = layer(x, training=training)
        else:
          x = layer(x)
    return x

  def get_config(self):
    config = super().get_config()
    config.update(widths=list(self.widths), activation=self.activation_spec,
                  normalization=self.normalization, dropout=self.dropout_rate,
                  init_seed=self.init_seed, dropout_seed=self.dropout_seed,
                  seed_path=self.seed_path)
    return config


class DotInteraction(tfrs.layers.feature_interaction.DotInteraction):
  """TFRS's DLRM dot interaction, with the triangle taken by a static gather.

  Same output as ``tfrs.layers.feature_interaction.DotInteraction``: for
  inputs e_0..e_{n-1} [batch, dim], the dot products dot(e_i, e_j) for
  i > j (i >= j with ``self_interaction``), row-major over (i, j). TFRS takes
  that triangle with ``tf.boolean_mask`` over [batch, n, n], whose gradient is
  a segment sum over every scalar; here the products [batch, n * n] are
  transposed and the triangle's rows gathered with constant indices, so the
  forward and backward passes move whole rows of the batch
  (docs/benchmarks.md#component-measurements). Compiles under XLA (static
  shapes). ``skip_gather=True`` is TFRS's own path (the masked [batch, n * n]
  matrix).
  """

  def __init__(self, self_interaction: bool = False, skip_gather: bool = False,
               name: Optional[str] = None, **kwargs):
    super().__init__(self_interaction=self_interaction,
                     skip_gather=skip_gather, name=name, **kwargs)
    # Our own copies: TFRS keeps these in private attributes.
    self.self_interaction = bool(self_interaction)
    self.skip_gather = bool(skip_gather)

  def call(self, inputs):
    if self.skip_gather:
      return super().call(inputs)
    n = len(inputs)
    features = tf.stack(inputs, axis=1)  # [batch, n, dim]
    products = tf.matmul(features, features, transpose_b=True)
    rows, cols = np.tril_indices(n, 0 if self.self_interaction else -1)
    triangle = tf.gather(tf.transpose(tf.reshape(products, [-1, n * n])),
                         tf.constant(rows * n + cols, tf.int32))
    return tf.transpose(triangle)
