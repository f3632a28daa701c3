"""Packed rows: one int32 vector per row (label, dense, bucket ids).

The training pipeline packs each parsed row into ``packed_width(schema)``
int32 values: the label and the transformed dense values (``log(1 + max(x,
0))``, missing -> 0) as float32 bits, then one bucket id per categorical
feature. A chunk of rows is then one [rows, width] tensor that the shuffle
buffer and ``rebatch`` move as a whole; ``unpack`` turns a batch back into
``(features, label)``.

Packed files (``recsys-smelu-convert --format=packed``) hold these rows,
little-endian, with ``PACKED_SCHEMA_FILE`` beside them describing the layout
and everything the ids depend on: feature names, bucket counts, a SHA-256
fingerprint of each vocabulary and a fingerprint of the hashing (the ids of
fixed probe strings). ``check_packed_files`` refuses files whose schema file
differs from the config's, naming the feature and config key, so ids hashed
or looked up for another schema are never silently mis-mapped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Optional, Sequence

import tensorflow as tf

from recsys_smelu.data import features as features_lib
from recsys_smelu.data.pipeline import DataError

PACKED_SCHEMA_FILE = "packed_schema.json"
PACKED_FORMAT_NAME = "recsys_smelu.packed"
# 2: records vocabulary and hashing fingerprints (1 had neither).
PACKED_FORMAT_VERSION = 2
# Strings whose bucket ids fingerprint the hashing; any fixed set will do.
_HASH_PROBES = ("", "0", "1", "a", "68fd1e64", "80e26c9b", "fb936136",
                "7b4723c4", "25c83c98", "7e0ccccf", "de7995b8", "1f89b562")
_HASH_PROBE_MODULUS = 2**62


def pack_columns(label, dense, ids=None):
  """[n, 1 + num_dense + k] int32: label float32 [n], transformed dense
  float32 [n, num_dense] (bit-cast) and bucket ids int32 [n, k] (None: k=0)."""
  parts = [tf.bitcast(label, tf.int32)[:, None], tf.bitcast(dense, tf.int32)]
  if ids is not None:
    parts.append(ids)
  return tf.concat(parts, axis=1)


def pack(model_inputs, label, schema: features_lib.FeatureSchema):
  """Packed rows of a batch of model inputs (``raw_to_model_inputs``)."""
  ids = None
  if schema.categorical:
    ids = tf.stack([model_inputs[features_lib.SPARSE_KEY][n]
                    for n in schema.categorical_names], axis=1)
  return pack_columns(label, model_inputs[features_lib.DENSE_KEY], ids)


def unpack(packed, schema: features_lib.FeatureSchema):
  """Inverse of ``pack`` for a batch: returns (features, label)."""
  num_dense = schema.num_dense
  label = tf.bitcast(packed[:, 0], tf.float32)
  dense = tf.bitcast(packed[:, 1:1 + num_dense], tf.float32)
  dense = tf.reshape(dense, [-1, num_dense])
  sparse = {name: packed[:, 1 + num_dense + i]
            for i, name in enumerate(schema.categorical_names)}
  return ({features_lib.DENSE_KEY: dense, features_lib.SPARSE_KEY: sparse},
          label)


def packed_width(schema: features_lib.FeatureSchema) -> int:
  """int32 values per packed row: label, dense, one id per categorical."""
  return 1 + schema.num_dense + len(schema.categorical)


# ---------------------------------------------------------------------------
# The schema file.
# ---------------------------------------------------------------------------


def vocabulary_fingerprint(vocabulary: Optional[Sequence[str]]
                           ) -> Optional[str]:
  """SHA-256 (hex) of a vocabulary in order (its entries as a JSON list);
  None for a hashed feature. Ids are 1 + position, so order matters."""
  if vocabulary is None:
    return None
  text = json.dumps(list(vocabulary), ensure_ascii=False)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def hashing_fingerprint() -> str:
  """SHA-256 (hex) of the fingerprints ``tf.strings.to_hash_bucket_fast``
  gives fixed probe strings (modulus 2**62): the same for every process
  whose hashing maps raw values to the same ids."""
  with tf.init_scope():
    hashes = tf.strings.to_hash_bucket_fast(
        tf.constant(_HASH_PROBES), _HASH_PROBE_MODULUS).numpy()
  return hashlib.sha256(hashes.astype("<i8").tobytes()).hexdigest()


def packed_schema_description(schema: features_lib.FeatureSchema) -> dict:
  """What ``PACKED_SCHEMA_FILE`` records: the layout and everything the ids
  depend on (feature names, bucket counts, vocabulary sizes and fingerprints,
  the hashing fingerprint) and, when it is not the default ``log1p_clip0``,
  the dense transform with its statistics (tabular data)."""
  description = {
      "format": PACKED_FORMAT_NAME,
      "version": PACKED_FORMAT_VERSION,
      "row": "int32 little-endian: label (float32 bits), dense (float32 bits "
             "of log(1 + max(x, 0))), categorical bucket ids",
      "hashing": {"function": "tf.strings.to_hash_bucket_fast",
                  "probe_sha256": hashing_fingerprint()},
      "label": schema.label,
      "dense": list(schema.dense),
      "categorical": [{"name": f.name, "num_buckets": f.num_buckets,
                       "vocabulary_size": (None if f.vocabulary is None
                                           else len(f.vocabulary)),
                       "vocabulary_sha256": vocabulary_fingerprint(
                           f.vocabulary)}
                      for f in schema.categorical],
  }
  if schema.dense_transform != "log1p_clip0":
    description["row"] = description["row"].replace(
        "log(1 + max(x, 0))", "the dense_transform")
    description["dense_transform"] = {
        "name": schema.dense_transform,
        "mean": list(schema.dense_mean), "std": list(schema.dense_std)}
  return description


def check_packed_files(files: Sequence[str],
                       schema: features_lib.FeatureSchema) -> None:
  """Raises DataError unless every packed file fits ``schema``.

  Each file's directory must hold ``PACKED_SCHEMA_FILE`` equal to
  ``packed_schema_description(schema)`` (the ids were hashed or looked up for
  exactly these features, bucket counts and vocabularies, by the same
  hashing), and each file's size must be a whole number of rows.
  """
  want = packed_schema_description(schema)
  row_bytes = 4 * packed_width(schema)
  checked = set()
  for path in files:
    directory = os.path.dirname(path)
    if directory not in checked:
      checked.add(directory)
      schema_path = os.path.join(directory, PACKED_SCHEMA_FILE)
      if not tf.io.gfile.exists(schema_path):
        raise DataError(
            f"{path}: not a packed file ({schema_path} is missing); write "
            "packed files with recsys-smelu-convert --format=packed")
      with tf.io.gfile.GFile(schema_path) as f:
        try:
          have = json.load(f)
        except ValueError as e:
          raise DataError(f"{schema_path}: not valid JSON ({e})") from None
      _compare_packed_schema(schema_path, have, want)
    size = tf.io.gfile.stat(path).length
    if size % row_bytes:
      raise DataError(f"{path}: {size} bytes is not a whole number of "
                      f"{row_bytes}-byte rows (truncated or not a packed file)")


_CONVERT_AGAIN = "; convert the files again"


def _compare_packed_schema(schema_path: str, have: dict, want: dict) -> None:
  """Raises DataError naming the first difference between a packed schema
  file's contents ``have`` and the config's ``want``."""
  if have.get("format") != want["format"] or have.get("version") != want[
      "version"]:
    raise DataError(f"{schema_path}: format {have.get('format')!r} version "
                    f"{have.get('version')!r}, expected {want['format']!r} "
                    f"version {want['version']}{_CONVERT_AGAIN}")
  if have.get("hashing") != want["hashing"]:
    raise DataError(
        f"{schema_path}: the files were hashed by {have.get('hashing')!r}, "
        f"this TensorFlow hashes as {want['hashing']!r} (the same raw values "
        f"would get other bucket ids){_CONVERT_AGAIN}")
  if have.get("dense") != want["dense"]:
    raise DataError(
        f"{schema_path}: the files have {len(have.get('dense') or [])} dense "
        f"features, the config {len(want['dense'])} (config key "
        "'data.num_dense')")
  have_cat, want_cat = have.get("categorical") or [], want["categorical"]
  if [c.get("name") for c in have_cat] != [c["name"] for c in want_cat]:
    raise DataError(
        f"{schema_path}: the files have {len(have_cat)} categorical "
        f"features, the config {len(want_cat)} (config key "
        "'data.num_categorical')")
  for h, w in zip(have_cat, want_cat):
    if h.get("num_buckets") != w["num_buckets"]:
      raise DataError(
          f"{schema_path}: feature {w['name']} was hashed into "
          f"{h.get('num_buckets')} buckets, the config has {w['num_buckets']} "
          f"(config key 'data.num_buckets'){_CONVERT_AGAIN}")
    if (h.get("vocabulary_size") != w["vocabulary_size"]
        or h.get("vocabulary_sha256") != w["vocabulary_sha256"]):
      raise DataError(
          f"{schema_path}: feature {w['name']} was mapped with "
          f"{_describe_vocabulary(h)}, the schema has "
          f"{_describe_vocabulary(w)} (its ids would mean other values)"
          f"{_CONVERT_AGAIN}")
    if h != w:
      raise DataError(f"{schema_path}: feature {w['name']} is {h!r}, "
                      f"expected {w!r}{_CONVERT_AGAIN}")
  have_transform = have.get("dense_transform",
                            {"name": "log1p_clip0", "mean": [], "std": []})
  want_transform = want.get("dense_transform",
                            {"name": "log1p_clip0", "mean": [], "std": []})
  if have_transform != want_transform:
    raise DataError(
        f"{schema_path}: the dense values were transformed by "
        f"{have_transform!r}, the schema asks for {want_transform!r} (config "
        f"keys 'data.dense_transform', 'data.schema_file'){_CONVERT_AGAIN}")
  if have.get("label") != want["label"]:
    raise DataError(f"{schema_path}: label {have.get('label')!r}, expected "
                    f"{want['label']!r}")


def _describe_vocabulary(feature: dict) -> str:
  if feature.get("vocabulary_size") is None:
    return "hashing (no vocabulary)"
  return (f"a vocabulary of {feature['vocabulary_size']} entries (sha256 "
          f"{str(feature.get('vocabulary_sha256'))[:12]}...)")


def write_packed_schema(output_dir: str,
                        schema: features_lib.FeatureSchema) -> str:
  """Writes ``output_dir/PACKED_SCHEMA_FILE`` for rows packed with
  ``schema``; returns its path."""
  path = os.path.join(output_dir, PACKED_SCHEMA_FILE)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(packed_schema_description(schema), f, indent=1)
  return path
