"""Criteo TSV/TFRecord pipeline: parsing, order, shuffling, sharding, bad rows.

Every test runs twice: TSV lines decoded by the native op and by stock ops
(``RECSYS_SMELU_NATIVE_OPS`` = 1 / 0); both must give the same results.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu.data import convert
from recsys_smelu.data import criteo
from recsys_smelu.data import features
from recsys_smelu.data import readers
from recsys_smelu import native
import tensorflow as tf

from conftest import (SMALL_CRITEO_SCHEMA, require_native_compiler,
                      small_criteo_rows, tsv_row, write_lines)

SCHEMA = SMALL_CRITEO_SCHEMA


@pytest.fixture(autouse=True, params=["native", "stock"])
def tsv_decoder(request, monkeypatch):
  if request.param == "native":
    require_native_compiler()
  monkeypatch.setenv(native.ENV_SWITCH,
                     "1" if request.param == "native" else "0")
  return request.param


def _collect(dataset):
  labels, dense, sparse = [], [], {n: [] for n in SCHEMA.categorical_names}
  for feats, label in dataset:
    labels.append(label.numpy())
    dense.append(feats[features.DENSE_KEY].numpy())
    for n in sparse:
      sparse[n].append(feats[features.SPARSE_KEY][n].numpy())
  return (np.concatenate(labels), np.concatenate(dense),
          {n: np.concatenate(v) for n, v in sparse.items()})


def _eval(files, batch_size=4, **kwargs):
  return criteo.make_dataset(files, SCHEMA, batch_size, training=False,
                             shuffle=False, **kwargs)


def _hash(value, buckets=1000):
  return int(tf.strings.to_hash_bucket_fast(value, buckets).numpy())


def test_parses_rows_to_hand_computed_batch(tmp_path):
  path = write_lines(str(tmp_path / "a.tsv"), [
      tsv_row(1, 3, "", "68fd1e64", "", "x"),
      tsv_row(0, "", -5, "", "80e26c9b", "y"),
      tsv_row(1, 0, 1000, "a", "b", "c"),
  ])
  labels, dense, sparse = _collect(_eval([path], batch_size=8))
  np.testing.assert_array_equal(labels, [1, 0, 1])
  np.testing.assert_allclose(
      dense, [[math.log(4), 0], [0, 0], [0, math.log(1001)]], rtol=1e-6)
  assert dense.dtype == np.float32
  assert sparse["C1"].tolist() == [_hash("68fd1e64"), _hash(""), _hash("a")]
  assert sparse["C2"].tolist() == [_hash(""), _hash("80e26c9b"), _hash("b")]
  assert sparse["C3"].dtype == np.int32


def test_eval_keeps_file_and_line_order_and_last_partial_batch(tmp_path):
  files = [write_lines(str(tmp_path / f"part-{i}.tsv"), small_criteo_rows(7, 7 * i))
           for i in range(3)]
  batches = list(_eval(files, batch_size=5))
  assert [int(b[1].shape[0]) for b in batches] == [5, 5, 5, 5, 1]
  _, dense, _ = _collect(batches)
  np.testing.assert_allclose(dense[:, 0], np.log1p(np.arange(21)), rtol=1e-6)


def test_gzip_crlf_no_final_newline_and_block_boundaries_agree(tmp_path,
                                                               monkeypatch):
  rows = small_criteo_rows(50)
  reference = _collect(_eval([write_lines(str(tmp_path / "ref.tsv"), rows)]))
  monkeypatch.setattr(readers, "BLOCK_BYTES", 37)  # lines cut across blocks
  variants = [
      write_lines(str(tmp_path / "a.tsv.gz"), rows),
      write_lines(str(tmp_path / "b.tsv"), rows, newline_at_end=False),
      write_lines(str(tmp_path / "c.tsv"), rows, crlf=True),
      write_lines(str(tmp_path / "d.tsv.gz"), rows, crlf=True, newline_at_end=False),
  ]
  for path in variants:
    got = _collect(_eval([path]))
    np.testing.assert_array_equal(got[0], reference[0], err_msg=path)
    np.testing.assert_array_equal(got[1], reference[1], err_msg=path)
    for name in SCHEMA.categorical_names:
      np.testing.assert_array_equal(got[2][name], reference[2][name])


def test_empty_file_yields_nothing(tmp_path):
  path = str(tmp_path / "empty.tsv")
  open(path, "w").close()
  assert not list(_eval([path]))


BAD_ROWS = {
    "column_count": (tsv_row(1, 2, 3, "a", "b", "c") + "\textra",
                     "7 columns, expected 6"),
    "integer_field": (tsv_row(0, 4, "4.5", "a", "b", "c"),
                      "integer feature I2 is [4.5]"),
    "label": (tsv_row(2, 4, 5, "a", "b", "c"), "label is [2], expected 0 or 1"),
}


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_row_error_names_file_line_reason_and_content(tmp_path, reason,
                                                          suffix):
  bad, detail = BAD_ROWS[reason]
  path = write_lines(str(tmp_path / f"data{suffix}"),
                small_criteo_rows(2) + [bad] + small_criteo_rows(3))
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _collect(_eval([path]))
  message = str(error.value)
  assert f"data{suffix}:3: bad row ({reason}: {detail}" in message
  assert bad.split("\t")[-1] in message  # the row's content is quoted
  assert "on_bad_row=skip" in message
  plain = data_lib.bad_row_error(error.value)
  assert isinstance(plain, ValueError)
  assert str(plain).startswith(f"{path}:3: bad row ({reason}: {detail})")
  assert str(plain).endswith("to skip and count bad rows)")
  assert data_lib.bad_row_error(tf.errors.InvalidArgumentError(
      None, None, "assertion failed: [x > 0]")) is None


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_row_skip_drops_and_counts(tmp_path, reason, suffix):
  bad, _ = BAD_ROWS[reason]
  good = small_criteo_rows(6)
  path = write_lines(str(tmp_path / f"data{suffix}"), good[:2] + [bad, bad]
                + good[2:])
  counter = data_lib.BadRowCounter()
  labels, dense, _ = _collect(_eval([path], on_bad_row="skip",
                                    bad_rows=counter))
  np.testing.assert_allclose(dense[:, 0], np.log1p(np.arange(6)), rtol=1e-6)
  assert counter.total == 2
  assert counter.by_reason()[reason] == 2
  assert f"data{suffix}:3" in counter.examples[0]
  assert f"data{suffix}:4" in counter.examples[1]
  assert "skipped 2 bad rows" in counter.summary()
  counter.reset()
  assert counter.total == 0


def test_bad_row_classes_in_one_file_are_counted_separately(tmp_path):
  rows = [BAD_ROWS["label"][0], small_criteo_rows(1)[0], BAD_ROWS["column_count"][0],
          "", BAD_ROWS["integer_field"][0], tsv_row(1, "1" * 39, 0, "a", "b", "c")]
  counter = data_lib.BadRowCounter()
  labels, _, _ = _collect(_eval([write_lines(str(tmp_path / "x.tsv"), rows)],
                                on_bad_row="skip", bad_rows=counter))
  assert labels.tolist() == [0]
  # The empty line has one column; 39 digits overflow float32.
  assert counter.by_reason() == {"column_count": 2, "integer_field": 2,
                                 "label": 1, "dense_field": 0, "quote": 0}


def test_shuffle_is_seeded_and_reshuffles_each_epoch(tmp_path):
  files = [write_lines(str(tmp_path / f"p{i}.tsv"), small_criteo_rows(40, 40 * i))
           for i in range(3)]

  def first_two_epochs(seed):
    dataset = criteo.make_dataset(files, SCHEMA, 30, training=True,
                                  shuffle=True, shuffle_buffer=50, seed=seed,
                                  repeat=True, cycle_length=2)
    values = [b[0][features.DENSE_KEY][:, 0].numpy() for b in dataset.take(8)]
    values = np.round(np.expm1(np.concatenate(values))).astype(int)
    return values[:120], values[120:240]

  epoch1, epoch2 = first_two_epochs(seed=7)
  again1, again2 = first_two_epochs(seed=7)
  other1, _ = first_two_epochs(seed=8)
  np.testing.assert_array_equal(epoch1, again1)
  np.testing.assert_array_equal(epoch2, again2)
  assert sorted(epoch1) == sorted(epoch2) == list(range(120))
  assert not np.array_equal(epoch1, epoch2)
  assert not np.array_equal(epoch1, other1)


def test_training_drops_remainder_and_unshuffled_training_reads_all(tmp_path):
  path = write_lines(str(tmp_path / "a.tsv"), small_criteo_rows(10))
  dataset = criteo.make_dataset([path], SCHEMA, 4, training=True,
                                shuffle=False)
  assert [int(b[1].shape[0]) for b in dataset] == [4, 4]
  assert dataset.element_spec[1].shape.as_list() == [4]


@pytest.mark.parametrize("num_files", [1, 4])
def test_input_context_shards_are_disjoint_and_complete(tmp_path, num_files):
  files = [write_lines(str(tmp_path / f"p{i}.tsv"), small_criteo_rows(9, 9 * i))
           for i in range(num_files)]
  config = config_lib.override(config_lib.default_config(), {
      "data.train_files": ",".join(files), "data.num_dense": 2,
      "data.num_categorical": 3, "data.num_buckets": 1000,
      "data.shuffle_buffer": 0})
  seen = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    dataset = data_lib.build_dataset(config, "train", 4,
                                     input_context=context)
    batches = list(dataset)
    assert all(int(b[1].shape[0]) == 2 for b in batches)  # per replica
    seen.append(np.round(np.expm1(_collect(batches)[1][:, 0])).astype(int))
  assert not set(seen[0]) & set(seen[1])
  total = 9 * num_files
  # Per-replica batches of 2 drop at most one row per shard.
  assert len(seen[0]) + len(seen[1]) >= total - 2
  assert set(seen[0]) | set(seen[1]) <= set(range(total))


def test_tfrecord_pipeline_matches_tsv_and_reports_bad_labels(tmp_path):
  rows = small_criteo_rows(30)
  tsv = write_lines(str(tmp_path / "a.tsv"), rows)
  convert.convert(tsv, str(tmp_path / "tfr"), schema=SCHEMA,
                  records_per_file=11)
  records = sorted(tf.io.gfile.glob(str(tmp_path / "tfr" / "*")))
  assert len(records) == 3
  got = _collect(_eval(records, file_format="tfrecord"))
  want = _collect(_eval([tsv]))
  for a, b in zip(got[:2], want[:2]):
    np.testing.assert_array_equal(a, b)
  # A record with label 2 (hand-built) is a bad row at record 2.
  bad_path = str(tmp_path / "bad.tfrecord")
  with tf.io.TFRecordWriter(bad_path) as writer:
    for label in (1.0, 2.0, 0.0):
      example = tf.train.Example(features=tf.train.Features(feature={
          "label": tf.train.Feature(float_list=tf.train.FloatList(
              value=[label]))}))
      writer.write(example.SerializeToString())
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"bad\.tfrecord:2: bad row \(label: label is \[2"):
    _collect(_eval([bad_path], file_format="tfrecord"))
  counter = data_lib.BadRowCounter()
  labels, dense, _ = _collect(_eval([bad_path], file_format="tfrecord",
                                    on_bad_row="skip", bad_rows=counter))
  assert labels.tolist() == [1.0, 0.0]
  np.testing.assert_array_equal(dense, np.zeros((2, 2)))  # absent -> missing
  assert counter.by_reason()["label"] == 1


def test_build_dataset_and_schema_from_config(tmp_path):
  train = write_lines(str(tmp_path / "train.tsv"), small_criteo_rows(12))
  evaluation = write_lines(str(tmp_path / "eval.tsv.gz"), small_criteo_rows(5))
  config = config_lib.override(config_lib.default_config(), {
      "data.train_files": train, "data.eval_files": evaluation,
      "data.num_dense": 2, "data.num_categorical": 3,
      "data.num_buckets": 77, "model.embedding_dim": 6})
  schema = data_lib.build_schema(config)
  assert schema.dense == ("I1", "I2")
  assert [(f.name, f.num_buckets, f.embedding_dim)
          for f in schema.categorical] == [("C1", 77, 6), ("C2", 77, 6),
                                           ("C3", 77, 6)]
  labels, _, sparse = _collect(data_lib.build_dataset(config, "eval", 2))
  assert labels.tolist() == [0, 1, 0, 1, 0]
  assert max(v.max() for v in sparse.values()) < 77
  train_batches = list(data_lib.build_dataset(config, "train", 4, seed=1))
  assert len(train_batches) == 3
  with pytest.raises(ValueError, match="never shuffled"):
    data_lib.build_dataset(config, "eval", 2, shuffle=True)
  with pytest.raises(ValueError, match="split"):
    data_lib.build_dataset(config, "test", 2)
  missing = config_lib.override(config, {"data.eval_files":
                                         str(tmp_path / "none*.tsv")})
  with pytest.raises(data_lib.NoMatchingFilesError, match="none"):
    data_lib.build_dataset(missing, "eval", 2)


def test_tsv_training_decoder_equals_raw_to_model_inputs(tmp_path):
  """The fast TSV path (decode_csv on numbers, one split and one hash op for
  same-sized features) gives exactly raw_to_model_inputs of the raw rows."""
  hashed = [features.CategoricalFeature(f"H{i}", 1000, 4) for i in range(5)]
  schema = features.FeatureSchema(
      dense=("I1", "I2"),
      categorical=(hashed[0], features.CategoricalFeature("S", 77, 4),
                   features.CategoricalFeature("V", 3, 4, ("v1", "v3")),
                   *hashed[1:]))
  rng = np.random.default_rng(0)
  lines = []
  for k in range(300):
    ints = ["", str(k), str(-k), "7" * 25, "0"]
    cats = ["", f"{k:08x}", f"v{k % 5}", "a b+c", "x" * 30]
    lines.append("\t".join([str(k % 2), *rng.choice(ints, 2),
                            *rng.choice(cats, 7)]))
  lines[10] = "2" + lines[10][1:]  # a bad label, skipped and counted
  path = write_lines(str(tmp_path / "mixed.tsv"), lines)
  counter = data_lib.BadRowCounter()
  got = criteo.make_dataset([path], schema, 64, training=False, shuffle=False,
                            on_bad_row="skip", bad_rows=counter)
  got = list(got.unbatch().as_numpy_iterator())
  assert counter.total == 1 and len(got) == 299
  want = []
  for raw in criteo.raw_dataset([path], schema, on_bad_row="skip"):
    inputs = features.raw_to_model_inputs(raw, schema)
    for i in range(int(raw["label"].shape[0])):
      want.append((inputs[features.DENSE_KEY][i].numpy(),
                   {n: int(v[i]) for n, v in
                    inputs[features.SPARSE_KEY].items()},
                   float(raw["label"][i])))
  for (feats, label), (dense, sparse, want_label) in zip(got, want):
    assert label == want_label
    np.testing.assert_array_equal(feats[features.DENSE_KEY], dense)
    assert {n: int(v) for n, v in feats[features.SPARSE_KEY].items()} == sparse
  assert len({int(f[features.SPARSE_KEY]["S"]) for f, _ in got}) > 1


def test_raw_rows_keep_a_carriage_return_inside_the_last_field(tmp_path):
  """decode_csv would end the record at the \\r; the raw path must not."""
  path = write_lines(str(tmp_path / "cr.tsv"), [tsv_row(1, 2, "", "a", "b",
                                                        "x\ry")])
  (raw,) = list(criteo.raw_dataset([path], SCHEMA))
  assert raw["C3"].numpy().tolist() == [b"x\ry"]
  assert raw["C1"].numpy().tolist() == [b"a"]
  np.testing.assert_array_equal(raw["I1"], [2.0])
  assert np.isnan(raw["I2"].numpy()[0]) and raw["label"].numpy()[0] == 1.0
  labels, _, sparse = _collect(_eval([path]))
  assert labels.tolist() == [1] and sparse["C3"].tolist() == [_hash("x\ry")]
