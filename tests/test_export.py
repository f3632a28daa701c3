"""SavedModel export: signatures, numbers, CLI tools, loading without us.

One tiny SmeLU DLRM is trained per module (``train.export=True``, so the
trainer's end-of-training export is exercised too); the tests compare the
exported signatures with the in-process Keras model on the same eval rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recsys_smelu import config as config_lib  # noqa: F401  (before tensorflow)
from recsys_smelu import data as data_lib
from recsys_smelu import export as export_lib
from recsys_smelu import train as train_lib
from recsys_smelu.data import features as features_lib
import tensorflow as tf

from conftest import run_python, tiny_config

NUM_ROWS = 200
TOLERANCE = 1e-6
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable),
                               "saved_model_cli")


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
  """A trained tiny SmeLU model, its run dir and its end-of-training export."""
  model_dir = str(tmp_path_factory.mktemp("export_run"))
  config = tiny_config(synthetic_dir, model__activation="smelu:beta=1",
                       train__export=True)
  result = train_lib.train(config, model_dir, interactive=False)
  return {"model": result.model, "model_dir": model_dir, "step": result.step,
          "config": config_lib.load(model_dir), "data_dir": synthetic_dir}


def read_eval_rows(data_dir: str, num_rows: int = NUM_ROWS):
  """First rows of the first eval file as raw TSV strings, and labels."""
  path = os.path.join(data_dir, "eval-00000-of-00002.tsv")
  with open(path) as f:
    lines = [next(f).rstrip("\n").split("\t") for _ in range(num_rows)]
  columns = list(zip(*lines))
  labels = np.array(columns[0], np.float64)
  dense = {f"I{i + 1}": np.array(columns[1 + i]) for i in range(13)}
  categorical = {f"C{i + 1}": np.array(columns[14 + i]) for i in range(26)}
  return dense, categorical, labels


def serving_inputs(dense, categorical) -> dict[str, tf.Tensor]:
  """serving_default's inputs: float32 dense (NaN = missing), raw strings."""
  inputs = {name: tf.constant([float(v) if v else float("nan") for v in values],
                              tf.float32)
            for name, values in dense.items()}
  inputs.update({name: tf.constant(values.tolist())
                 for name, values in categorical.items()})
  return inputs


def tf_examples(dense, categorical) -> tf.Tensor:
  """Serialized tf.Examples; missing values are left out of the proto."""
  serialized = []
  for i in range(len(next(iter(dense.values())))):
    feature = {}
    for name, values in dense.items():
      if values[i]:
        feature[name] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[float(values[i])]))
    for name, values in categorical.items():
      if values[i]:
        feature[name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[values[i].encode()]))
    serialized.append(tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString())
  return tf.constant(serialized)


def keras_probabilities(model, dense, categorical, schema) -> np.ndarray:
  """The in-process model on the raw TSV strings, as the input pipeline
  feeds them (dense as strings, parsed inside raw_to_model_inputs)."""
  raw = {name: tf.constant(values.tolist()) for name, values in
         {**dense, **categorical}.items()}
  logits = model(features_lib.raw_to_model_inputs(raw, schema), training=False)
  return tf.sigmoid(tf.reshape(logits, [-1])).numpy()


@pytest.fixture(scope="module")
def rows(trained):
  return read_eval_rows(trained["data_dir"])


@pytest.fixture(scope="module")
def schema(trained):
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.build_schema(trained["config"])


def test_trainer_export_layout_and_assets(trained):
  model_dir = trained["model_dir"]
  version_dir = os.path.join(model_dir, "export", str(trained["step"]))
  assert trained["step"] == 20
  assert sorted(os.listdir(os.path.join(model_dir, "export"))) == ["20"]
  assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
  assert os.path.isdir(os.path.join(version_dir, "variables"))
  assets = os.path.join(version_dir, "assets.extra")
  with open(os.path.join(assets, "config.json")) as f:
    assert config_lib.from_json(f.read()).to_dict() == \
        trained["config"].to_dict()
  with open(os.path.join(assets, "eval_metrics.json")) as f, \
      open(os.path.join(model_dir, "eval_metrics.json")) as g:
    assert json.load(f) == json.load(g)


def test_serving_graph_needs_no_xla_jit_and_no_native_ops(trained):
  """SmeLU's fused XLA kernels and native ops are for training; TF Serving's
  CPU build has no XLA JIT and none of our ops, so no exported function may be
  marked must-compile or use an op of ``recsys_smelu.native``."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  version_dir = os.path.join(trained["model_dir"], "export", str(trained["step"]))
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  functions = proto.meta_graphs[0].graph_def.library.function
  assert functions
  must_compile = [f.signature.name for f in functions
                  if f.attr.get("_XlaMustCompile") and
                  f.attr["_XlaMustCompile"].b]
  assert not must_compile, must_compile
  graph = proto.meta_graphs[0].graph_def
  op_types = {n.op for n in graph.node} | {
      n.op for f in functions for n in f.node_def}
  assert "MatMul" in op_types
  native_ops = {"SmeluForward", "SmeluBackward", "EmbeddingAdagradUpdate",
                "DecodeCriteoRows"}
  assert not op_types & native_ops, op_types & native_ops


def test_signatures_equal_keras_model_on_eval_rows(trained, rows, schema):
  dense, categorical, _ = rows
  expected = keras_probabilities(trained["model"], dense, categorical, schema)
  loaded = tf.saved_model.load(
      os.path.join(trained["model_dir"], "export", "20"))
  assert set(loaded.signatures) == {"serving_default", "predict_tf_example"}

  served = loaded.signatures["serving_default"](**serving_inputs(
      dense, categorical))
  assert set(served) == {"probability", "logit"}
  assert served["probability"].shape == (NUM_ROWS,)
  np.testing.assert_allclose(served["probability"].numpy(), expected,
                             rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(tf.sigmoid(served["logit"]).numpy(),
                             served["probability"].numpy(), rtol=0, atol=1e-7)

  from_examples = loaded.signatures["predict_tf_example"](
      examples=tf_examples(dense, categorical))
  np.testing.assert_allclose(from_examples["probability"].numpy(), expected,
                             rtol=0, atol=TOLERANCE)
  # The rows have missing values of both kinds, so both paths were exercised.
  assert any("" in v for v in dense.values())
  assert any("" in v for v in categorical.values())
  # A trained model is not constant: the comparison is not trivially true.
  assert np.std(expected) > 1e-3


def test_serving_agrees_with_the_training_input_pipeline(trained, rows):
  """The trainer's eval predictions (TSV reader -> model, in file order)
  equal the served ones: serving and training transform raw values alike.
  (1e-5: Keras predict runs other batch sizes, which may round differently.)"""
  dense, categorical, labels = rows
  with np.load(os.path.join(trained["model_dir"], "predictions.npz")) as saved:
    pipeline_probabilities = saved["probabilities"][:NUM_ROWS]
    np.testing.assert_array_equal(saved["labels"][:NUM_ROWS], labels)
  loaded = tf.saved_model.load(
      os.path.join(trained["model_dir"], "export", "20"))
  served = loaded.signatures["serving_default"](**serving_inputs(
      dense, categorical))["probability"].numpy()
  np.testing.assert_allclose(served, pipeline_probabilities, rtol=0, atol=1e-5)


def test_export_from_checkpoint_on_cpu(trained, rows, schema, tmp_path):
  """model=None rebuilds from config.json + latest checkpoint (the TPU path);
  --checkpoint picks an earlier step."""
  dense, categorical, _ = rows
  inputs = serving_inputs(dense, categorical)
  model_dir = trained["model_dir"]
  path = export_lib.export_saved_model(model_dir, str(tmp_path / "serving"))
  assert path == str(tmp_path / "serving" / "20")
  latest = tf.saved_model.load(path).signatures["serving_default"](**inputs)
  expected = keras_probabilities(trained["model"], dense, categorical, schema)
  np.testing.assert_allclose(latest["probability"].numpy(), expected, rtol=0,
                             atol=TOLERANCE)

  early = export_lib.export_saved_model(
      model_dir, str(tmp_path / "serving"),
      checkpoint=os.path.join(model_dir, "checkpoints", "ckpt-10"))
  assert early == str(tmp_path / "serving" / "10")
  assert sorted(os.listdir(tmp_path / "serving")) == ["10", "20"]
  at_10 = tf.saved_model.load(early).signatures["serving_default"](**inputs)
  assert np.max(np.abs(at_10["probability"].numpy() - expected)) > 1e-4

  # Exporting the same step again replaces it in place.
  again = export_lib.export_saved_model(model_dir, str(tmp_path / "serving"))
  assert again == path
  assert sorted(os.listdir(tmp_path / "serving")) == ["10", "20"]


@pytest.mark.parametrize("changes", [
    {"model__wide": True, "model__embedding_l2": 1e-3, "model__dense_l2": 1e-3},
    {"model__wide": True, "model__deep": False},  # logistic regression
], ids=["wide_dot", "logreg"])
def test_wide_model_export_round_trip(trained, synthetic_dir, rows, schema,
                                      tmp_path, changes):
  """A wide (or wide-only) model exports with the very same signatures, and
  the SavedModel predicts what the Keras model does."""
  config = tiny_config(synthetic_dir, train__export=True, **changes)
  result = train_lib.train(config, str(tmp_path), interactive=False)
  loaded = tf.saved_model.load(str(tmp_path / "export" / "20"))
  reference = tf.saved_model.load(
      os.path.join(trained["model_dir"], "export", "20"))
  for name in ("serving_default", "predict_tf_example"):
    ours, theirs = loaded.signatures[name], reference.signatures[name]
    assert ours.structured_input_signature == theirs.structured_input_signature
    assert ours.structured_outputs == theirs.structured_outputs
  dense, categorical, _ = rows
  expected = keras_probabilities(result.model, dense, categorical, schema)
  served = loaded.signatures["serving_default"](
      **serving_inputs(dense, categorical))["probability"].numpy()
  np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)
  from_examples = loaded.signatures["predict_tf_example"](
      examples=tf_examples(dense, categorical))["probability"].numpy()
  np.testing.assert_allclose(from_examples, expected, rtol=0, atol=TOLERANCE)
  assert np.std(expected) > 1e-4
  # Rebuilt from config.json + checkpoint (the TPU path) it predicts the same.
  rebuilt = export_lib.export_saved_model(str(tmp_path),
                                          str(tmp_path / "rebuilt"))
  again = tf.saved_model.load(rebuilt).signatures["serving_default"](
      **serving_inputs(dense, categorical))["probability"].numpy()
  np.testing.assert_allclose(again, expected, rtol=0, atol=TOLERANCE)


def test_model_built_under_a_strategy_is_exported_from_its_checkpoint(
    trained, schema):
  assert export_lib._built_on_default_strategy(trained["model"])  # pylint: disable=protected-access
  from recsys_smelu import models as models_lib  # pylint: disable=g-import-not-at-top
  with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
    mirrored = models_lib.build_model(trained["config"], schema)
  assert not export_lib._built_on_default_strategy(mirrored)  # pylint: disable=protected-access


def test_malformed_serving_input_fails_with_tf_errors(trained, rows):
  dense, categorical, _ = rows
  signatures = tf.saved_model.load(
      os.path.join(trained["model_dir"], "export", "20")).signatures
  serve = signatures["serving_default"]
  good = serving_inputs(dense, categorical)

  missing = {k: v for k, v in good.items() if k != "C7"}
  with pytest.raises(TypeError, match="C7"):
    serve(**missing)
  with pytest.raises(TypeError, match="unexpected keyword argument 'C99'"):
    serve(**good, C99=good["C1"])
  for name, bad_value in (("I1", tf.cast(good["I1"], tf.int32)),
                          ("I2", tf.constant(dense["I2"].tolist())),
                          ("C3", tf.zeros([NUM_ROWS], tf.float32))):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="was expected to be a (float|string) tensor"):
      serve(**{**good, name: bad_value})
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="Could not parse example"):
    signatures["predict_tf_example"](examples=tf.constant([b"not a proto"]))
  wrong_type = tf.train.Example(features=tf.train.Features(feature={
      "I1": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="Key: I1.*Data types don't match"):
    signatures["predict_tf_example"](
        examples=tf.constant([wrong_type.SerializeToString()]))


def test_wrong_model_dir_fails_loudly(trained, tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    export_lib.export_saved_model(str(tmp_path), str(tmp_path / "out"))
  # A config whose model differs from the checkpoint's.
  for change in ({"model.ensemble_size": 2}, {"model.top_mlp": [8, 1]}):
    model_dir = tmp_path / f"wrong_{len(os.listdir(tmp_path))}"
    config_lib.save(config_lib.override(trained["config"], change),
                    str(model_dir))
    shutil.copytree(os.path.join(trained["model_dir"], "checkpoints"),
                    model_dir / "checkpoints")
    with pytest.raises(export_lib.ExportError, match="does not match"):
      export_lib.export_saved_model(str(model_dir), str(tmp_path / "out"))
  # A config but no checkpoints.
  config_lib.save(trained["config"], str(tmp_path / "untrained"))
  with pytest.raises(export_lib.ExportError, match="no checkpoint in"):
    export_lib.export_saved_model(str(tmp_path / "untrained"),
                                  str(tmp_path / "out"))
  with pytest.raises(export_lib.ExportError, match="ckpt-999.index"):
    export_lib.export_saved_model(
        trained["model_dir"], str(tmp_path / "out"),
        checkpoint=os.path.join(trained["model_dir"], "checkpoints",
                                "ckpt-999"))
  assert not os.path.exists(tmp_path / "out" / "20")


def test_loads_without_recsys_smelu(trained, rows, schema):
  """Custom activations (SmeLU) are plain ops in the SavedModel: a process
  that never imports recsys_smelu (nor sets TF_USE_LEGACY_KERAS) serves it."""
  dense, categorical, _ = rows
  n = 20
  payload = {name: [None if not v else float(v) for v in values[:n]]
             for name, values in dense.items()}
  payload.update({name: values[:n].tolist()
                  for name, values in categorical.items()})
  script = textwrap.dedent("""
      import json, sys
      import tensorflow as tf
      inputs = json.loads(sys.stdin.read())
      tensors = {}
      for name, values in inputs.items():
        if name.startswith("I"):
          tensors[name] = tf.constant(
              [float("nan") if v is None else v for v in values], tf.float32)
        else:
          tensors[name] = tf.constant(values)
      loaded = tf.saved_model.load(sys.argv[1])
      out = loaded.signatures["serving_default"](**tensors)
      print(json.dumps({"probability": out["probability"].numpy().tolist(),
                        "imported": sorted(m for m in sys.modules
                                           if m.startswith("recsys_smelu"))}))
  """)
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  env.pop("PYTHONPATH", None)
  result = subprocess.run(
      [sys.executable, "-c", script,
       os.path.join(trained["model_dir"], "export", "20")],
      input=json.dumps(payload), capture_output=True, text=True, timeout=300,
      cwd="/", env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  output = json.loads(result.stdout.strip().splitlines()[-1])
  assert output["imported"] == []
  expected = keras_probabilities(
      trained["model"], {k: v[:n] for k, v in dense.items()},
      {k: v[:n] for k, v in categorical.items()}, schema)
  np.testing.assert_allclose(output["probability"], expected, rtol=0,
                             atol=TOLERANCE)
  assert trained["config"].model.activation == "smelu:beta=1"


@pytest.mark.slow
def test_saved_model_cli_show_and_run(trained):
  version_dir = os.path.join(trained["model_dir"], "export", "20")
  shown = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir",
                          version_dir], capture_output=True, text=True,
                         timeout=300)
  assert shown.returncode == 0, shown.stderr[-3000:]
  assert "signature_def['serving_default']" in shown.stdout
  assert "signature_def['predict_tf_example']" in shown.stdout
  for name in ("I1", "I13", "C1", "C26", "examples"):
    assert f"inputs['{name}']" in shown.stdout
  for name in ("probability", "logit"):
    assert f"outputs['{name}']" in shown.stdout

  # --input_exprs takes Python literals only (so no NaN = missing dense).
  exprs = ";".join([f"I{i}=[1.0,0.0,250.0]" for i in range(1, 14)] +
                   [f"C{i}=[b'68fd1e64',b'',b'never-seen']"
                    for i in range(1, 27)])
  ran = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", version_dir,
                        "--tag_set", "serve", "--signature_def",
                        "serving_default", "--input_exprs", exprs],
                       capture_output=True, text=True, timeout=300)
  assert ran.returncode == 0, ran.stderr[-3000:]
  match = re.search(r"Result for output key probability:\s*\[([^\]]*)\]",
                    ran.stdout)
  assert match, ran.stdout
  probabilities = np.array(match.group(1).split(), np.float64)
  assert probabilities.shape == (3,)
  assert np.all(np.isfinite(probabilities))
  assert np.all((probabilities > 0) & (probabilities < 1))


@pytest.mark.slow
def test_command_line(trained, tmp_path):
  export_dir = str(tmp_path / "cli")
  result = run_python(["-m", "recsys_smelu.export",
                       f"--model_dir={trained['model_dir']}",
                       f"--export_dir={export_dir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == os.path.join(export_dir,
                                                                "20")
  assert os.path.exists(os.path.join(export_dir, "20", "saved_model.pb"))

  bad = run_python(["-m", "recsys_smelu.export", f"--model_dir={tmp_path}",
                    f"--export_dir={export_dir}"])
  assert bad.returncode != 0
  assert "error:" in bad.stderr and "config.json" in bad.stderr
  assert "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------
# A model trained on csv files: named signature inputs, standardize inside.


@pytest.fixture(scope="module")
def csv_trained(tmp_path_factory):
  """A tiny model trained on Avazu-shaped csv files with two dense columns
  (standardized), exported at the end of training."""
  from conftest import TINY  # pylint: disable=g-import-not-at-top
  from tabular_samples import avazu_config_changes  # pylint: disable=g-import-not-at-top
  from tabular_samples import write_avazu  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("csv_export")
  train = write_avazu(str(root / "train.csv"), 1500, 0, with_dense=True)
  evaluation = write_avazu(str(root / "eval.csv"), 300, 1, with_dense=True)
  # site_category values cat4 and cat5 are out of this vocabulary file;
  # device_model's vocabulary is built from counts (m0..m59, ~25 each).
  vocabulary = root / "site_category.txt"
  vocabulary.write_text("cat0\ncat1\ncat2\ncat3\n")
  changes = dict(TINY)
  changes.update(avazu_config_changes(train, evaluation, with_dense=True))
  changes.update({"data.dense_transform": "standardize",
                  "data.vocabulary_files": f"site_category={vocabulary}",
                  "data.vocabulary_columns": "device_model",
                  "data.vocab_min_count": 30,
                  "train.export": True})
  model_dir = str(root / "run")
  result = train_lib.train(
      config_lib.override(config_lib.default_config(), changes), model_dir,
      interactive=False)
  return {"model_dir": model_dir, "step": result.step, "eval_file": evaluation,
          "train_file": train, "vocabulary_file": str(vocabulary)}


def _csv_serving_inputs(path):
  import csv  # pylint: disable=g-import-not-at-top
  from tabular_samples import CATEGORICAL, DENSE  # pylint: disable=g-import-not-at-top
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  inputs = {name: tf.constant([r[name] for r in rows]) for name in CATEGORICAL}
  inputs.update({name: tf.constant(
      [float(r[name]) if r[name] else float("nan") for r in rows], tf.float32)
                 for name in DENSE})
  return rows, inputs


def test_csv_model_serves_raw_named_columns_as_the_trainer_predicted(
    csv_trained):
  from tabular_samples import CATEGORICAL, DENSE  # pylint: disable=g-import-not-at-top
  export_dir = os.path.join(csv_trained["model_dir"], "export",
                            str(csv_trained["step"]))
  loaded = tf.saved_model.load(export_dir)
  serving = loaded.signatures["serving_default"]
  specs = serving.structured_input_signature[1]
  assert set(specs) == set(CATEGORICAL) | set(DENSE)
  assert all(specs[n].dtype == tf.string for n in CATEGORICAL)
  assert all(specs[n].dtype == tf.float32 for n in DENSE)
  rows, inputs = _csv_serving_inputs(csv_trained["eval_file"])
  served = serving(**inputs)["probability"].numpy()
  with np.load(os.path.join(csv_trained["model_dir"],
                            "predictions.npz")) as saved:
    np.testing.assert_allclose(served, saved["probabilities"], rtol=0,
                               atol=1e-5)
    np.testing.assert_array_equal(saved["labels"],
                                  [float(r["click"]) for r in rows])
  assert np.std(served) > 1e-3

  # predict_tf_example: categorical values as bytes (the text), dense floats.
  examples = []
  for r in rows:
    feature = {n: tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[r[n].encode()])) for n in CATEGORICAL if r[n]}
    feature.update({n: tf.train.Feature(float_list=tf.train.FloatList(
        value=[float(r[n])])) for n in DENSE if r[n]})
    examples.append(tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString())
  from_examples = loaded.signatures["predict_tf_example"](
      examples=tf.constant(examples))["probability"].numpy()
  np.testing.assert_allclose(from_examples, served, rtol=0, atol=1e-6)


def test_standardize_statistics_are_inside_the_saved_model(csv_trained,
                                                           tmp_path):
  """The statistics are graph constants: serving a copy of the export with
  the run's schema.json gone gives the same numbers, and they are the
  training file's own mean and std."""
  from tabular_samples import DENSE  # pylint: disable=g-import-not-at-top
  model_dir = csv_trained["model_dir"]
  with open(os.path.join(model_dir, "schema.json")) as f:
    stats = {d["name"]: (d["mean"], d["std"]) for d in json.load(f)["dense"]}
  import pandas as pd  # pylint: disable=g-import-not-at-top
  train = pd.read_csv(os.path.join(os.path.dirname(model_dir), "train.csv"))
  for name in DENSE:
    values = train[name].dropna().to_numpy(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats[name], (values.mean(), values.std()),
                               rtol=1e-9)
  copy = str(tmp_path / "copy")
  shutil.copytree(os.path.join(model_dir, "export",
                               str(csv_trained["step"])), copy)
  loaded = tf.saved_model.load(copy)
  serving = loaded.signatures["serving_default"]
  _, inputs = _csv_serving_inputs(csv_trained["eval_file"])
  n = 300

  def served_with(values):
    changed = dict(inputs)
    changed.update({name: tf.fill([n], tf.constant(v, tf.float32))
                    for name, v in zip(DENSE, values)})
    return serving(**changed)["probability"].numpy()

  # Standardized, the training mean is 0, which is also the missing value;
  # one std away it is 1, which the model tells apart.
  at_mean = served_with([stats[name][0] for name in DENSE])
  missing = served_with([float("nan")] * len(DENSE))
  one_std = served_with([stats[name][0] + stats[name][1] for name in DENSE])
  np.testing.assert_allclose(at_mean, missing, rtol=0, atol=1e-6)
  assert np.max(np.abs(one_std - missing)) > 1e-4


def test_vocabularies_travel_in_schema_json_and_serving_maps_oov_to_zero(
    csv_trained):
  """A vocabulary file and one counted over the training file (values seen
  at least data.vocab_min_count times) are in schema.json; the SavedModel
  maps an in-vocabulary value to 1 + its position and an out-of-vocabulary
  one to bucket 0, as the Keras model given those ids by hand scores them."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  model_dir = csv_trained["model_dir"]
  with open(os.path.join(model_dir, "schema.json")) as f:
    written = json.load(f)
  assert written["vocabulary_files"] == {
      "site_category": csv_trained["vocabulary_file"]}
  assert written["vocabulary_columns"] == ["device_model"]
  assert written["vocab_min_count"] == 30
  categorical = {c["name"]: c for c in written["categorical"]}
  assert categorical["site_category"]["vocabulary"] == [
      "cat0", "cat1", "cat2", "cat3"]
  assert categorical["site_category"]["num_buckets"] == 5
  counts = pd.read_csv(csv_trained["train_file"],
                       dtype=str)["device_model"].value_counts()
  expected = sorted(((v, n) for v, n in counts.items() if n >= 30),
                    key=lambda item: (-item[1], item[0]))
  model_vocabulary = categorical["device_model"]["vocabulary"]
  assert model_vocabulary == [v for v, _ in expected]
  assert 0 < len(model_vocabulary) < 60  # the threshold dropped some
  assert categorical["device_model"]["num_buckets"] == len(
      model_vocabulary) + 1
  assert categorical["site_id"]["vocabulary"] is None  # hashed

  kept, dropped = model_vocabulary[0], sorted(set(counts.index) - set(
      model_vocabulary))[0]
  _, inputs = _csv_serving_inputs(csv_trained["eval_file"])
  n = 6
  inputs = {k: v[:n] for k, v in inputs.items()}
  inputs["site_category"] = tf.constant(["cat2", "cat5", "", "cat0", "new",
                                         "cat3"])
  inputs["device_model"] = tf.constant([kept, dropped, kept, "", kept,
                                        "m999"])
  loaded = tf.saved_model.load(os.path.join(model_dir, "export",
                                            str(csv_trained["step"])))
  served = loaded.signatures["serving_default"](**inputs)[
      "probability"].numpy()

  config = config_lib.load(model_dir)
  schema = data_lib.build_schema(config)
  model = export_lib.restore_model(config,
                                   export_lib.resolve_checkpoint(model_dir))
  by_hand = features_lib.raw_to_model_inputs(inputs, schema)
  by_hand[features_lib.SPARSE_KEY]["site_category"] = tf.constant(
      [3, 0, 0, 1, 0, 4], tf.int32)
  position = model_vocabulary.index(kept) + 1
  by_hand[features_lib.SPARSE_KEY]["device_model"] = tf.constant(
      [position, 0, position, 0, position, 0], tf.int32)
  expected_probability = tf.sigmoid(tf.reshape(
      model(by_hand, training=False), [-1])).numpy()
  np.testing.assert_allclose(served, expected_probability, rtol=0, atol=1e-6)
  # The ids matter: scoring row 0 with an out-of-vocabulary site_category
  # changes its probability.
  oov = dict(inputs, site_category=tf.constant(["cat5"] * n))
  changed = loaded.signatures["serving_default"](**oov)["probability"].numpy()
  assert abs(changed[0] - served[0]) > 1e-7
  np.testing.assert_allclose(changed[1:3], served[1:3], rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------
# A model trained on Parquet files: typed columns served as named raw inputs.


@pytest.fixture(scope="module")
def parquet_trained(tmp_path_factory):
  """A tiny model trained on Parquet files with integer, string and float
  columns (null = missing), exported at the end of training."""
  pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip "
                      "install 'recsys-smelu[parquet]')")
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from conftest import TINY  # pylint: disable=g-import-not-at-top
  from tabular_samples import avazu_config_changes  # pylint: disable=g-import-not-at-top
  from tabular_samples import DENSE, write_avazu  # pylint: disable=g-import-not-at-top,g-multiple-import
  root = tmp_path_factory.mktemp("parquet_export")
  paths = {}
  for split, rows, seed in (("train", 1200, 0), ("eval", 300, 1)):
    csv_path = write_avazu(str(root / f"{split}.csv"), rows, seed,
                           with_dense=True)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    for name in ("id", "click", "hour", "C1", "banner_pos"):
      frame[name] = frame[name].astype("int64")
    for name in DENSE:
      frame[name] = pd.to_numeric(frame[name].replace("", np.nan))
    paths[split] = str(root / f"{split}.parquet")
    frame.to_parquet(paths[split], row_group_size=256)
  changes = dict(TINY)
  changes.update(avazu_config_changes(paths["train"], paths["eval"],
                                      with_dense=True,
                                      file_format="parquet"))
  changes.update({"data.header": False, "data.dense_transform": "standardize",
                  "train.export": True})
  model_dir = str(root / "run")
  result = train_lib.train(
      config_lib.override(config_lib.default_config(), changes), model_dir,
      interactive=False)
  return {"model_dir": model_dir, "step": result.step,
          "eval_file": paths["eval"], "result": result}


def test_parquet_model_serves_raw_named_columns_as_the_trainer_predicted(
    parquet_trained):
  """Integer categorical columns are served as their text (tf.string, as
  training hashed them); null dense values as NaN."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from tabular_samples import CATEGORICAL, DENSE  # pylint: disable=g-import-not-at-top
  model_dir = parquet_trained["model_dir"]
  assert parquet_trained["step"] == 20
  assert parquet_trained["result"].eval_metrics["num_examples"] == 300
  with open(os.path.join(model_dir, "schema.json")) as f:
    written = json.load(f)
  assert written["file_format"] == "parquet"
  assert [d["name"] for d in written["dense"]] == list(DENSE)
  assert all(d["std"] > 0 for d in written["dense"])
  loaded = tf.saved_model.load(os.path.join(model_dir, "export",
                                            str(parquet_trained["step"])))
  serving = loaded.signatures["serving_default"]
  specs = serving.structured_input_signature[1]
  assert set(specs) == set(CATEGORICAL) | set(DENSE)
  assert all(specs[n].dtype == tf.string for n in CATEGORICAL)
  frame = pd.read_parquet(parquet_trained["eval_file"])
  assert frame["hour"].dtype == np.int64
  inputs = {n: tf.constant(frame[n].astype(str).tolist()) for n in CATEGORICAL}
  inputs.update({n: tf.constant(frame[n].to_numpy(np.float32))
                 for n in DENSE})
  assert np.isnan(inputs["price"].numpy()).any()
  served = serving(**inputs)["probability"].numpy()
  with np.load(os.path.join(model_dir, "predictions.npz")) as saved:
    np.testing.assert_allclose(served, saved["probabilities"], rtol=0,
                               atol=1e-5)
    np.testing.assert_array_equal(saved["labels"], frame["click"].to_numpy())
  assert np.std(served) > 1e-3
