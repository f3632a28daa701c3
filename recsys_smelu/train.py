r"""Trainer: one entry point over tf.distribute, with checkpoints and resume.

Library: ``train(config, model_dir, strategy=..., mode=...)`` builds the data
and the model from a validated config, trains with Keras ``fit`` under the
chosen ``tf.distribute`` strategy, checkpoints every
``train.checkpoint_every`` steps, resumes from the latest checkpoint, and
evaluates on the eval split with exact metrics from the predictions.

Command line (thin: flags -> config -> ``train``)::

  python -m recsys_smelu.train --config=configs/quickstart.py \
      --model_dir=/tmp/run1 --config.model.activation=smelu:beta=1
  recsys-smelu-train --config=configs/tpu_criteo_dlrm.py --strategy=tpu \
      --tpu=local --model_dir=gs://bucket/run1

Resume without replaying or skipping data: the training input is a
deterministic function of ``seed.data`` (seeded shuffle, seeded per-epoch
reshuffle, deterministic interleave), so on restart from a checkpoint at step
``s`` the dataset is rebuilt and its first ``s`` batches are skipped
(``Dataset.skip`` on the batched stream: the skipped data is read and decoded
again but never trained on). The step lives in the optimizer's ``iterations``,
which is checkpointed with the model and the optimizer slots.

Optimizers: embedding tables and dense layers get separate optimizers
(``train.embedding_optimizer`` / ``train.optimizer``). The trainer compiles the
model with the dense one; the model owns the embedding one (on CPU/GPU its
``train_step`` routes table gradients to it, under TPUStrategy the TPU
embedding engine applies it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Optional

from absl import logging
import ml_collections
import numpy as np
from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

import tensorflow as tf  # pylint: disable=wrong-import-position

from recsys_smelu import compat
from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu import metrics as metrics_lib
from recsys_smelu import models as models_lib
from recsys_smelu.models import schedules

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
MODES = ("train", "eval", "train_and_eval")
EVAL_METRICS_FILE = "eval_metrics.json"
PREDICTIONS_FILE = "predictions.npz"
CHECKPOINT_SUBDIR = "checkpoints"


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/Inf loss; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------
# Strategy and determinism


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
  """Returns the tf.distribute strategy named by ``--strategy``.

  * ``default``: the default (single device) strategy.
  * ``mirrored``: all GPUs, or all logical CPU devices when there is no GPU
    (so it can be exercised on a CPU host with
    ``tf.config.set_logical_device_configuration``).
  * ``multi_worker_mirrored``: synchronous data parallelism over the workers
    described by the ``TF_CONFIG`` environment variable.
  * ``tpu``: Cloud TPU through ``TPUClusterResolver(tpu)``: ``local`` on a
    TPU VM, else the TPU name or ``grpc://`` address.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_logical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)
  if name == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
    if tpu not in ("", "local"):
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"--strategy={name!r}: choose one of {', '.join(STRATEGIES)}")


def configure_determinism(config: ml_collections.ConfigDict) -> None:
  """Seeds TF's global RNG and, with ``determinism: true``, op determinism.

  Model weights, data order and dropout take their own seeds from
  ``config.seed``; the global seed only covers anything left unseeded.
  Op determinism does not switch off oneDNN, whose kernels x86 CPU builds of
  TensorFlow use by default (TF 2.21 still reports oneDNN enabled after
  ``enable_op_determinism()``). oneDNN may sum in another order than the
  stock kernels, so a run may differ in the last bits from one with
  ``TF_ENABLE_ONEDNN_OPTS=0``. TensorFlow reads that variable once, when it
  loads, and nothing here sets it: set it in the environment to rule oneDNN
  out (the bit-identity test does).
  """
  tf.random.set_seed(config.seed.init)
  if config.determinism:
    tf.config.experimental.enable_op_determinism()


# ----------------------------------------------------------------------------
# Optimizers


_DENSE_OPTIMIZERS = {
    "adam": tf.keras.optimizers.Adam,
    "adagrad": tf.keras.optimizers.Adagrad,
    "sgd": tf.keras.optimizers.SGD,
}


def learning_rate(base: float, train_config: ml_collections.ConfigDict):
  """``base`` with the warm-up and decay of ``train_config``
  (``config.train``), through ``models.schedules``."""
  t = train_config
  return schedules.learning_rate(base, warmup_steps=t.warmup_steps,
                                 total_steps=t.steps, decay=t.decay)


def make_dense_optimizer(config: ml_collections.ConfigDict
                         ) -> tf.keras.optimizers.Optimizer:
  """The optimizer of every non-embedding variable (``train.optimizer``).

  The embedding tables get theirs from the model (``train.embedding_optimizer``,
  see ``recsys_smelu.models``): on CPU/GPU the model's ``train_step`` routes
  table gradients to it, on TPU the TPU embedding engine applies it.
  """
  t = config.train
  return _DENSE_OPTIMIZERS[t.optimizer](
      learning_rate=learning_rate(t.learning_rate, t))


def build_model(config: ml_collections.ConfigDict,
                schema: data_lib.FeatureSchema) -> models_lib.CTRModel:
  """``models.build_model`` with the embedding optimizer ``config.train`` names.

  ``train.embedding_optimizer`` at ``train.embedding_learning_rate``, with
  the warm-up and decay of ``learning_rate`` on CPU/GPU.
  """
  t = config.train
  return models_lib.build_model(
      config, schema,
      embedding_optimizer=models_lib.embedding_optimizer(
          t.embedding_optimizer, t.embedding_learning_rate),
      embedding_learning_rate=learning_rate(t.embedding_learning_rate, t))


# ----------------------------------------------------------------------------
# The monitor callback: progress, summaries, NaN guard, checkpoints


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(
      strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return task_type == "chief" or (task_type == "worker" and task_id == 0
                                  and not has_chief) or task_type is None


class _TrainingMonitor(tf.keras.callbacks.Callback):
  """Checkpoints, NaN guard, examples/s, learning rate, progress and logs.

  Keras reports batch ends once per ``steps_per_execution`` steps. The
  monitor has Keras pass its logs as tensors (see ``compat``), reads only
  the loss on every report (for the NaN guard); the other metrics are read
  only when a line is logged, so a step costs one host sync, not one per
  metric. The step is the optimizer's ``iterations``, read once per epoch and
  advanced by Keras' batch index in between.

  After the first report (the train function is traced by then) the objects
  alive are frozen out of Python's garbage collector (``gc.freeze``) until
  training ends: full collections otherwise rescan the model's and the
  traced graphs' Python objects and stall a step every few hundred steps
  (docs/benchmarks.md#where-the-training-step-goes).
  """

  def __init__(self, manager: tf.train.CheckpointManager, total_steps: int,
               global_batch_size: int, log_every: int, writer, interactive: bool,
               bad_rows=None):
    super().__init__()
    compat.receive_logs_as_tensors(self)
    self._bad_rows = bad_rows
    self._manager = manager
    self._total = total_steps
    self._batch = global_batch_size
    self._log_every = log_every
    self._writer = writer
    self._interactive = interactive
    self._last_logged_step = None
    self._last_time = None
    self._epoch_start_step = 0
    self._bar = None
    self._froze_gc = False
    self.non_finite_step: Optional[int] = None
    self.examples_per_second: list[float] = []

  def _step(self) -> int:
    return int(self.model.optimizer.iterations.numpy())

  def on_train_begin(self, logs=None):
    step = self._step()
    self._last_logged_step, self._last_time = step, time.perf_counter()
    if self._interactive:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=self._total, initial=step, unit="step",
                       dynamic_ncols=True, file=sys.stderr)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start_step = self._step()

  def on_train_batch_end(self, batch, logs=None):
    if not self._froze_gc:
      gc.collect()
      gc.freeze()
      self._froze_gc = True
    logs = logs or {}
    # ``batch`` is the index in the epoch of the last step run.
    step = self._epoch_start_step + batch + 1
    loss = float(logs.get("loss", 0.0))
    if not math.isfinite(loss):
      self.non_finite_step = step
      self.model.stop_training = True
      return
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
    if step >= self._total:
      self.model.stop_training = True
    if step - self._last_logged_step >= self._log_every or step >= self._total:
      now = time.perf_counter()
      rate = (step - self._last_logged_step) * self._batch / max(
          now - self._last_time, 1e-9)
      self.examples_per_second.append(rate)
      lr = compat.current_learning_rate(self.model.optimizer)
      values = {name: float(logs[name]) for name in
                ("auc", "log_loss", "mean_prediction", "mean_label")
                if name in logs}
      if self._bar is not None:
        self._bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{rate:,.0f}")
      else:
        logging.info("step %d/%d  loss %.5f  auc %.4f  lr %.3g  %.0f examples/s",
                     step, self._total, loss, values.get("auc", float("nan")),
                     lr, rate)
      if self._writer is not None:
        with self._writer.as_default(step=step):
          tf.summary.scalar("train/loss", loss)
          for name, value in values.items():
            tf.summary.scalar(f"train/{name}", value)
          tf.summary.scalar("train/learning_rate", lr)
          tf.summary.scalar("train/examples_per_second", rate)
      self._last_logged_step, self._last_time = step, now

  def on_epoch_end(self, epoch, logs=None):
    if self.non_finite_step is None:
      self._manager.save(checkpoint_number=self._step())
    if self._bad_rows is not None and self._bad_rows.total:
      logging.warning("Training data so far: %s", self._bad_rows.summary())

  def unfreeze_gc(self) -> None:
    if self._froze_gc:
      gc.unfreeze()
      self._froze_gc = False

  def on_train_end(self, logs=None):
    self.unfreeze_gc()
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.flush()


# ----------------------------------------------------------------------------
# Evaluation


class _PredictWithLabels(tf.keras.Model):
  """Wraps a CTR model so one ``predict`` pass returns logits and labels.

  Keras ``predict`` keeps example order under every strategy and handles the
  last partial batch, so the eval split is read once and scored exactly once.
  With ``group_feature`` the bucket id of that categorical feature (e.g. the
  user) comes back too, for ranking metrics.
  """

  def __init__(self, model: tf.keras.Model, group_feature: str = ""):
    super().__init__()
    self.ctr_model = model
    self.group_feature = group_feature

  def predict_step(self, data):
    features, labels = data
    logits = tf.reshape(self.ctr_model(features, training=False), [-1])
    outputs = {"logit": tf.cast(logits, tf.float32), "label": labels}
    if self.group_feature:
      outputs["group"] = features["sparse_features"][self.group_feature]
    return outputs


def predict(model: tf.keras.Model, dataset: tf.data.Dataset,
            group_feature: str = "") -> dict[str, np.ndarray]:
  """Scores the whole dataset in order.

  Returns ``{"probabilities", "labels"}`` (float64) and ``"groups"`` when
  ``group_feature`` is given.
  """
  outputs = _PredictWithLabels(model, group_feature).predict(dataset, verbose=0)
  logits = outputs["logit"].astype(np.float64)
  result = {"probabilities": 1.0 / (1.0 + np.exp(-logits)),
            "labels": outputs["label"].astype(np.float64)}
  if group_feature:
    result["groups"] = outputs["group"]
  return result


def check_eval_truth(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError unless ``data.eval_truth`` (when set) has one value
  per row of ``data.eval_files``, e.g. after overriding only the eval files
  of a config made for synthetic data. Run before any model is built."""
  truth = read_eval_truth(config.data.eval_truth)
  if truth is None:
    return
  rows = data_lib.count_rows(config, "eval")
  if len(truth) != rows:
    eval_key = ("data.movielens_dir" if config.data.format == "movielens"
                else "data.eval_files")
    raise config_lib.ConfigError(
        f"config keys '{eval_key}' and 'data.eval_truth' do not match: the "
        f"eval split has {rows} rows, {config.data.eval_truth!r} has "
        f"{len(truth)} values (one true probability per eval row). Give the "
        "eval files' own truth file, or clear it: "
        "--config.data.eval_truth=''")


def read_eval_truth(path: str) -> Optional[np.ndarray]:
  """Per-eval-example true probabilities (synthetic data), one per line."""
  if not path:
    return None
  with tf.io.gfile.GFile(path) as f:
    return np.loadtxt(f, dtype=np.float64, ndmin=1)


def evaluate(config: ml_collections.ConfigDict, model: tf.keras.Model,
             strategy: tf.distribute.Strategy, model_dir: Optional[str],
             bad_rows=None) -> dict[str, Any]:
  """Exact AUC, log loss and calibration on the eval split.

  Writes ``model_dir/eval_metrics.json`` and ``model_dir/predictions.npz``
  (probabilities, labels and, with ``data.group_feature``, groups, in
  eval-file order) when ``model_dir`` is given.
  """
  dataset = data_lib.build_dataset(config, "eval", config.train.eval_batch_size,
                                   bad_rows=bad_rows)
  with strategy.scope():
    scored = predict(model, dataset, config.data.group_feature)
  probabilities, labels = scored["probabilities"], scored["labels"]
  truth = read_eval_truth(config.data.eval_truth)
  if truth is not None and len(truth) != len(labels):
    raise ValueError(f"data.eval_truth {config.data.eval_truth!r} has "
                     f"{len(truth)} values but the eval split has "
                     f"{len(labels)} examples")
  result = metrics_lib.model_metrics(labels, probabilities, truth)
  result["step"] = int(model.optimizer.iterations.numpy()) if model.optimizer else 0
  if bad_rows is not None:
    result["skipped_bad_rows"] = bad_rows.total
  if model_dir and _is_chief(strategy):
    with tf.io.gfile.GFile(os.path.join(model_dir, EVAL_METRICS_FILE), "w") as f:
      json.dump(result, f, indent=2, sort_keys=True)
    buffer = io.BytesIO()  # np.savez seeks; GFile (gs://) cannot
    np.savez(buffer, **scored)
    with tf.io.gfile.GFile(os.path.join(model_dir, PREDICTIONS_FILE), "wb") as f:
      f.write(buffer.getvalue())
  return result


# ----------------------------------------------------------------------------
# The library entry point


@dataclasses.dataclass
class TrainResult:
  model: tf.keras.Model
  step: int
  eval_metrics: Optional[dict[str, Any]]
  examples_per_second: Optional[float]
  checkpoint: Optional[str]


def _absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Local data paths made absolute, so config.json works from any directory."""
  changes = {}
  for key in ("train_files", "eval_files", "movielens_dir", "eval_truth",
              "schema_file"):
    value = config.data[key]
    if value and "://" not in value:
      changes[f"data.{key}"] = ",".join(
          os.path.abspath(os.path.expanduser(p.strip())) for p in value.split(","))
  return config_lib.override(config, changes)


def _worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Chief writes to model_dir; other MWMS workers to a fresh scratch dir.

  Every worker must take part in saving (collective ops), but only the
  chief's files are kept; all workers restore from the chief's checkpoints.
  """
  if _is_chief(strategy):
    return model_dir
  resolver = strategy.cluster_resolver
  return tempfile.mkdtemp(
      prefix=f"recsys_smelu_{resolver.task_type}_{resolver.task_id}_")


def prepare_tabular_schema(config: ml_collections.ConfigDict, model_dir: str,
                           write_dir: Optional[str] = None
                           ) -> ml_collections.ConfigDict:
  """For the tabular formats, the run's ``schema.json`` (roles,
  vocabularies, statistics) and ``config`` with ``data.schema_file`` on it.

  A run that has ``model_dir/schema.json`` (resume, ``--mode=eval``) reuses
  it after checking the config's roles still match (DataError naming the
  key otherwise); a new run takes ``data.schema_file`` when set, else
  builds the schema from ``data.train_files`` only, and writes it to
  ``write_dir/schema.json`` (default ``model_dir``; a non-chief worker's
  scratch directory). Every later step (datasets, export, twins) reads the
  schema from that file. Other formats: ``config`` unchanged.
  """
  if not data_lib.is_tabular(config.data):
    return config
  path = os.path.join(model_dir, data_lib.tabular.SCHEMA_FILE)
  if tf.io.gfile.exists(path):
    config = config_lib.override(config, {"data.schema_file": path})
    data_lib.tabular_schema(config)  # checks the roles
    return config
  schema = data_lib.tabular_schema(config)
  path = os.path.join(write_dir or model_dir, data_lib.tabular.SCHEMA_FILE)
  data_lib.tabular.save_schema(schema, path)
  logging.info("Wrote %s", path)
  return config_lib.override(config, {"data.schema_file": path})


def build(config: ml_collections.ConfigDict, strategy: tf.distribute.Strategy
          ) -> tuple[tf.keras.Model, tf.train.Checkpoint]:
  """Model + optimizer compiled under ``strategy``, and its checkpoint."""
  schema = data_lib.build_schema(config)
  with strategy.scope():
    model = build_model(config, schema)
    if not isinstance(strategy, tf.distribute.TPUStrategy):
      models_lib.create_variables(model, schema)
    optimizer = make_dense_optimizer(config)
    model.compile(optimizer=optimizer,
                  steps_per_execution=config.train.steps_per_execution,
                  jit_compile=config.train.jit_compile)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  return model, checkpoint


def train(config: ml_collections.ConfigDict, model_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None,
          mode: str = "train_and_eval",
          interactive: Optional[bool] = None) -> TrainResult:
  """Trains and/or evaluates the model ``config`` describes in ``model_dir``.

  Resumes from the latest checkpoint in ``model_dir/checkpoints`` when there is
  one. Raises ``NonFiniteLossError`` (keeping the last good checkpoint) when
  the training loss becomes NaN or Inf, ``ConfigError`` for a bad config, and
  ``data.BadRowError`` (``file:line: bad row ...``) for a bad training or
  eval row under ``data.on_bad_row='error'``.
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
  config = _absolute_paths(config_lib.validate(config))
  if mode in ("eval", "train_and_eval"):
    check_eval_truth(config)
  strategy = strategy or tf.distribute.get_strategy()
  configure_determinism(config)
  work_dir = _worker_dir(model_dir, strategy)
  tf.io.gfile.makedirs(work_dir)
  config = prepare_tabular_schema(config, model_dir, work_dir)
  if _is_chief(strategy):
    config_lib.save(config, model_dir)

  model, checkpoint = build(config, strategy)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(work_dir, CHECKPOINT_SUBDIR),
      max_to_keep=config.train.keep_checkpoints)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_SUBDIR))
  if latest:
    checkpoint.restore(latest).expect_partial()
    logging.info("Restored %s (step %d)", latest,
                 int(model.optimizer.iterations.numpy()))
  elif mode == "eval":
    raise FileNotFoundError(f"--mode=eval: no checkpoint in "
                            f"{os.path.join(model_dir, CHECKPOINT_SUBDIR)}")

  bad_rows = data_lib.BadRowCounter()
  rate = None
  if mode in ("train", "train_and_eval"):
    with _bad_row_as_data_error():
      rate = _fit(config, model, manager, strategy, work_dir, bad_rows,
                  sys.stderr.isatty() if interactive is None else interactive)
    if bad_rows.total:
      logging.warning("Training data: %s", bad_rows.summary())
  step = int(model.optimizer.iterations.numpy())
  if work_dir != model_dir:
    tf.io.gfile.rmtree(work_dir)

  eval_metrics = None
  if mode in ("eval", "train_and_eval"):
    eval_bad_rows = data_lib.BadRowCounter()
    with _bad_row_as_data_error():
      eval_metrics = evaluate(config, model, strategy, model_dir,
                              eval_bad_rows)
    logging.info("Eval at step %d: %s", step, json.dumps(eval_metrics))
    if eval_bad_rows.total:
      logging.warning("Eval data: %s", eval_bad_rows.summary())
  if config.train.export and _is_chief(strategy):
    from recsys_smelu import export as export_lib  # pylint: disable=g-import-not-at-top
    export_lib.export_saved_model(model_dir, os.path.join(model_dir, "export"),
                                  model=model, config=config)
  return TrainResult(model=model, step=step, eval_metrics=eval_metrics,
                     examples_per_second=rate,
                     checkpoint=tf.train.latest_checkpoint(
                         os.path.join(model_dir, CHECKPOINT_SUBDIR)))


DATAFRAMES_SUBDIR = "dataframes"


def train_dataframes(config: ml_collections.ConfigDict, model_dir: str,
                     train_df, eval_df=None, validation_df=None,
                     strategy: Optional[tf.distribute.Strategy] = None,
                     mode: str = "train_and_eval",
                     interactive: Optional[bool] = None) -> TrainResult:
  """``train`` on pandas DataFrames, by the config's column roles.

  ``data.label_column`` / ``dense_columns`` / ``categorical_columns`` /
  ``ignore_columns`` name the DataFrame columns (every column needs one
  role). The DataFrames are written once to ``model_dir/dataframes/*.csv``
  (``data.dataframes.write_dataframes``), so the run is the csv run of
  their rows: the schema (vocabularies, statistics) from ``train_df`` only,
  ``model_dir/schema.json``, any strategy, export. Resuming checks each
  DataFrame is the one the run was started with (row count and content
  hash; DataError otherwise). ``eval_df`` is required for the eval modes
  unless ``data.eval_files`` names csv files of the same columns.
  """
  from recsys_smelu.data import dataframes  # pylint: disable=g-import-not-at-top
  if mode in ("eval", "train_and_eval") and eval_df is None and (
      not config.data.eval_files):
    raise ValueError(f"mode={mode!r} needs eval_df (or data.eval_files)")
  frames = {"train": train_df, "eval": eval_df}
  if validation_df is not None:
    frames["validation"] = validation_df
  config = dataframes.write_dataframes(
      config, os.path.join(model_dir, DATAFRAMES_SUBDIR), frames)
  return train(config, model_dir, strategy=strategy, mode=mode,
               interactive=interactive)


@contextlib.contextmanager
def _bad_row_as_data_error():
  """Turns the tf.data error of a bad row (``data.on_bad_row='error'``)
  into ``data_lib.BadRowError``: just ``file:line: bad row (reason); line
  content: ...``, without TensorFlow's node and stack text."""
  try:
    yield
  except tf.errors.InvalidArgumentError as e:
    bad_row = data_lib.bad_row_error(e)
    if bad_row is None:
      raise
    raise bad_row from None


def _fit(config, model, manager, strategy, work_dir, bad_rows, interactive
         ) -> Optional[float]:
  """Runs Keras fit from the restored step to ``train.steps``."""
  t = config.train
  start = int(model.optimizer.iterations.numpy())
  if start >= t.steps:
    logging.info("Already trained to step %d (train.steps=%d)", start, t.steps)
    return None

  def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    dataset = data_lib.build_dataset(
        config, "train", t.batch_size, seed=config.seed.data, repeat=True,
        input_context=input_context, bad_rows=bad_rows)
    return dataset.skip(start)

  dataset = strategy.distribute_datasets_from_function(dataset_fn)

  writer = tf.summary.create_file_writer(os.path.join(work_dir, "train")) \
      if _is_chief(strategy) else None
  monitor = _TrainingMonitor(manager, t.steps, t.batch_size, t.log_every, writer,
                             interactive, bad_rows)
  epochs = math.ceil(t.steps / t.checkpoint_every)
  try:
    model.fit(dataset, epochs=epochs, initial_epoch=start // t.checkpoint_every,
              steps_per_epoch=t.checkpoint_every, callbacks=[monitor],
              verbose=0)
  finally:
    monitor.unfreeze_gc()  # also when fit raises
  if monitor.non_finite_step is not None:
    raise NonFiniteLossError(
        f"training loss became NaN/Inf at step {monitor.non_finite_step} "
        f"(reported every train.steps_per_execution={t.steps_per_execution} "
        f"steps); stopped without saving. Last good checkpoint: "
        f"{manager.latest_checkpoint or 'none'}. Try a lower learning rate.")
  step = int(model.optimizer.iterations.numpy())
  if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(
      f"-{step}"):
    manager.save(checkpoint_number=step)
  rates = monitor.examples_per_second
  return float(np.median(rates)) if rates else None


# ----------------------------------------------------------------------------
# Command line


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (configs/*.py), optionally "
      "file.py:variant; override any key with --config.section.key=value.",
      lock_config=True)
  flags.DEFINE_string("model_dir", None, "Directory for checkpoints, "
                      "TensorBoard summaries, config.json, eval_metrics.json.")
  flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy.")
  flags.DEFINE_string("tpu", "", "TPU name or grpc:// address; 'local' on a "
                      "TPU VM. Only with --strategy=tpu.")
  flags.DEFINE_enum("mode", "train_and_eval", MODES, "What to run.")
  flags.mark_flags_as_required(["config", "model_dir"])
  return flags.FLAGS


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  config = f.config
  strategy = make_strategy(f.strategy, f.tpu)
  try:
    train(config, f.model_dir, strategy, f.mode)
  except (NonFiniteLossError, config_lib.ConfigError, FileNotFoundError,
          data_lib.DataError) as e:
    logging.error("%s", e)
    raise SystemExit(f"error: {e}") from None


def run():
  """Console script ``recsys-smelu-train``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  config_lib.check_command_line_overrides(sys.argv)
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
