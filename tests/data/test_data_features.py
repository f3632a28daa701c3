"""raw_to_model_inputs and tf_example_feature_spec: the shared raw -> model step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_smelu.data import features
import tensorflow as tf

SCHEMA = features.FeatureSchema(
    dense=("I1", "I2"),
    categorical=(
        features.CategoricalFeature("C1", 100, 4),
        features.CategoricalFeature("V", 4, 4, vocabulary=("a", "b", "cc")),
    ))


def test_dense_transform_strings_and_numbers():
  strings = tf.constant(["", "0", "3", "-2", "1000"])
  np.testing.assert_allclose(features.dense_transform(strings),
                             [0, 0, math.log(4), 0, math.log(1001)], rtol=1e-7)
  numbers = tf.constant([np.nan, 0.0, 3.0, -2.0, 1000.0])
  np.testing.assert_array_equal(features.dense_transform(numbers),
                                features.dense_transform(strings))
  ints = tf.constant([3, -1], tf.int64)
  np.testing.assert_allclose(features.dense_transform(ints), [math.log(4), 0],
                             rtol=1e-7)


def test_dense_value_does_not_depend_on_position_in_batch():
  # Vectorized and scalar float32 log1p differ in the last bit; the transform
  # must give a value that depends on the input only.
  for n in (1, 3, 7, 8, 17, 1000):
    out = features.dense_transform(tf.fill([n], 65.0)).numpy()
    assert (out == np.float32(np.log1p(65.0))).all(), n


def test_raw_to_model_inputs_hash_and_vocabulary():
  raw = {"I1": tf.constant(["7", ""]), "I2": tf.constant([np.nan, 2.0]),
         "C1": tf.constant(["68fd1e64", ""]), "V": tf.constant(["cc", "zz"]),
         "label": tf.constant([1.0, 0.0])}
  out = features.raw_to_model_inputs(raw, SCHEMA)
  np.testing.assert_allclose(out[features.DENSE_KEY],
                             [[math.log(8), 0], [0, math.log(3)]], rtol=1e-7)
  c1 = out[features.SPARSE_KEY]["C1"]
  assert c1.dtype == tf.int32
  np.testing.assert_array_equal(
      c1, tf.strings.to_hash_bucket_fast(["68fd1e64", ""], 100))
  # Vocabulary: 1 + position; out of vocabulary -> 0.
  assert out[features.SPARSE_KEY]["V"].numpy().tolist() == [3, 0]
  again = features.raw_to_model_inputs(
      {**raw, "V": tf.constant(["a", "b"])}, SCHEMA)
  assert again[features.SPARSE_KEY]["V"].numpy().tolist() == [1, 2]


def test_vocabulary_lookup_inside_tf_function_and_from_integers():
  feature = features.CategoricalFeature("user", 4, 2,
                                        vocabulary=("10", "20", "30"))
  lookup = tf.function(lambda x: features.categorical_ids(x, feature))
  assert lookup(tf.constant([[30, 11], [10, 20]], tf.int64)).numpy().tolist(
  ) == [[3, 0], [1, 2]]
  with pytest.raises(ValueError, match="duplicate"):
    features.categorical_ids(tf.constant(["a"]), features.CategoricalFeature(
        "d", 3, 2, vocabulary=("a", "a")))


def test_no_dense_features_gives_zero_width_dense():
  schema = features.FeatureSchema(dense=(), categorical=SCHEMA.categorical)
  out = features.raw_to_model_inputs(
      {"C1": tf.constant(["x", "y", "z"]), "V": tf.constant(["a", "b", "a"])},
      schema)
  assert out[features.DENSE_KEY].shape == (3, 0)
  assert out[features.DENSE_KEY].dtype == tf.float32


def test_missing_raw_feature_is_named():
  with pytest.raises(KeyError, match="I2"):
    features.raw_to_model_inputs({"I1": tf.constant(["1"])}, SCHEMA)


def test_example_spec_parses_missing_features_as_missing():
  example = tf.train.Example(features=tf.train.Features(feature={
      "label": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])),
      "I1": tf.train.Feature(float_list=tf.train.FloatList(value=[7.0])),
      "V": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"b"])),
  }))
  spec = features.tf_example_feature_spec(SCHEMA)
  parsed = tf.io.parse_example(tf.constant([example.SerializeToString()]),
                               spec)
  assert math.isnan(float(parsed["I2"][0]))
  assert parsed["C1"].numpy().tolist() == [b""]
  out = features.raw_to_model_inputs(parsed, SCHEMA)
  np.testing.assert_allclose(out[features.DENSE_KEY], [[math.log(8), 0]],
                             rtol=1e-7)
  assert out[features.SPARSE_KEY]["V"].numpy().tolist() == [2]
  assert "label" not in features.tf_example_feature_spec(SCHEMA,
                                                         with_label=False)
