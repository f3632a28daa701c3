"""CTR models on TensorFlow Recommenders: DLRM, DCN-v2 and a deep MLP.

One tower (``CTRTower``) maps a batch of features to one logit:

```
sparse ids ──► TPUEmbedding ──► e_1 .. e_k            (one table per feature)
dense      ──► bottom MLP   ──► d                      (skipped when num_dense=0)
interaction:
  'dot'    DLRM:   z = [d, DotInteraction(d, e_1..e_k)]   (pairwise dots, i<j)
  'cross'  DCN-v2: x0 = [d, e_1..e_k];  x_{l+1} = x0 * (W_l x_l + b_l) + x_l
           stacked:  z = x_L -> top MLP
           parallel: z = [x_L, top MLP hidden(x0)] -> logit
  'concat' deep MLP: z = [d, e_1..e_k]
top MLP hidden layers ──► logit (linear Dense(1), float32)
wide (model.wide):  logit += sum_f w_f[id_f] + v . dense (+ b)
                    w_f: dim-1 tables in the same TPUEmbedding layer
```

``model.deep=false`` (with ``model.wide=true``) keeps only the wide part:
logistic regression on the hashed categorical ids (one-hot) and the
transformed dense features, ``logit = sum_f w_f[id_f] + v . dense + b``.

Regularization (``model.embedding_l2`` = λ_e, ``model.dense_l2`` = λ_d), per
tower, on top of the global-batch-averaged cross-entropy:

```
λ_e · (1/B) · Σ_{examples in the global batch} Σ_f ||e_f(x)||²   (deep and wide rows)
λ_d · Σ_{dense kernels W} ||W||²                                (no biases, norms)
```

The embedding term counts a row once per occurrence (frequency-weighted, as
in CTR practice: only rows looked up move), and is averaged like the loss
(``tf.nn.compute_average_loss``), so it is right under tf.distribute; the
kernel term is a Keras kernel regularizer, which ``train_step`` scales by
``tf.nn.scale_regularization_loss``.

``CTRModel`` is a ``tfrs.models.Model`` holding one ``TPUEmbedding`` layer
(the tables of every tower: a TPU program has one embedding engine) and
``ensemble_size`` towers with independently derived seeds; its prediction is
the mean of the tower logits.
Its ``train_step`` sends the embedding-table gradients to the embedding
optimizer given to ``build_model`` (the trainer builds it from
``train.embedding_optimizer``) and all other gradients to the optimizer given
to ``compile``; on TPU the TPUEmbedding layer applies its own optimizer inside
the backward pass.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import ml_collections
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_smelu import choices
from recsys_smelu import compat
from recsys_smelu import config as config_lib
from recsys_smelu.config import ConfigError
from recsys_smelu.data.features import DENSE_KEY, SPARSE_KEY, FeatureSchema
from recsys_smelu.models import blocks
from recsys_smelu.models import embedding_optimizers

# Names of the metrics ``CTRModel.compute_loss`` updates (fit/evaluate logs
# also carry 'loss', 'regularization_loss' and 'total_loss').
METRIC_NAMES = ("auc", "log_loss", "mean_prediction", "mean_label")
AUC_THRESHOLDS = 10_000
# Adagrad's starting accumulator, as in tf.tpu.experimental.embedding.Adagrad.
ADAGRAD_INITIAL_ACCUMULATOR = 0.1

_EmbeddingFeature = tf.tpu.experimental.HardwareFeature.EmbeddingFeature


# --------------------------------------------------------------------------
# Embedding optimizer


def embedding_optimizer(name: str, learning_rate: float):
  """The TPU embedding optimizer ``name`` with a constant ``learning_rate``.

  ``name`` in {'adagrad', 'adam', 'sgd'} (the trainer passes
  ``train.embedding_optimizer`` and ``train.embedding_learning_rate``).
  Returns a ``tf.tpu.experimental.embedding`` optimizer (what
  ``TPUEmbedding`` takes; TFRS rejects the new Keras optimizers). Adagrad
  starts its accumulator at 0.1; Adam is the TPU "lazy" Adam (only rows
  looked up in a batch move).
  """
  lr = float(learning_rate)
  emb = tf.tpu.experimental.embedding
  if name == "adagrad":
    return emb.Adagrad(learning_rate=lr,
                       initial_accumulator_value=ADAGRAD_INITIAL_ACCUMULATOR)
  if name == "adam":
    return emb.Adam(learning_rate=lr)
  if name == "sgd":
    return emb.SGD(learning_rate=lr)
  raise ValueError(f"embedding optimizer {name!r}: choose one of "
                   f"{', '.join(choices.EMBEDDING_OPTIMIZERS)}")


def keras_embedding_optimizer(tpu_optimizer, learning_rate=None
                              ) -> tf.keras.optimizers.Optimizer:
  """The Keras twin of a TPU embedding optimizer, for tables on CPU/GPU.

  On CPU/GPU the TPUEmbedding tables are ordinary variables that receive
  ``IndexedSlices`` gradients; this optimizer applies the same rule to the
  rows looked up (duplicate ids summed first): Adagrad
  ``acc += g^2; w -= lr g / sqrt(acc + 1e-7)`` with acc starting at the TPU
  value, SGD ``w -= lr g``, Adam with the same betas/epsilon (Keras Adam
  decays the moments of all rows each step, where TPU lazy Adam touches only
  the rows looked up). These are the tf.keras (Keras 2) optimizers, whose
  sparse updates are scatter ops that also compile under XLA. SGD is the
  legacy Keras SGD: the current one keeps a momentum slot even at momentum 0
  and rewrites every table row each step (cost grows with the table, not
  the batch), where the legacy one scatters only the rows looked up.

  Adagrad is ``embedding_optimizers.FusedEmbeddingAdagrad``: the same
  optimizer, with one native op updating all tables on CPU outside XLA.

  ``learning_rate``: a float or schedule replacing the TPU optimizer's
  constant rate (warm-up/decay from ``models.schedules``).
  """
  emb = tf.tpu.experimental.embedding
  lr = (float(tpu_optimizer.learning_rate) if learning_rate is None
        else learning_rate)
  if isinstance(tpu_optimizer, emb.Adagrad):
    return embedding_optimizers.FusedEmbeddingAdagrad(
        learning_rate=lr,
        initial_accumulator_value=tpu_optimizer.initial_accumulator_value,
        name="embedding_adagrad")
  if isinstance(tpu_optimizer, emb.Adam):
    return tf.keras.optimizers.Adam(
        learning_rate=lr, beta_1=tpu_optimizer.beta_1,
        beta_2=tpu_optimizer.beta_2, epsilon=tpu_optimizer.epsilon,
        name="embedding_adam")
  if isinstance(tpu_optimizer, emb.SGD):
    return tf.keras.optimizers.legacy.SGD(learning_rate=lr, name="embedding_sgd")
  raise ValueError(f"no Keras twin for embedding optimizer {tpu_optimizer!r}")


def _tables_are_local(layer: tfrs.layers.embedding.TPUEmbedding) -> bool:
  """True when the layer's trainable variables are the tables themselves.

  That is the case on CPU/GPU (and TPUs without embedding hardware); with a
  TPU embedding engine (V1/V2) the only trainable variable is a dummy whose
  gradient triggers the on-TPU optimizer.
  """
  feature = compat.tpu_embedding_feature(layer)
  return feature not in (_EmbeddingFeature.V1, _EmbeddingFeature.V2)


# --------------------------------------------------------------------------
# Layers


class MeanPrediction(tf.keras.metrics.Mean):
  """Mean predicted probability ``mean(sigmoid(logit))`` (calibration)."""

  def __init__(self, name: str = "mean_prediction", dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, logits, sample_weight=None):
    return super().update_state(tf.sigmoid(tf.cast(logits, tf.float32)),
                                sample_weight=sample_weight)


class SeededCross(tfrs.layers.feature_interaction.Cross):
  """TFRS ``Cross`` with its own seed per weight and the layer's dtype policy.

  TFRS clones one initializer for U and V of a low-rank cross, so a seeded
  initializer would give both the same random stream; here each matrix gets
  a seed derived from its path. The inner Dense layers also take this layer's
  policy, so under mixed precision the cross runs in the compute dtype.
  """

  def __init__(self, init_seed: int, seed_path: str, **kwargs):
    super().__init__(**kwargs)
    self._init_seed = int(init_seed)
    self._seed_path = seed_path

  def build(self, input_shape):
    super().build(input_shape)
    for key, dense in compat.cross_dense_layers(self).items():
      dense.kernel_initializer = blocks.glorot_uniform(
          self._init_seed, f"{self._seed_path}/{key}")
      compat.set_dtype_policy(dense, self.dtype_policy)

  def get_config(self):
    config = super().get_config()
    config.update(init_seed=self._init_seed, seed_path=self._seed_path)
    return config


def _named_embedding(feature_config, optimizer, name: str
                     ) -> tfrs.layers.embedding.TPUEmbedding:
  """A TPUEmbedding layer with a readable name.

  ``TPUEmbedding.__init__`` takes no ``name``; the name is set before the
  layer is built, so its tables are created as ``<name>/<feature>``.
  """
  layer = tfrs.layers.embedding.TPUEmbedding(feature_config=feature_config,
                                             optimizer=optimizer)
  compat.set_layer_name(layer, name)
  return layer


def tower_feature_config(config: ml_collections.ConfigDict,
                         schema: FeatureSchema, tower_index: int
                         ) -> dict[str, tf.tpu.experimental.embedding.FeatureConfig]:
  """Tower ``tower_index``'s embedding tables: one per categorical feature.

  Table ``tower_<i>_<feature>``: ``num_buckets x embedding_dim`` from the
  schema, truncated-normal init with stddev ``model.embedding_init_stddev``
  (``1/sqrt(dim)`` when 0) seeded from ``seed.init`` and the path
  ``tower_<i>/embedding/<feature>``.
  """
  init_seed = int(config.seed.init)
  init_stddev = float(config.model.embedding_init_stddev)
  feature_config = {}
  for feature in schema.categorical:
    table = tf.tpu.experimental.embedding.TableConfig(
        vocabulary_size=feature.num_buckets,
        dim=feature.embedding_dim,
        initializer=tf.keras.initializers.TruncatedNormal(
            stddev=init_stddev or feature.embedding_dim ** -0.5,
            seed=blocks.derive_seed(
                init_seed, f"tower_{tower_index}/embedding/{feature.name}")),
        name=f"tower_{tower_index}_{feature.name}")
    feature_config[feature.name] = tf.tpu.experimental.embedding.FeatureConfig(
        table=table, name=f"tower_{tower_index}_{feature.name}")
  return feature_config


def tower_wide_feature_config(schema: FeatureSchema, tower_index: int
                              ) -> dict[str, tf.tpu.experimental.embedding.FeatureConfig]:
  """Tower ``tower_index``'s wide tables: one ``num_buckets x 1`` per feature.

  Table ``tower_<i>_wide_<feature>``, zero-initialized (a linear model's
  usual start; it makes the wide part deterministic). Looked up through the
  same TPUEmbedding layer as the deep tables.
  """
  feature_config = {}
  for feature in schema.categorical:
    name = f"tower_{tower_index}_wide_{feature.name}"
    table = tf.tpu.experimental.embedding.TableConfig(
        vocabulary_size=feature.num_buckets, dim=1,
        initializer=tf.keras.initializers.Zeros(), name=name)
    feature_config[feature.name] = tf.tpu.experimental.embedding.FeatureConfig(
        table=table, name=name)
  return feature_config


class WideLinear(tf.keras.layers.Layer):
  """The first-order (wide) logit: ``sum_f w_f[id_f] + v . dense (+ b)``.

  ``call({"rows": [w_f[id_f] [batch, 1], ...], "dense": [batch, num_dense]})``
  -> float32 ``[batch, 1]``. The per-id weights ``w_f`` are looked up by the
  model (dim-1 tables); this layer holds the dense kernel ``v``
  (``[num_dense, 1]``, zeros, with ``kernel_regularizer``) and, when
  ``use_bias`` (no deep logit to carry one), the bias ``b``.
  """

  def __init__(self, num_dense: int, use_bias: bool,
               kernel_regularizer: Optional[
                   tf.keras.regularizers.Regularizer] = None,
               name: str = "wide"):
    super().__init__(name=name, dtype="float32")
    self.num_dense = int(num_dense)
    self.use_bias = bool(use_bias)
    self.kernel_regularizer = kernel_regularizer

  def build(self, input_shape):
    self.kernel = (self.add_weight(
        "kernel", shape=[self.num_dense, 1], initializer="zeros",
        regularizer=self.kernel_regularizer) if self.num_dense else None)
    self.bias = (self.add_weight("bias", shape=[1], initializer="zeros")
                 if self.use_bias else None)
    super().build(input_shape)

  def call(self, inputs: Mapping[str, Any]) -> tf.Tensor:
    terms = [tf.cast(r, tf.float32) for r in inputs.get("rows", [])]
    if self.kernel is not None:
      terms.append(tf.matmul(tf.cast(inputs["dense"], tf.float32), self.kernel))
    logit = tf.add_n(terms) if terms else None
    if self.bias is not None:
      logit = self.bias if logit is None else logit + self.bias
    return logit

  def get_config(self):
    return {**super().get_config(), "num_dense": self.num_dense,
            "use_bias": self.use_bias}


class CTRTower(tf.keras.layers.Layer):
  """One CTR network after the lookup: bottom MLP, interaction, top MLP, logit.

  Built by ``build_model``; see the module docstring for the dataflow. The
  tower's embedding tables live in the model's single TPUEmbedding layer
  (one TPU embedding engine per program); ``call`` takes the looked-up
  vectors (deep and, with ``model.wide``, wide) and returns float32 logits
  ``[batch, 1]`` whatever the policy. ``deep``/``wide`` name which parts it
  has; ``wide_name`` is the key of its wide rows in the model's lookup.
  """

  def __init__(self, config: ml_collections.ConfigDict, schema: FeatureSchema,
               tower_index: int, name: str):
    policy = tf.keras.mixed_precision.Policy(config.model.mixed_precision)
    super().__init__(name=name, dtype=policy)
    m = config.model
    init_seed = int(config.seed.init)
    dropout_seed = int(config.seed.dropout)
    path = f"tower_{tower_index}"
    self.interaction_kind = m.interaction
    self.cross_mode = m.cross_mode
    self.feature_names = schema.categorical_names
    self.num_dense = schema.num_dense
    self.deep = bool(m.deep)
    self.wide_name = f"{name}_wide" if m.wide else None
    kernel_regularizer = (tf.keras.regularizers.L2(float(m.dense_l2))
                          if m.dense_l2 else None)
    self.wide = (WideLinear(schema.num_dense, use_bias=not m.deep,
                            kernel_regularizer=kernel_regularizer, name="wide")
                 if m.wide else None)
    if not self.deep:
      return

    def mlp(widths, activation, block):
      return blocks.MLP(widths, activation, normalization=m.normalization,
                        dropout=m.dropout, init_seed=init_seed,
                        dropout_seed=dropout_seed, seed_path=f"{path}/{block}",
                        dtype=policy, name=block,
                        kernel_regularizer=kernel_regularizer)

    bottom_activation = m.bottom_activation or m.activation
    top_activation = m.top_activation or m.activation
    self.bottom_mlp = (mlp(m.bottom_mlp, bottom_activation, "bottom_mlp")
                       if self.num_dense and len(m.bottom_mlp) else None)

    self.dot_interaction = None
    self.cross_layers = []
    self.cross_output_activation = None
    if m.interaction == "dot":
      self.dot_interaction = blocks.DotInteraction(
          self_interaction=False, skip_gather=False, name="dot_interaction",
          dtype=policy)
    elif m.interaction == "cross":
      projection = int(m.cross_projection_dim) or None
      self.cross_layers = [
          SeededCross(init_seed=init_seed, seed_path=f"{path}/cross_{i}",
                      projection_dim=projection, name=f"cross_{i}",
                      dtype=policy, kernel_regularizer=kernel_regularizer)
          for i in range(int(m.cross_num_layers))]
      if m.cross_activation:
        self.cross_output_activation = blocks.make_activation(
            m.cross_activation, policy, name="cross_activation")

    hidden = list(m.top_mlp)[:-1]
    self.top_mlp = mlp(hidden, top_activation, "top_mlp") if hidden else None
    # The logit: linear, float32 policy (its input is cast up), so the logit,
    # the ensemble mean and the loss are float32 under mixed precision too.
    self.logit = tf.keras.layers.Dense(
        1, kernel_initializer=blocks.glorot_uniform(init_seed, f"{path}/logit"),
        kernel_regularizer=kernel_regularizer, name="logit", dtype="float32")

  @property
  def layers(self) -> list:
    """Direct sublayers (lets ``summary(expand_nested=True)`` expand us)."""
    return compat.direct_sublayers(self)

  def call(self, features: Mapping[str, Any],
           looked_up: Mapping[str, tf.Tensor],
           wide_looked_up: Optional[Mapping[str, tf.Tensor]] = None,
           training: bool = False) -> tf.Tensor:
    """Logits from the batch's ``features``, this tower's ``looked_up``
    embeddings ``{feature: [batch, dim]}`` and, with a wide part, its
    ``wide_looked_up`` weights ``{feature: [batch, 1]}``."""
    wide_logit = None
    if self.wide is not None:
      wide_inputs = {"rows": [wide_looked_up[n] for n in self.feature_names]}
      if self.num_dense:
        wide_inputs["dense"] = features[DENSE_KEY]
      wide_logit = self.wide(wide_inputs)
    if not self.deep:
      return wide_logit
    logit = self._deep_logit(features, looked_up, training)
    return logit if wide_logit is None else logit + wide_logit

  def _deep_logit(self, features, looked_up, training):
    compute_dtype = self.compute_dtype
    embeddings = [tf.cast(looked_up[n], compute_dtype)
                  for n in self.feature_names]
    dense = []
    if self.num_dense:
      d = tf.cast(features[DENSE_KEY], compute_dtype)
      if self.bottom_mlp is not None:
        d = self.bottom_mlp(d, training=training)
      dense = [d]

    if self.interaction_kind == "dot":
      pairs = self.dot_interaction(dense + embeddings)
      z = tf.concat(dense + [pairs], axis=-1)
    else:
      x0 = tf.concat(dense + embeddings, axis=-1)
      z = x0
      if self.interaction_kind == "cross":
        x = x0
        for cross in self.cross_layers:
          x = cross(x0, x)
        if self.cross_output_activation is not None:
          x = self.cross_output_activation(x)
        if self.cross_mode == "parallel":
          deep = (self.top_mlp(x0, training=training)
                  if self.top_mlp is not None else x0)
          return self.logit(tf.concat([x, deep], axis=-1))
        z = x
    if self.top_mlp is not None:
      z = self.top_mlp(z, training=training)
    return self.logit(z)


class CTRModel(tfrs.models.Model):
  """The CTR model: ``ensemble_size`` towers, mean logit, Ranking task.

  ``call(features, training=False)`` -> float32 logits ``[batch, 1]`` (mean of
  the towers' logits). ``compute_loss((features, label), training)`` returns
  binary cross-entropy on the logit, averaged over the global batch (for an
  ensemble: the mean of the towers' own losses, so each tower trains as if
  alone, as an ensemble of separately trained models does) and updates the metrics 'auc', 'log_loss',
  'mean_prediction', 'mean_label', all of the (mean) ensemble prediction.
  ``loss_terms`` also returns the embedding penalty (``embedding_l2``, see
  the module docstring), which ``train_step`` adds to the regularization
  loss; ``compute_loss`` (and so Keras' evaluate 'loss') is the
  cross-entropy alone.
  """

  def __init__(self, embedding: Optional[tfrs.layers.embedding.TPUEmbedding],
               towers: Sequence[CTRTower],
               keras_embedding_optimizer_: Optional[tf.keras.optimizers.Optimizer],
               mixed_precision: str = "float32", name: str = "ctr_model",
               embedding_l2: float = 0.0):
    super().__init__(name=name)
    if not towers:
      raise ValueError("CTRModel needs at least one tower")
    # One TPUEmbedding for all towers: its feature config is
    # {"tower_<i>": {feature: FeatureConfig}}; None without categoricals.
    self.embedding = embedding
    self.towers = list(towers)
    self.mixed_precision = mixed_precision
    self.embedding_l2 = float(embedding_l2)
    # Applies the embedding-table gradients when the tables are ordinary
    # variables (CPU/GPU); tracked, so checkpoints keep its slots.
    self.embedding_optimizer = keras_embedding_optimizer_
    # Per-example losses, averaged by ``tf.nn.compute_average_loss`` over the
    # global batch, so the loss is right under tf.distribute strategies too
    # (Keras refuses SUM_OVER_BATCH_SIZE losses inside a strategy).
    per_example = tf.keras.losses.Reduction.NONE
    self.task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True,
                                                reduction=per_example),
        metrics=[
            tf.keras.metrics.AUC(num_thresholds=AUC_THRESHOLDS,
                                 from_logits=True, name="auc"),
            tf.keras.metrics.BinaryCrossentropy(from_logits=True,
                                                name="log_loss"),
        ],
        prediction_metrics=[MeanPrediction(name="mean_prediction")],
        label_metrics=[tf.keras.metrics.Mean(name="mean_label")],
        name="ranking")
    self._tower_loss = tf.keras.losses.BinaryCrossentropy(
        from_logits=True, reduction=per_example)

  def get_config(self) -> dict:
    """Describes the model; rebuild it with ``build_model(config, schema)``."""
    return {"name": self.name, "ensemble_size": self.ensemble_size,
            "mixed_precision": self.mixed_precision,
            "embedding_l2": self.embedding_l2}

  @property
  def ensemble_size(self) -> int:
    return len(self.towers)

  def lookup(self, features) -> dict[str, dict[str, tf.Tensor]]:
    """``{"tower_<i>": {feature: [batch, dim]}}`` for the batch's ids, plus
    ``{"tower_<i>_wide": {feature: [batch, 1]}}`` for towers with a wide part
    (deep entries only for deep towers)."""
    if self.embedding is None:
      return {}
    sparse = features[SPARSE_KEY]
    ids = {}
    for t in self.towers:
      if t.deep:
        ids[t.name] = {n: sparse[n] for n in t.feature_names}
      if t.wide_name:
        ids[t.wide_name] = {n: sparse[n] for n in t.feature_names}
    return self.embedding(ids)

  def _towers_forward(self, features, training: bool
                      ) -> tuple[list[tf.Tensor], dict]:
    looked_up = self.lookup(features)
    logits = [tf.cast(t(features, looked_up.get(t.name, {}),
                        looked_up.get(t.wide_name, {}), training=training),
                      tf.float32) for t in self.towers]
    return logits, looked_up

  def tower_logits(self, features, training: bool = False) -> list[tf.Tensor]:
    """Each tower's float32 logits ``[batch, 1]``."""
    return self._towers_forward(features, training)[0]

  def embedding_penalty(self, looked_up: Mapping[str, Mapping[str, tf.Tensor]]
                        ) -> tf.Tensor:
    """``embedding_l2 · (1/B) Σ_x Σ_f ||e_f(x)||²``, the mean over towers.

    ``looked_up`` is ``lookup``'s output: every row looked up, deep and wide,
    once per occurrence; B is the global batch (``compute_average_loss``),
    so replicas' terms sum to the global one. Averaged over towers as the
    ensemble loss is, so each tower is regularized as if alone.
    """
    per_tower = []
    for t in self.towers:
      rows = (list(looked_up.get(t.name, {}).values()) +
              list(looked_up.get(t.wide_name, {}).values()))
      if not rows:
        continue
      squared = tf.add_n([tf.reduce_sum(tf.square(tf.cast(r, tf.float32)),
                                        axis=-1) for r in rows])
      per_tower.append(tf.nn.compute_average_loss(squared))
    if not per_tower:
      return tf.constant(0.0)
    return self.embedding_l2 * tf.add_n(per_tower) / float(len(self.towers))

  def call(self, features, training: bool = False) -> tf.Tensor:
    logits = self.tower_logits(features, training=training)
    if len(logits) == 1:
      return logits[0]
    return tf.add_n(logits) / float(len(logits))

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    """The cross-entropy averaged over the global batch (see the class)."""
    return self.loss_terms(inputs, training=training)[0]

  def loss_terms(self, inputs, training: bool = False
                 ) -> tuple[tf.Tensor, Optional[tf.Tensor]]:
    """(cross-entropy, embedding penalty or None when ``embedding_l2`` = 0)."""
    features, labels = inputs
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1, 1])
    logits, looked_up = self._towers_forward(features, training)
    penalty = (self.embedding_penalty(looked_up) if self.embedding_l2
               else None)
    mean_logit = logits[0] if len(logits) == 1 else (
        tf.add_n(logits) / float(len(logits)))
    # Updates the metrics of the (mean) prediction; for one tower, the loss.
    task_loss = self.task(labels, mean_logit, training=training)
    if len(logits) == 1:
      return tf.nn.compute_average_loss(task_loss), penalty
    return tf.add_n([tf.nn.compute_average_loss(self._tower_loss(labels, l))
                     for l in logits]) / float(len(logits)), penalty

  def compile(self, optimizer="adam", **kwargs):  # pylint: disable=arguments-differ
    """Keras compile; wraps the optimizer for loss scaling under fp16.

    The dtype policy is set per layer, not globally, so Keras would not add
    loss scaling by itself for 'mixed_float16'.
    """
    super().compile(optimizer=optimizer, **kwargs)
    if (self.mixed_precision == "mixed_float16" and not isinstance(
        self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)):
      self.optimizer = tf.keras.mixed_precision.LossScaleOptimizer(
          self.optimizer)

  def _local_embedding_variable_ids(self) -> set[int]:
    if self.embedding is None or not _tables_are_local(self.embedding):
      return set()
    return {id(v) for v in self.embedding.trainable_variables}

  def train_step(self, inputs):
    """One step: dense gradients -> compiled optimizer, tables -> embedding one."""
    loss_scaled = isinstance(self.optimizer,
                             tf.keras.mixed_precision.LossScaleOptimizer)
    with tf.GradientTape() as tape:
      loss, embedding_penalty = self.loss_terms(inputs, training=True)
      regularization_loss = tf.nn.scale_regularization_loss(tf.reduce_sum(
          [tf.reduce_sum(l) for l in self.losses]))
      if embedding_penalty is not None:  # already global-batch averaged
        regularization_loss += embedding_penalty
      total_loss = loss + regularization_loss
      objective = (self.optimizer.get_scaled_loss(total_loss) if loss_scaled
                   else total_loss)
    variables = self.trainable_variables
    gradients = tape.gradient(objective, variables)
    if loss_scaled:
      gradients = self.optimizer.get_unscaled_gradients(gradients)

    table_ids = self._local_embedding_variable_ids()
    dense_pairs, table_pairs = [], []
    for g, v in zip(gradients, variables):
      if g is None:
        continue
      (table_pairs if id(v) in table_ids else dense_pairs).append((g, v))
    if table_pairs and self.embedding_optimizer is None:
      raise ValueError("CTRModel has embedding tables to train but no "
                       "embedding optimizer; pass one to build_model")
    if table_pairs and loss_scaled:
      # An overflowed step is skipped by the dense optimizer; the tables get a
      # zero gradient instead of inf/nan (no-op for SGD and Adagrad).
      finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(
          g.values if isinstance(g, tf.IndexedSlices) else g))
                              for g, _ in table_pairs])
      table_pairs = [(_scale_gradient(g, tf.cast(finite, g.dtype)), v)
                     for g, v in table_pairs]
    self.optimizer.apply_gradients(dense_pairs)
    if table_pairs:
      self.embedding_optimizer.apply_gradients(table_pairs)

    metrics = {metric.name: metric.result() for metric in self.metrics}
    metrics["loss"] = loss
    metrics["regularization_loss"] = regularization_loss
    metrics["total_loss"] = total_loss
    return metrics


def _scale_gradient(g, factor):
  if isinstance(g, tf.IndexedSlices):
    values = tf.where(tf.math.is_finite(g.values), g.values, 0.0) * factor
    return tf.IndexedSlices(values, g.indices, g.dense_shape)
  return tf.where(tf.math.is_finite(g), g, 0.0) * factor


# --------------------------------------------------------------------------
# Builder


def check_model_config(config: ml_collections.ConfigDict,
                       schema: FeatureSchema) -> None:
  """Checks ``config`` and the ``model`` keys that must fit ``schema``.

  ``config_lib.validate`` first (every key-level check), then what needs the
  feature schema. Raises ConfigError (a ValueError) naming the key.
  """
  config_lib.validate(config, check_paths=False)
  m = config.model
  if schema.num_dense == 0 and not schema.categorical:
    raise ValueError("the feature schema has neither dense nor categorical "
                     "features")
  if m.deep and m.interaction == "dot":
    dims = sorted({f.embedding_dim for f in schema.categorical})
    if len(dims) > 1:
      raise ConfigError("config key 'model.embedding_dim': the 'dot' "
                        "interaction needs one embedding dim for all "
                        f"categorical features, the schema has {dims}")
    if schema.num_dense:
      if not list(m.bottom_mlp):
        raise ConfigError("config key 'model.bottom_mlp' is empty; the 'dot' "
                          "interaction needs a bottom MLP for the "
                          f"{schema.num_dense} dense features")
      if dims and m.bottom_mlp[-1] != dims[0]:
        raise ConfigError(
            f"config key 'model.bottom_mlp' ends with width {m.bottom_mlp[-1]} "
            f"but config key 'model.embedding_dim' (the schema's embedding dim)"
            f" is {dims[0]}; the 'dot' interaction needs them equal")
    num_vectors = (1 if schema.num_dense else 0) + len(schema.categorical)
    if num_vectors < 2:
      raise ConfigError("config key 'model.interaction': 'dot' needs at least "
                        "two vectors to interact (dense + categorical)")


def _check_activation_specs(config: ml_collections.ConfigDict) -> None:
  """Resolves each activation spec once so a bad one names its config key."""
  m = config.model
  keys = ["activation", "bottom_activation", "top_activation"]
  if m.interaction == "cross":
    keys.append("cross_activation")
  for key in keys:
    spec = m[key]
    if key != "activation" and not spec:
      continue
    try:
      blocks.make_activation(spec, tf.keras.mixed_precision.Policy("float32"))
    except ValueError as e:
      raise ConfigError(f"config key 'model.{key}' = {spec!r}: {e}") from e


def _local_string_variables(next_creator, **kwargs):
  """Creates string variables outside the distribution strategy.

  TF 2.21's TPUEmbeddingForServing (TFRS' TPUEmbedding off TPU) creates a
  string variable for SparseCore table layouts. MultiWorkerMirroredStrategy
  broadcasts every new variable's initial value with collective ops, which
  reject strings. The layouts mean nothing off TPU, so that variable is made
  a plain local one (subclass construction skips the creator stack).
  """
  if kwargs.get("dtype") == tf.string:
    return compat.local_resource_variable(
        kwargs["initial_value"], name=kwargs.get("name"), dtype=tf.string)
  return next_creator(**kwargs)


def create_variables(model: "CTRModel", schema: FeatureSchema) -> None:
  """Creates the model's variables now by calling it on a zero batch.

  Call under the strategy scope before training on CPU/GPU strategies: the
  lazy build in the first train step fails under MultiWorkerMirroredStrategy
  (see ``_local_string_variables``). Not for TPUStrategy, where the embedding
  tables must be built inside the TPU step.
  """
  from recsys_smelu.data.features import zero_model_inputs  # pylint: disable=g-import-not-at-top
  with tf.variable_creator_scope(_local_string_variables):
    model(zero_model_inputs(schema), training=False)


def build_model(config: ml_collections.ConfigDict, schema: FeatureSchema,
                embedding_optimizer=None, embedding_learning_rate=None
                ) -> CTRModel:
  """Builds the CTR model that ``config.model`` describes for ``schema``.

  Tower i's weights (its tables ``tower_<i>_<feature>`` in the model's one
  TPUEmbedding layer, its MLPs and interaction) are seeded from ``seed.init``
  and the path ``tower_<i>/<layer>`` (``blocks.derive_seed``), its dropout
  from ``seed.dropout``.
  Build under a ``tf.distribute`` strategy scope to place the variables (on
  TPUStrategy the embedding tables go to the TPU embedding engine). The model
  still needs ``compile(optimizer=...)`` (the dense-layer optimizer).

  Args:
    config: the experiment config; ``model`` and ``seed`` are read.
    schema: the feature schema (``data.build_schema``).
    embedding_optimizer: the tables' optimizer, from ``embedding_optimizer``;
      None builds a model that predicts, evaluates and exports but cannot
      train its tables.
    embedding_learning_rate: the tables' learning rate on CPU/GPU, a float or
      a schedule (``models.schedules``); default the constant rate of
      ``embedding_optimizer``.

  Raises:
    ConfigError (ValueError): a bad config key, named.
  """
  check_model_config(config, schema)
  _check_activation_specs(config)
  m = config.model
  num_towers = int(m.ensemble_size)
  embedding = None
  if schema.categorical:
    feature_config = {}
    for i in range(num_towers):
      if m.deep:
        feature_config[f"tower_{i}"] = tower_feature_config(config, schema, i)
      if m.wide:
        feature_config[f"tower_{i}_wide"] = tower_wide_feature_config(schema, i)
    embedding = _named_embedding(feature_config, embedding_optimizer,
                                 "embedding")
  towers = [CTRTower(config, schema, tower_index=i, name=f"tower_{i}")
            for i in range(num_towers)]
  keras_optimizer = None
  if embedding_optimizer is not None:
    keras_optimizer = keras_embedding_optimizer(embedding_optimizer,
                                                embedding_learning_rate)
  return CTRModel(embedding, towers, keras_optimizer,
                  mixed_precision=m.mixed_precision,
                  embedding_l2=m.embedding_l2)
