"""Packed rows and their schema file: the layout round-trips, and files
packed for another vocabulary, bucket count, hashing or format version are
refused with an error naming the feature."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from recsys_smelu.data import convert
from recsys_smelu.data import criteo
from recsys_smelu.data import features
from recsys_smelu.data import packed as packed_lib
from recsys_smelu.data import pipeline
import tensorflow as tf

from conftest import tsv_row, write_lines


def _vocabulary_schema(vocabulary):
  return features.FeatureSchema(
      dense=("I1",),
      categorical=(features.CategoricalFeature("C1", 9, 4, None),
                   features.CategoricalFeature("C2", len(vocabulary) + 1, 4,
                                               tuple(vocabulary))))


VOCABULARY = ("red", "green", "blue")
SCHEMA = _vocabulary_schema(VOCABULARY)
ROWS = [tsv_row(k % 2, k, f"x{k}", VOCABULARY[k % 3] if k % 4 else "grey")
        for k in range(12)]


def _packed_dir(tmp_path) -> str:
  tsv = write_lines(str(tmp_path / "a.tsv"), ROWS)
  out = str(tmp_path / "packed")
  convert.convert_packed(tsv, out, schema=SCHEMA)
  return out


def _eval_rows(files, schema, file_format):
  batches = list(criteo.make_dataset(files, schema, 5, file_format=file_format,
                                     training=False, shuffle=False))
  return {key: np.concatenate([b[0][features.SPARSE_KEY][key].numpy()
                               for b in batches])
          for key in schema.categorical_names}


def test_pack_and_unpack_round_trip():
  label = tf.constant([0.0, 1.0])
  dense = tf.constant([[0.5], [np.log1p(7.0)]], tf.float32)
  ids = tf.constant([[3, 1], [8, 0]], tf.int32)
  rows = packed_lib.pack_columns(label, dense, ids)
  assert rows.shape == (2, packed_lib.packed_width(SCHEMA))
  feats, got_label = packed_lib.unpack(rows, SCHEMA)
  np.testing.assert_array_equal(got_label, label)
  np.testing.assert_array_equal(feats[features.DENSE_KEY], dense)
  np.testing.assert_array_equal(feats[features.SPARSE_KEY]["C2"], [1, 0])


def test_schema_file_records_vocabulary_and_hashing_fingerprints(tmp_path):
  out = _packed_dir(tmp_path)
  with open(os.path.join(out, packed_lib.PACKED_SCHEMA_FILE)) as f:
    description = json.load(f)
  assert description["version"] == 2
  c1, c2 = description["categorical"]
  assert c1["vocabulary_sha256"] is None
  assert c2["vocabulary_sha256"] == packed_lib.vocabulary_fingerprint(
      VOCABULARY)
  assert c2["vocabulary_sha256"] != packed_lib.vocabulary_fingerprint(
      ("red", "blue", "green"))
  assert len(description["hashing"]["probe_sha256"]) == 64
  # The same vocabulary reads back the TSV pipeline's ids: grey (out of
  # vocabulary) is 0, red/green/blue 1/2/3.
  got = _eval_rows([os.path.join(out, "part-00000.packed")], SCHEMA, "packed")
  want = _eval_rows([str(tmp_path / "a.tsv")], SCHEMA, "tsv")
  for name in SCHEMA.categorical_names:
    np.testing.assert_array_equal(got[name], want[name])
  assert got["C2"].tolist() == [0, 2, 3, 1, 0, 3, 1, 2, 0, 1, 2, 3]


@pytest.mark.parametrize("vocabulary", [("red", "blue", "green"),
                                        ("cyan", "magenta", "yellow")])
def test_another_vocabulary_of_the_same_size_is_refused(tmp_path, vocabulary):
  out = _packed_dir(tmp_path)
  with pytest.raises(pipeline.DataError,
                     match=r"packed_schema.json: feature C2 was mapped with a "
                           r"vocabulary of 3 entries .*the schema has a "
                           r"vocabulary of 3 entries .*convert the files "
                           "again"):
    criteo.make_dataset([os.path.join(out, "part-00000.packed")],
                        _vocabulary_schema(vocabulary), 5,
                        file_format="packed", training=False, shuffle=False)


def test_other_hashing_or_an_old_version_is_refused(tmp_path):
  out = _packed_dir(tmp_path)
  path = os.path.join(out, packed_lib.PACKED_SCHEMA_FILE)
  files = [os.path.join(out, "part-00000.packed")]
  with open(path) as f:
    description = json.load(f)
  description["hashing"]["probe_sha256"] = "0" * 64
  with open(path, "w") as f:
    json.dump(description, f)
  with pytest.raises(pipeline.DataError, match="the files were hashed by"):
    packed_lib.check_packed_files(files, SCHEMA)
  description = packed_lib.packed_schema_description(SCHEMA)
  description["version"] = 1
  with open(path, "w") as f:
    json.dump(description, f)
  with pytest.raises(pipeline.DataError,
                     match="version 1, expected 'recsys_smelu.packed' version "
                           "2; convert the files again"):
    packed_lib.check_packed_files(files, SCHEMA)
  hashed = features.FeatureSchema(
      dense=("I1",), categorical=(SCHEMA.categorical[0],
                                  features.CategoricalFeature("C2", 4, 4)))
  packed_lib.write_packed_schema(out, SCHEMA)
  with pytest.raises(pipeline.DataError,
                     match=r"feature C2 was mapped with a vocabulary of 3 "
                           r"entries .*the schema has hashing"):
    packed_lib.check_packed_files(files, hashed)
