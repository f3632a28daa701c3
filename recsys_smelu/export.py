r"""SavedModel export with serving signatures, for TF Serving and Python.

Library: ``export_saved_model(model_dir, export_dir, model=..., config=...,
checkpoint=...)`` writes ``export_dir/<step>/`` (the versioned layout TF
Serving watches) holding a SavedModel with two signatures and
``assets.extra/config.json`` (the resolved config) and
``assets.extra/eval_metrics.json`` (when the run has one).

Command line (thin: flags -> ``export_saved_model``)::

  python -m recsys_smelu.export --model_dir=/tmp/run1 --export_dir=/tmp/saved
  recsys-smelu-export --model_dir=/tmp/run1 --export_dir=/tmp/saved \
      --checkpoint=/tmp/run1/checkpoints/ckpt-400

Signatures (clients send raw values; hashing / vocabulary lookup and the dense
transform run inside the graph through ``data.features.raw_to_model_inputs``,
the same function the input pipelines use, so serving cannot disagree with
training):

* ``serving_default``: one keyword input per raw feature, each a 1-D tensor
  ``[batch]``: dense features (``I1``..``I13`` for Criteo; the declared
  ``data.dense_columns`` for tabular data) as **float32, one tensor per
  feature** (the value as written; NaN = missing), and categorical features
  (``C1``..``C26``; ``data.categorical_columns``) as **tf.string** (the raw
  text, which training hashes, so a categorical that looks numeric is sent
  as its text; "" = missing). Tabular data's dense transform and its
  ``standardize`` statistics (``model_dir/schema.json``) are constants of
  the graph.
* ``predict_tf_example``: ``examples``, a ``[batch]`` tf.string tensor of
  serialized tf.Example protos with the same keys (float_list / bytes_list;
  an absent key is a missing value; a label key is ignored).

Both return ``{"probability": float32 [batch], "logit": float32 [batch]}``
with ``probability = sigmoid(logit)``.

Where the export runs: always on the host CPU, without a distribution
strategy. TFRS's ``TPUEmbedding`` built outside ``TPUStrategy`` is a plain
table lookup (``TPUEmbeddingForServing``) and restores the tables from a
checkpoint written under ``TPUStrategy``; so a model trained on Cloud TPU (or
under MirroredStrategy) is exported by rebuilding it from
``model_dir/config.json`` on CPU and restoring its checkpoint. That is what
this module does whenever ``model`` is not given or was built under a
distribution strategy; the in-process model is used directly only when it
lives on the default strategy. The SavedModel holds only standard TensorFlow
ops (custom activations are traced into plain ops), so loading it needs no
``recsys_smelu`` import.
"""

from __future__ import annotations

import os
import re
import time
from typing import Optional

from absl import logging
import ml_collections
from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

import tensorflow as tf  # pylint: disable=wrong-import-position

from recsys_smelu import activations as activations_lib
from recsys_smelu import compat
from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu.data import features as features_lib
from recsys_smelu import models as models_lib

SERVING_SIGNATURE = "serving_default"
TF_EXAMPLE_SIGNATURE = "predict_tf_example"
TF_EXAMPLE_INPUT = "examples"
OUTPUT_PROBABILITY = "probability"
OUTPUT_LOGIT = "logit"
ASSETS_EXTRA = "assets.extra"
CONFIG_FILE = "config.json"
EVAL_METRICS_FILE = "eval_metrics.json"  # as written by recsys_smelu.train
CHECKPOINT_SUBDIR = "checkpoints"  # as written by recsys_smelu.train
_CHECKPOINT_STEP = re.compile(r"ckpt-(\d+)$")


class ExportError(ValueError):
  """The export cannot proceed; the message names the directory or file."""


# ----------------------------------------------------------------------------
# Signatures


def serving_input_specs(schema: features_lib.FeatureSchema
                        ) -> dict[str, tf.TensorSpec]:
  """Raw-feature input specs of ``serving_default``: one [batch] per feature.

  Dense features float32, categorical tf.string; each spec carries the
  feature name, which becomes the signature's input key.
  """
  specs = {name: tf.TensorSpec([None], tf.float32, name=name)
           for name in schema.dense}
  specs.update({name: tf.TensorSpec([None], tf.string, name=name)
                for name in schema.categorical_names})
  return specs


def _outputs(logits: tf.Tensor) -> dict[str, tf.Tensor]:
  logits = tf.reshape(tf.cast(logits, tf.float32), [-1])
  return {OUTPUT_PROBABILITY: tf.sigmoid(logits), OUTPUT_LOGIT: logits}


class _ServingModule(tf.Module):
  """What the SavedModel holds: the two signature functions and the variables
  they read, and nothing else.

  The Keras model is kept out of the object graph on purpose (closure, not
  attribute): tracking it would make ``tf.saved_model.save`` also trace every
  Keras layer's ``call`` and store the optimizer slots, none of which serving
  needs. The variables the traced signatures capture are tracked explicitly
  (``model_variables``), which is all the SavedModel has to restore.
  """

  def __init__(self, model: tf.keras.Model,
               schema: features_lib.FeatureSchema):
    super().__init__(name="recsys_smelu_serving")
    example_spec = features_lib.tf_example_feature_spec(schema,
                                                        with_label=False)

    def predict_raw(features):
      inputs = features_lib.raw_to_model_inputs(features, schema)
      return _outputs(model(inputs, training=False))

    def predict_tf_example(examples):
      parsed = tf.io.parse_example(examples, example_spec)
      return predict_raw(parsed)

    self.serve = tf.function(predict_raw,
                             input_signature=[serving_input_specs(schema)])
    self.serve_tf_example = tf.function(
        predict_tf_example,
        input_signature=[tf.TensorSpec([None], tf.string,
                                       name=TF_EXAMPLE_INPUT)])
    self.serving_signatures = {
        SERVING_SIGNATURE: self.serve.get_concrete_function(),
        TF_EXAMPLE_SIGNATURE: self.serve_tf_example.get_concrete_function(),
    }
    captured = {}
    for function in self.serving_signatures.values():
      for variable in function.variables:
        captured.setdefault(id(variable), variable)
    self.model_variables = list(captured.values())


# ----------------------------------------------------------------------------
# Model and checkpoint


def _dummy_raw_batch(schema: features_lib.FeatureSchema
                     ) -> dict[str, tf.Tensor]:
  """One example with every feature missing: builds all model variables."""
  raw = {name: tf.constant([float("nan")], tf.float32) for name in schema.dense}
  raw.update({name: tf.constant([features_lib.MISSING_CATEGORICAL])
              for name in schema.categorical_names})
  return raw


def resolve_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
  """The checkpoint prefix to export: ``checkpoint`` or the latest in model_dir.

  ``checkpoint`` may be a prefix (``.../ckpt-400``) or a directory of
  checkpoints (its latest is taken).
  """
  if checkpoint:
    if tf.io.gfile.isdir(checkpoint):
      latest = tf.train.latest_checkpoint(checkpoint)
      if not latest:
        raise ExportError(f"--checkpoint={checkpoint!r} is a directory with no "
                          "checkpoint in it")
      return latest
    if not tf.io.gfile.exists(checkpoint + ".index"):
      raise ExportError(f"--checkpoint={checkpoint!r}: {checkpoint}.index does "
                        "not exist (give a prefix like DIR/checkpoints/ckpt-400)")
    return checkpoint
  directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
  latest = tf.train.latest_checkpoint(directory)
  if not latest:
    raise ExportError(f"no checkpoint in {directory}: is {model_dir!r} a "
                      "model_dir written by recsys_smelu.train?")
  return latest


def checkpoint_step(checkpoint: str) -> Optional[int]:
  """The global step in a ``ckpt-<step>`` prefix, or None."""
  match = _CHECKPOINT_STEP.search(os.path.basename(checkpoint))
  return int(match.group(1)) if match else None


def restore_model(config: ml_collections.ConfigDict, checkpoint: str
                  ) -> tf.keras.Model:
  """Builds the model ``config`` describes on CPU and restores ``checkpoint``.

  No distribution strategy: the TPUEmbedding tables become ordinary variables
  (also for a checkpoint written under TPUStrategy). The model is called once
  before restoring so that every variable exists; then the restore must match
  all of them (``assert_existing_objects_matched``), so a checkpoint of a
  different model fails here instead of exporting half-initialized weights.
  The optimizer state in the checkpoint is not needed and is skipped.
  """
  if tf.distribute.has_strategy():
    raise ExportError("export must run outside any tf.distribute strategy "
                      "scope (it rebuilds the model on CPU)")
  schema = data_lib.build_schema(config)
  with tf.device("/CPU:0"):
    model = models_lib.build_model(config, schema)
    model(features_lib.raw_to_model_inputs(_dummy_raw_batch(schema), schema),
          training=False)
    try:
      status = tf.train.Checkpoint(model=model).restore(checkpoint)
      status.expect_partial()
      status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:  # unmatched objects / shapes
      # TF's message lists the unmatched variables with their values; keep
      # the summary and the names.
      detail = str(e).split(" [<", 1)[0]
      names = re.findall(r"<tf\.Variable '([^']+)'", str(e))
      if names:
        detail += f" e.g. {', '.join(names[:5])}"
      raise ExportError(f"checkpoint {checkpoint} does not match the model "
                        f"described by the config: {detail}") from None
  return model


def _built_on_default_strategy(model: tf.keras.Model) -> bool:
  """Keras records the strategy a model was created under (None: default)."""
  return compat.model_distribution_strategy(model) is None


# ----------------------------------------------------------------------------
# Writing the versioned directory


def _write_assets_extra(version_dir: str, model_dir: str,
                        config: ml_collections.ConfigDict) -> None:
  assets = os.path.join(version_dir, ASSETS_EXTRA)
  tf.io.gfile.makedirs(assets)
  with tf.io.gfile.GFile(os.path.join(assets, CONFIG_FILE), "w") as f:
    f.write(config_lib.to_json(config))
  metrics = os.path.join(model_dir, EVAL_METRICS_FILE)
  if tf.io.gfile.exists(metrics):
    tf.io.gfile.copy(metrics, os.path.join(assets, EVAL_METRICS_FILE),
                     overwrite=True)


def _with_run_schema(config: ml_collections.ConfigDict, model_dir: str
                     ) -> ml_collections.ConfigDict:
  """``config`` reading the run's ``model_dir/schema.json`` (tabular data:
  roles, vocabularies, dense statistics) when there is one, so a model_dir
  moved or copied elsewhere still exports with its own schema."""
  path = os.path.join(model_dir, data_lib.tabular.SCHEMA_FILE)
  if data_lib.is_tabular(config.data) and tf.io.gfile.exists(path):
    return config_lib.override(config, {"data.schema_file": path})
  return config


def export_saved_model(model_dir: str, export_dir: str, *,
                       model: Optional[tf.keras.Model] = None,
                       config: Optional[ml_collections.ConfigDict] = None,
                       checkpoint: Optional[str] = None) -> str:
  """Writes the serving SavedModel of a trained run; returns its directory.

  Args:
    model_dir: the run's directory (``config.json``, ``checkpoints/``,
      ``eval_metrics.json``), as written by ``recsys_smelu.train``.
    export_dir: base directory; the SavedModel goes to
      ``export_dir/<step>/`` (replacing an existing export of that step).
    model: the trained in-process model, used as is when it was built on the
      default strategy; otherwise (None, or built under TPUStrategy /
      MirroredStrategy) the model is rebuilt on CPU from the checkpoint.
    config: the run's resolved config; default ``model_dir/config.json``.
    checkpoint: checkpoint prefix or directory to export (only when the
      model is rebuilt); default the latest in ``model_dir/checkpoints``.

  Returns:
    The version directory ``export_dir/<step>``. The step is the optimizer's
    step of ``model``, else the one in the checkpoint name (``ckpt-<step>``),
    else the current Unix time.

  Raises:
    ExportError: no checkpoint, or it does not match the config's model.
    FileNotFoundError: ``model_dir/config.json`` is missing.
  """
  if config is None:
    config = config_lib.load(model_dir)
  config = _with_run_schema(config, model_dir)
  step = None
  if model is not None and checkpoint is None and _built_on_default_strategy(
      model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
      step = int(optimizer.iterations.numpy())
  else:
    if model is not None and checkpoint is None:
      logging.info("Model was built under %s; exporting from its checkpoint "
                   "on CPU",
                   type(compat.model_distribution_strategy(model)).__name__)
    checkpoint = resolve_checkpoint(model_dir, checkpoint)
    model = restore_model(config, checkpoint)
    step = checkpoint_step(checkpoint)
    logging.info("Restored %s", checkpoint)
  if step is None:
    step = int(time.time())

  # Plain TF ops in the serving graph: the XLA-fused SmeLU kernels would
  # need XLA's JIT at run time, which TF Serving's CPU build does not enable.
  with activations_lib.fused_kernels(False):
    module = _ServingModule(model, data_lib.build_schema(config))
  version_dir = os.path.join(export_dir, str(step))
  local = "://" not in export_dir
  # Locally, write next to the final place and rename, so TF Serving (which
  # watches export_dir for numeric subdirectories) never sees half a model.
  staging = (os.path.join(export_dir, f".tmp-{step}-{os.getpid()}") if local
             else version_dir)
  for path in {staging, version_dir}:
    if tf.io.gfile.exists(path):
      logging.warning("Replacing existing export %s", path)
      tf.io.gfile.rmtree(path)
  tf.io.gfile.makedirs(export_dir)
  with activations_lib.fused_kernels(False):
    tf.saved_model.save(module, staging, signatures=module.serving_signatures)
  _write_assets_extra(staging, model_dir, config)
  if local:
    os.rename(staging, version_dir)
  logging.info("Exported SavedModel to %s", version_dir)
  return version_dir


# ----------------------------------------------------------------------------
# Command line


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("model_dir", None, "Run directory written by "
                      "recsys_smelu.train (config.json, checkpoints/).")
  flags.DEFINE_string("export_dir", None, "Base directory; the SavedModel is "
                      "written to EXPORT_DIR/<step>/ (TF Serving layout).")
  flags.DEFINE_string("checkpoint", "", "Checkpoint prefix (DIR/checkpoints/"
                      "ckpt-400) or directory; default: the latest in "
                      "MODEL_DIR/checkpoints.")
  flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    path = export_saved_model(f.model_dir, f.export_dir,
                              checkpoint=f.checkpoint or None)
  except (ExportError, config_lib.ConfigError, FileNotFoundError) as e:
    logging.error("%s", e)
    raise SystemExit(f"error: {e}") from None
  print(path)


def run():
  """Console script ``recsys-smelu-export``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
