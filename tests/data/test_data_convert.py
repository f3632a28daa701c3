"""TSV -> TFRecord converter: wire-format encoding and identical batches."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys

import numpy as np
from absl import flags
import pytest

from recsys_smelu import data as data_lib
from recsys_smelu.data import convert
from recsys_smelu.data import criteo
from recsys_smelu.data import features
from recsys_smelu.data import packed as packed_lib
from recsys_smelu.data import pipeline
from recsys_smelu.data import readers
from recsys_smelu.data import synthetic
import tensorflow as tf

from conftest import SMALL_CRITEO_SCHEMA, small_criteo_rows, write_lines

SCHEMA = features.criteo_schema(num_buckets=500, num_dense=2,
                                num_categorical=2)


def _reference_example(label, dense, categorical):
  feature = {"label": tf.train.Feature(float_list=tf.train.FloatList(
      value=[label]))}
  for name, value in zip(SCHEMA.dense, dense):
    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(
        value=[value]))
  for name, value in zip(SCHEMA.categorical_names, categorical):
    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[value]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


def test_encoder_bytes_parse_to_the_reference_example():
  encoder = convert.ExampleEncoder(SCHEMA)
  long_value = b"x" * 300  # multi-byte length varints
  floats = np.array([[1.0, 3.0, np.nan], [0.0, -2.5, 1e30]], np.float32)
  categorical = [[b"68fd1e64", b""], [long_value, b"\xff\x00"]]
  records = encoder.encode(floats, categorical)
  for r, record in enumerate(records):
    parsed = tf.train.Example.FromString(record)
    want = _reference_example(floats[r, 0], floats[r, 1:],
                              [categorical[0][r], categorical[1][r]])
    got_map = parsed.features.feature
    for name, feature in want.features.feature.items():
      if feature.HasField("float_list"):
        np.testing.assert_array_equal(got_map[name].float_list.value,
                                      feature.float_list.value)
      else:
        assert got_map[name].bytes_list.value == feature.bytes_list.value
    assert set(got_map) == set(want.features.feature)
  parsed = tf.io.parse_example(tf.constant(records),
                               features.tf_example_feature_spec(SCHEMA))
  np.testing.assert_array_equal(parsed["I2"].numpy(), floats[:, 2])
  assert parsed["C1"].numpy().tolist() == [b"68fd1e64", b""]
  assert parsed["C2"].numpy().tolist() == [long_value, b"\xff\x00"]


def test_varint():
  assert convert._varint(0) == b"\x00"
  assert convert._varint(127) == b"\x7f"
  assert convert._varint(300) == b"\xac\x02"


@pytest.mark.parametrize("use_gzip", [False, True])
def test_tsv_and_tfrecord_pipelines_yield_identical_batches(tmp_path,
                                                            use_gzip):
  truth = synthetic.generate(str(tmp_path / "syn"), 0, 2500, seed=9,
                             num_files=2, gzip=use_gzip)
  summary = convert.convert(",".join(truth["eval_files"]),
                            str(tmp_path / "tfr"), records_per_file=1000,
                            use_gzip=use_gzip)
  assert summary["records"] == 2500
  assert len(summary["outputs"]) == 3
  schema = features.criteo_schema(num_buckets=1000)
  tsv = criteo.make_dataset(truth["eval_files"], schema, 300, training=False,
                            shuffle=False)
  records = criteo.make_dataset(summary["outputs"], schema, 300,
                                file_format="tfrecord", training=False,
                                shuffle=False)
  count = 0
  for (a_features, a_label), (b_features, b_label) in zip(tsv, records):
    np.testing.assert_array_equal(a_label, b_label)
    np.testing.assert_array_equal(a_features[data_lib.DENSE_KEY],
                                  b_features[data_lib.DENSE_KEY])
    for name in schema.categorical_names:
      np.testing.assert_array_equal(a_features[data_lib.SPARSE_KEY][name],
                                    b_features[data_lib.SPARSE_KEY][name])
    count += int(a_label.shape[0])
  assert count == 2500


def test_converter_skips_and_counts_bad_rows(tmp_path):
  path = tmp_path / "in.tsv.gz"
  with gzip.open(path, "wt") as f:
    f.write("1\t5\t\ta\tb\n0\tx\t1\ta\tb\n0\t\t7\t\tq\n")
  summary = convert.convert(str(path), str(tmp_path / "out"), schema=SCHEMA,
                            on_bad_row="skip")
  assert summary["records"] == 2
  assert summary["skipped_bad_rows"]["integer_field"] == 1
  parsed = [tf.io.parse_example(r, features.tf_example_feature_spec(SCHEMA))
            for r in tf.data.TFRecordDataset(summary["outputs"])]
  assert [float(p["label"]) for p in parsed] == [1.0, 0.0]
  assert float(parsed[0]["I1"]) == 5 and math.isnan(float(parsed[0]["I2"]))
  assert parsed[1]["C1"].numpy() == b"" and parsed[1]["C2"].numpy() == b"q"
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"in\.tsv\.gz:2"):
    convert.convert(str(path), str(tmp_path / "out2"), schema=SCHEMA)


def test_command_line(tmp_path):
  (tmp_path / "a.tsv").write_text("1\t5\t\ta\tb\n0\t1\t2\tc\td\n")
  result = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.convert",
       f"--input={tmp_path}/a.tsv", f"--output_dir={tmp_path}/out",
       "--records_per_file=1", "--num_dense=2", "--num_categorical=2",
       "--prefix=eval"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  summary = json.loads(result.stdout)
  assert summary["records"] == 2
  assert [p.rsplit("/", 1)[1] for p in summary["outputs"]] == [
      "eval-00000.tfrecord", "eval-00001.tfrecord"]
  missing = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.convert",
       f"--input={tmp_path}/none*.tsv", f"--output_dir={tmp_path}/o"],
      capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0
  assert "none*.tsv" in missing.stderr and "matches no file" in missing.stderr
  assert "Traceback" not in missing.stderr
  (tmp_path / "bad.tsv").write_text("1\t5\t\ta\tb\n0\tx\t2\tc\td\n")
  bad = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.convert",
       f"--input={tmp_path}/bad.tsv", f"--output_dir={tmp_path}/o",
       "--num_dense=2", "--num_categorical=2"],
      capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith(
      f"error: {tmp_path}/bad.tsv:2: bad row (integer_field: integer feature "
      "I1 is [x]); line content: 0\tx")
  helpfull = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.convert", "--helpfull"],
      capture_output=True, text=True, timeout=300)
  assert helpfull.returncode == 1  # absl's exit status for --helpfull
  for flag in ("--input", "--output_dir", "--format", "--num_buckets",
               "--on_bad_row", "--[no]gzip"):
    assert flag in helpfull.stdout + helpfull.stderr, flag


# ---------------------------------------------------------------------------
# Packed files (data.format='packed').

PACKED_SCHEMA = SMALL_CRITEO_SCHEMA


def _batches(dataset):
  return [(f[features.DENSE_KEY].numpy(),
           {n: v.numpy() for n, v in f[features.SPARSE_KEY].items()},
           y.numpy()) for f, y in dataset]


def _assert_same_batches(got, want):
  assert len(got) == len(want)
  for (d1, s1, y1), (d2, s2, y2) in zip(got, want):
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(y1, y2)
    for name in s2:
      np.testing.assert_array_equal(s1[name], s2[name])


def test_packed_files_give_the_tsv_pipelines_batches(tmp_path):
  """Rows spanning several packed files and a partial last block: eval
  batches equal the TSV pipeline's, and line sharding splits them alike."""
  lines = small_criteo_rows(readers.CHUNK_ROWS + 500)
  lines[7] = "x" + lines[7]  # a bad row, skipped at conversion
  tsv = write_lines(str(tmp_path / "a.tsv"), lines)
  out = str(tmp_path / "packed")
  summary = convert.convert_packed(tsv, out, schema=PACKED_SCHEMA,
                                   records_per_file=3000, on_bad_row="skip")
  assert summary["records"] == len(lines) - 1
  assert summary["skipped_bad_rows"]["label"] == 1
  assert [os.path.basename(p) for p in summary["outputs"]] == [
      "part-00000.packed", "part-00001.packed"]
  width = packed_lib.packed_width(PACKED_SCHEMA)
  assert os.path.getsize(summary["outputs"][0]) == 3000 * width * 4
  packed = sorted(tf.io.gfile.glob(os.path.join(out, "*.packed")))
  eval_mode = dict(training=False, shuffle=False)
  want = _batches(criteo.make_dataset([tsv], PACKED_SCHEMA, 256,
                                      on_bad_row="skip", **eval_mode))
  _assert_same_batches(_batches(criteo.make_dataset(
      packed, PACKED_SCHEMA, 256, file_format="packed", **eval_mode)), want)
  # Fewer files than shards: row r of each file goes to shard (r - 1) % 3.
  shard = _batches(criteo.make_dataset(
      packed, PACKED_SCHEMA, 256, file_format="packed", num_shards=3,
      shard_index=1, **eval_mode))
  rows = np.concatenate([b[0] for b in want])
  np.testing.assert_array_equal(np.concatenate([b[0] for b in shard]),
                                np.concatenate([rows[:3000][1::3],
                                                rows[3000:][1::3]]))


def test_packed_training_is_seeded_and_reads_everything(tmp_path):
  tsv = write_lines(str(tmp_path / "a.tsv"), small_criteo_rows(1000))
  out = str(tmp_path / "packed")
  convert.convert_packed(tsv, out, schema=PACKED_SCHEMA, records_per_file=300)
  packed = sorted(tf.io.gfile.glob(os.path.join(out, "*.packed")))

  def epoch(seed):
    return _batches(criteo.make_dataset(
        packed, PACKED_SCHEMA, 100, file_format="packed", training=True,
        shuffle=True, seed=seed, shuffle_buffer=200))

  first, again, other = epoch(3), epoch(3), epoch(4)
  _assert_same_batches(first, again)
  assert not np.array_equal(first[0][2], other[0][2]) or not np.array_equal(
      first[0][0], other[0][0])
  dense = np.concatenate([b[0] for b in first])
  want = np.concatenate([b[0] for b in _batches(criteo.make_dataset(
      [tsv], PACKED_SCHEMA, 100, training=False, shuffle=False))])
  assert sorted(map(tuple, dense.tolist())) == sorted(map(tuple, want.tolist()))


def test_packed_files_for_another_schema_or_truncated_are_refused(tmp_path):
  tsv = write_lines(str(tmp_path / "a.tsv"), small_criteo_rows(50))
  out = str(tmp_path / "packed")
  convert.convert_packed(tsv, out, schema=PACKED_SCHEMA)
  path = os.path.join(out, "part-00000.packed")
  other = features.criteo_schema(num_buckets=999, embedding_dim=4,
                                 num_dense=2, num_categorical=3)
  with pytest.raises(pipeline.DataError,
                     match=r"C1 was hashed into 1000 buckets, the config has "
                           r"999 \(config key 'data.num_buckets'\)"):
    criteo.make_dataset([path], other, 8, file_format="packed")
  fewer = features.criteo_schema(num_buckets=1000, embedding_dim=4,
                                 num_dense=1, num_categorical=3)
  with pytest.raises(pipeline.DataError, match="'data.num_dense'"):
    criteo.make_dataset([path], fewer, 8, file_format="packed")
  with open(path, "ab") as f:
    f.write(b"\0\0")
  with pytest.raises(pipeline.DataError,
                     match=r"part-00000\.packed: 1202 bytes is not a whole "
                           r"number of 24-byte rows"):
    criteo.make_dataset([path], PACKED_SCHEMA, 8, file_format="packed")
  lonely = write_lines(str(tmp_path / "lonely.packed"), ["x"])
  with pytest.raises(pipeline.DataError, match="packed_schema.json is missing"):
    criteo.make_dataset([lonely], PACKED_SCHEMA, 8, file_format="packed")


def test_cli_writes_packed_files(tmp_path):
  tsv = write_lines(str(tmp_path / "a.tsv"), small_criteo_rows(20))
  out = str(tmp_path / "packed")
  flag_values = flags.FlagValues()
  convert.define_flags(flag_values)
  flag_values(["convert", f"--input={tsv}", f"--output_dir={out}",
               "--format=packed", "--num_buckets=1000", "--num_dense=2",
               "--num_categorical=3"])
  convert.main(["convert"], flag_values)
  with open(os.path.join(out, packed_lib.PACKED_SCHEMA_FILE)) as f:
    description = json.load(f)
  assert description == packed_lib.packed_schema_description(PACKED_SCHEMA)
  got = _batches(criteo.make_dataset([os.path.join(out, "part-00000.packed")],
                                     PACKED_SCHEMA, 8, file_format="packed",
                                     training=False, shuffle=False))
  want = _batches(criteo.make_dataset([tsv], PACKED_SCHEMA, 8,
                                      training=False, shuffle=False))
  _assert_same_batches(got, want)


def test_count_rows_counts_lines_records_and_packed_rows(tmp_path):
  lines = small_criteo_rows(30)
  lines[3] = "bad"  # counted: bad rows are found only while reading
  tsv = write_lines(str(tmp_path / "a.tsv"), lines, newline_at_end=False)
  gz = write_lines(str(tmp_path / "b.tsv.gz"), small_criteo_rows(7))
  assert readers.count_rows([tsv, gz], "tsv") == 37
  convert.convert(tsv, str(tmp_path / "tfr"), schema=SMALL_CRITEO_SCHEMA,
                  on_bad_row="skip", records_per_file=20)
  records = sorted(tf.io.gfile.glob(str(tmp_path / "tfr" / "*.tfrecord")))
  assert readers.count_rows(records, "tfrecord") == 29
  summary = convert.convert_packed(tsv, str(tmp_path / "packed"),
                                   schema=PACKED_SCHEMA, on_bad_row="skip")
  assert readers.count_rows(summary["outputs"], "packed",
                            packed_lib.packed_width(PACKED_SCHEMA)) == 29


def test_csv_to_packed_reads_like_the_csv_and_refuses_other_statistics(
    tmp_path):
  """--format=packed on csv files by a tabular schema.json: training on the
  packed rows (data.format='packed', data.schema_file) gives the batches of
  the csv; a schema with other standardize statistics is refused."""
  from recsys_smelu import config as config_lib  # pylint: disable=g-import-not-at-top
  from tabular_samples import avazu_config_changes  # pylint: disable=g-import-not-at-top
  from tabular_samples import write_avazu  # pylint: disable=g-import-not-at-top
  train = write_avazu(str(tmp_path / "train.csv"), 300, 0, with_dense=True)
  changes = avazu_config_changes(train, train, with_dense=True)
  changes.update({"data.dense_transform": "standardize",
                  "data.vocabulary_columns": "site_category",
                  "data.num_buckets": 100})
  csv_config = config_lib.override(config_lib.default_config(), changes)
  schema = data_lib.tabular_schema(csv_config)
  schema_file = data_lib.tabular.save_schema(schema,
                                             str(tmp_path / "schema.json"))
  out = str(tmp_path / "packed")
  flag_values = flags.FlagValues()
  convert.define_flags(flag_values)
  flag_values([
      "convert", f"--input={train}", f"--output_dir={out}", "--format=packed",
      f"--schema_file={schema_file}", "--records_per_file=200"])
  convert.main(["convert"], flag_values)
  assert sorted(os.listdir(out)) == [
      "packed_schema.json", "part-00000.packed", "part-00001.packed",
      "schema.json"]
  with open(os.path.join(out, "packed_schema.json")) as f:
    description = json.load(f)
  assert description["dense_transform"]["mean"] == list(schema.dense_mean)
  packed_config = config_lib.override(config_lib.default_config(), {
      "data.format": "packed",
      "data.train_files": os.path.join(out, "*.packed"),
      "data.eval_files": os.path.join(out, "*.packed"),
      "data.schema_file": os.path.join(out, "schema.json")})
  config_lib.validate(packed_config)
  assert data_lib.build_schema(packed_config) == schema.features
  assert data_lib.count_rows(packed_config, "eval") == 300

  def rows(config):
    features_batches, labels = [], []
    for batch, label in data_lib.build_dataset(config, "eval", 64):
      features_batches.append(np.concatenate(
          [batch["dense_features"].numpy().view(np.int32)]
          + [batch["sparse_features"][n].numpy()[:, None]
             for n in schema.features.categorical_names], axis=1))
      labels.append(label.numpy())
    return np.concatenate(features_batches), np.concatenate(labels)

  packed_rows, packed_labels = rows(packed_config)
  csv_rows, csv_labels = rows(csv_config)
  np.testing.assert_array_equal(packed_rows, csv_rows)
  np.testing.assert_array_equal(packed_labels, csv_labels)

  other = data_lib.tabular.TabularSchema(
      spec=schema.spec, columns=schema.columns,
      features=data_lib.tabular.feature_schema_of(
          schema.spec, schema.features.categorical, (0.0, 0.0), (1.0, 1.0)),
      dense_mean=(0.0, 0.0), dense_std=(1.0, 1.0))
  other_file = data_lib.tabular.save_schema(other, str(tmp_path / "o.json"))
  with pytest.raises(pipeline.DataError,
                     match="dense values were transformed by"):
    next(iter(data_lib.build_dataset(config_lib.override(
        packed_config, {"data.schema_file": other_file}), "eval", 64)))
