"""Feature schema shared by the input pipeline, the model and the export.

A ``FeatureSchema`` names the dense features, the categorical features (each
with its bucket count, optional vocabulary and embedding dimension) and the
label. The model builds one embedding table per categorical feature from it;
the pipeline and the serving signature turn raw values into model inputs with
the same schema, so training and serving cannot disagree.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional, Sequence

DENSE_KEY = "dense_features"
SPARSE_KEY = "sparse_features"


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
  """One categorical feature.

  Raw strings map to ids in ``[0, num_buckets)``: by
  ``tf.strings.to_hash_bucket_fast`` when ``vocabulary`` is None, else by
  position in ``vocabulary`` (out-of-vocabulary -> bucket 0, so a vocabulary
  feature has ``num_buckets == len(vocabulary) + 1``).
  """
  name: str
  num_buckets: int
  embedding_dim: int
  vocabulary: Optional[tuple[str, ...]] = None

  def __post_init__(self):
    if self.num_buckets <= 0:
      raise ValueError(f"feature {self.name!r}: num_buckets must be > 0")
    if self.embedding_dim <= 0:
      raise ValueError(f"feature {self.name!r}: embedding_dim must be > 0")
    if self.vocabulary is not None and self.num_buckets != len(self.vocabulary) + 1:
      raise ValueError(f"feature {self.name!r}: num_buckets must be "
                       "len(vocabulary) + 1 (bucket 0 is out-of-vocabulary)")


# How raw dense values become model inputs (``transform_dense_values``).
DENSE_TRANSFORMS = ("log1p_clip0", "none", "standardize")


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
  """The model's features, and how raw dense values are transformed.

  ``dense_transform``: ``log1p_clip0`` (the default, Criteo's
  ``log(1 + max(x, 0))``), ``none`` or ``standardize`` with one
  ``dense_mean`` / ``dense_std`` per dense feature (training statistics, so
  they travel with the schema into the packed schema and the SavedModel).
  """
  dense: tuple[str, ...]
  categorical: tuple[CategoricalFeature, ...]
  label: str = "label"
  dense_transform: str = "log1p_clip0"
  dense_mean: tuple[float, ...] = ()
  dense_std: tuple[float, ...] = ()

  def __post_init__(self):
    if self.dense_transform not in DENSE_TRANSFORMS:
      raise ValueError(f"dense_transform {self.dense_transform!r} is not one "
                       f"of {', '.join(DENSE_TRANSFORMS)}")
    with_stats = self.dense_transform == "standardize"
    n = len(self.dense) if with_stats else 0
    if len(self.dense_mean) != n or len(self.dense_std) != n:
      raise ValueError(
          f"dense_transform {self.dense_transform!r} needs "
          f"{'one mean and std per dense feature' if with_stats else 'no statistics'}"
          f", got {len(self.dense_mean)} means and {len(self.dense_std)} stds")

  @property
  def num_dense(self) -> int:
    return len(self.dense)

  @property
  def categorical_names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.categorical)


def criteo_schema(num_buckets: int | Sequence[int] = 10_000,
                  embedding_dim: int = 8,
                  num_dense: int = 13,
                  num_categorical: int = 26) -> FeatureSchema:
  """Criteo Display Advertising: dense I1..I13, categorical C1..C26."""
  if isinstance(num_buckets, int):
    num_buckets = [num_buckets] * num_categorical
  if len(num_buckets) != num_categorical:
    raise ValueError(f"num_buckets has {len(num_buckets)} entries, expected "
                     f"{num_categorical}")
  return FeatureSchema(
      dense=tuple(f"I{i + 1}" for i in range(num_dense)),
      categorical=tuple(
          CategoricalFeature(f"C{i + 1}", int(n), embedding_dim)
          for i, n in enumerate(num_buckets)),
  )


# ---------------------------------------------------------------------------
# Raw values -> model inputs (shared by the input pipelines and serving).
# ---------------------------------------------------------------------------

# tf.Example keys hold the raw values; dense features missing from an Example
# parse as NaN (= missing), categorical ones as "" (the same string an empty
# TSV field gives), the label as NaN (= bad row: label missing).
MISSING_CATEGORICAL = ""


def tf_example_feature_spec(schema: FeatureSchema,
                            with_label: bool = True) -> dict[str, Any]:
  """Parsing spec for tf.Example records holding raw values.

  Dense features are ``float32`` (the integer as written, missing -> absent or
  NaN), categorical features ``string`` (missing -> absent or ""), the label
  ``float32``. Used by the TFRecord reader and by the serving signature that
  accepts serialized tf.Example; the result of ``tf.io.parse_example`` with it
  goes straight into ``raw_to_model_inputs``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  nan = float("nan")
  spec = {}
  if with_label:
    spec[schema.label] = tf.io.FixedLenFeature([], tf.float32, default_value=nan)
  for name in schema.dense:
    spec[name] = tf.io.FixedLenFeature([], tf.float32, default_value=nan)
  for feature in schema.categorical:
    spec[feature.name] = tf.io.FixedLenFeature(
        [], tf.string, default_value=MISSING_CATEGORICAL)
  return spec


def dense_transform(values):
  """``log(1 + max(x, 0))`` with missing -> 0, for one raw dense feature.

  ``values`` is a tensor of strings (the TSV field: "" is missing, otherwise a
  decimal integer, already validated by the reader) or of numbers (NaN is
  missing). Returns float32 of the same shape.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values = tf.convert_to_tensor(values)
  if values.dtype == tf.string:
    values = tf.strings.to_number(
        tf.where(tf.equal(values, ""), tf.constant("0"), values), tf.float32)
  else:
    values = tf.cast(values, tf.float32)
    values = tf.where(tf.math.is_nan(values), tf.zeros_like(values), values)
  # max(x, 0) by a select, not tf.maximum, whose vectorized and scalar
  # kernels give -0 and +0 for x = -0. In float64, then rounded: Eigen's
  # vectorized and scalar log1p differ in the last float32 bit. Either would
  # make a row's value depend on its position in the batch (and training
  # differ from serving); in float64 the difference vanishes in the rounding.
  values = tf.cast(tf.where(values > 0.0, values, tf.zeros_like(values)),
                   tf.float64)
  return tf.cast(tf.math.log1p(values), tf.float32)


# Vocabulary lookup without lookup-table resources (so that a SavedModel and a
# tf.data function can both use it with nothing to track): every vocabulary
# string is fingerprinted to a 62-bit integer with the same op that hashes at
# run time, the fingerprints are sorted once, and a lookup is a binary search.
_FINGERPRINT_RANGE = 2**62


@functools.lru_cache(maxsize=None)
def _vocabulary_index(feature_name: str, vocabulary: tuple[str, ...]):
  """(sorted fingerprints int64, bucket id of each int32) for a vocabulary."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.init_scope():
    fingerprints = tf.strings.to_hash_bucket_fast(
        tf.constant(vocabulary, tf.string), _FINGERPRINT_RANGE).numpy()
  order = np.argsort(fingerprints, kind="stable")
  sorted_fingerprints = fingerprints[order]
  if np.any(sorted_fingerprints[1:] == sorted_fingerprints[:-1]):
    duplicates = [vocabulary[i] for i in order[1:][
        sorted_fingerprints[1:] == sorted_fingerprints[:-1]]]
    raise ValueError(f"feature {feature_name!r}: vocabulary has duplicate "
                     f"entries {duplicates[:5]}")
  return sorted_fingerprints, (order + 1).astype(np.int32)


def hash_modulus(feature: CategoricalFeature) -> int:
  """The modulus of a raw value's fingerprint that ``ids_from_hashes`` takes:
  the bucket count (hashing) or ``2**62`` (vocabulary: fingerprints)."""
  if feature.vocabulary is None:
    return feature.num_buckets
  return _FINGERPRINT_RANGE


def ids_from_hashes(hashes, feature: CategoricalFeature):
  """Bucket ids int32 from ``to_hash_bucket_fast(value, hash_modulus(feature))``.

  Hashing: the hash is the id. Vocabulary: 1 + position of the value in
  ``feature.vocabulary`` (found by its fingerprint); out-of-vocabulary -> 0.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if feature.vocabulary is None:
    return tf.cast(hashes, tf.int32)
  sorted_fingerprints, bucket_of = _vocabulary_index(feature.name,
                                                     feature.vocabulary)
  flat = tf.reshape(hashes, [-1])
  position = tf.searchsorted(sorted_fingerprints, flat, side="left")
  position = tf.minimum(position, len(sorted_fingerprints) - 1)
  found = tf.equal(tf.gather(sorted_fingerprints, position), flat)
  ids = tf.where(found, tf.gather(bucket_of, position), tf.zeros_like(position,
                                                                      tf.int32))
  return tf.reshape(ids, tf.shape(hashes))


def categorical_ids(values, feature: CategoricalFeature):
  """Bucket ids int32 in ``[0, num_buckets)`` of one raw categorical feature.

  Hashing: ``tf.strings.to_hash_bucket_fast(value, num_buckets)``.
  Vocabulary: 1 + position in ``feature.vocabulary``; out-of-vocabulary -> 0.
  Non-string inputs (e.g. integer ids from a serving request) are formatted
  with ``tf.strings.as_string`` first.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values = tf.convert_to_tensor(values)
  if values.dtype != tf.string:
    values = tf.strings.as_string(values)
  return ids_from_hashes(
      tf.strings.to_hash_bucket_fast(values, hash_modulus(feature)), feature)


def transform_dense_values(values, schema: FeatureSchema):
  """Model dense inputs float32 [n, num_dense] from raw values [n, num_dense]
  (numbers, NaN = missing; or validated strings, "" = missing) by
  ``schema.dense_transform``:

  * ``log1p_clip0``: ``log(1 + max(x, 0))``, missing -> 0 (``dense_transform``);
  * ``none``: ``x``, missing -> 0;
  * ``standardize``: ``(x - mean) / std`` per feature (in float64), missing
    -> 0 (the mean).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if schema.dense_transform == "log1p_clip0":
    return dense_transform(values)
  values = tf.convert_to_tensor(values)
  if values.dtype == tf.string:
    values = tf.strings.to_number(
        tf.where(tf.equal(values, ""), tf.constant("nan"), values), tf.float64)
  values = tf.cast(values, tf.float64)
  missing = tf.math.is_nan(values)
  if schema.dense_transform == "standardize":
    values = ((values - tf.constant(schema.dense_mean, tf.float64))
              / tf.constant(schema.dense_std, tf.float64))
  values = tf.cast(values, tf.float32)
  return tf.where(missing, tf.zeros_like(values), values)


def raw_to_model_inputs(raw: Mapping[str, Any], schema: FeatureSchema
                        ) -> dict[str, Any]:
  """THE transformation from raw feature values to the model's features dict.

  ``raw`` maps every name in ``schema.dense`` and ``schema.categorical_names``
  to a tensor of shape [B] (other keys, e.g. the label, are ignored). Returns
  ``{"dense_features": float32 [B, num_dense], "sparse_features": {name: int32
  [B]}}`` with dense by ``schema.dense_transform`` (default ``log(1 + max(x,
  0))``, missing -> 0; ``transform_dense_values``) and categorical ids from
  ``categorical_ids``. The input pipelines and the serving signature
  both call this, so training and serving cannot disagree.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  missing = [n for n in (*schema.dense, *schema.categorical_names)
             if n not in raw]
  if missing:
    raise KeyError(f"raw features lack {missing[:5]}"
                   f"{' ...' if len(missing) > 5 else ''}; schema expects "
                   f"{len(schema.dense)} dense + {len(schema.categorical)} "
                   "categorical features")
  sparse = {f.name: categorical_ids(raw[f.name], f) for f in schema.categorical}
  if schema.dense and schema.dense_transform == "log1p_clip0":
    dense = tf.stack([dense_transform(raw[n]) for n in schema.dense], axis=-1)
  elif schema.dense:
    dense = transform_dense_values(
        tf.stack([tf.convert_to_tensor(raw[n]) for n in schema.dense], axis=-1),
        schema)
  else:
    reference = (tf.convert_to_tensor(raw[schema.categorical[0].name])
                 if schema.categorical else tf.zeros([0]))
    dense = tf.zeros(tf.concat([tf.shape(reference), [0]], 0), tf.float32)
  return {DENSE_KEY: dense, SPARSE_KEY: sparse}


def zero_model_inputs(schema: FeatureSchema, batch_size: int = 1) -> dict:
  """A batch of all-zero model inputs (the model's features dict).

  For building a model's variables eagerly before training or restoring.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {
      DENSE_KEY: tf.zeros([batch_size, schema.num_dense], tf.float32),
      SPARSE_KEY: {f.name: tf.zeros([batch_size], tf.int32)
                   for f in schema.categorical},
  }
