"""Tabular CTR data: delimited text (CSV/TSV) with a header and named column roles.

A ``TabularSpec`` says how to read the files (``csv`` | ``tsv``, delimiter,
header) and what each header column is: the label, a dense feature, a
categorical feature, or ignored. Every header column must have exactly one
role, so a typo cannot silently drop a feature (``TabularSpec.check_header``).
The role strings are the config's: comma-separated column names, empty =
none; per-column bucket counts ``"site_id=100000,device_ip=1000000"``.

``build_schema(files, spec)`` reads the header, builds the vocabularies asked
for (from counts over the files, at least ``vocab_min_count``) and the
``standardize`` statistics in one streamed pass, and returns a
``TabularSchema``: the model's ``FeatureSchema`` plus the dense transform and
its statistics, saved as ``schema.json`` (``save_schema`` / ``load_schema``).

``make_dataset(files, schema, batch_size, ...)`` streams the rows with
tf.data as ``(features, label)`` batches exactly like the Criteo pipeline
(``dense_features`` float32 [b, num_dense], ``sparse_features`` {name: int32
[b]}): lines in chunks (``readers``), validated and decoded by whole-chunk
ops, packed (``packed``), shuffled by ``pipeline.shuffle_chunks``, sharded by
files or lines. The decoding is one native op per chunk when
``recsys_smelu.native`` builds (``DecodeDelimitedText``: check, split,
numbers and hashes in one pass per line, plain files read as blocks of lines
without a string per line), else stock ops; both keep the same rows with
the same values and report the same bad rows (tests compare them).

Fields follow RFC 4180: a field is either unquoted (no ``"`` and no
delimiter) or enclosed in ``"``, with a ``"`` inside written ``""``. A quoted
field cannot span lines (the reader is line based): such a row, like any
misplaced quote, is a bad row with reason ``quote``, never mis-split. Other
bad rows: ``column_count``, ``label`` (not 0/1) and ``dense_field`` (not a
number, or outside float32); they follow ``on_bad_row`` as for TSV.

Categorical values are hashed as the Criteo features are
(``features.categorical_ids``: ``to_hash_bucket_fast`` of the text, or a
vocabulary position); the empty field is the missing value. Dense values may
be empty (missing), negative or fractional; ``dense_transform`` is
``log1p_clip0`` (``log(1 + max(x, 0))``, missing -> 0), ``none`` (missing ->
0) or ``standardize`` (``(x - mean) / std`` with the training files'
statistics, missing -> 0, i.e. the mean).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import difflib
import fractions
import functools
import gzip
import io
import json
import math
import os
import re
import shlex
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from recsys_smelu import native
from recsys_smelu.data import features as features_lib
from recsys_smelu.data import packed as packed_lib
from recsys_smelu.data import pipeline
from recsys_smelu.data import readers
from recsys_smelu.data import splits
from recsys_smelu.data.pipeline import BadRowCounter
from recsys_smelu.data.pipeline import DataError

FILE_FORMATS = ("csv", "tsv", "parquet")  # parquet: data.parquet reads it
DEFAULT_DELIMITERS = {"csv": ",", "tsv": "\t", "parquet": ","}
DENSE_TRANSFORMS = features_lib.DENSE_TRANSFORMS
# Column names the schema guess takes for the label (lower case).
LABEL_NAMES = ("click", "clicked", "label", "target", "y")
# Column names the schema guess puts in ignore_columns (lower case).
ROW_ID_NAMES = ("id", "row_id")
# The config keys the roles come from, named in error messages.
KEYS = {
    "label": "data.label_column",
    "dense": "data.dense_columns",
    "categorical": "data.categorical_columns",
    "ignore": "data.ignore_columns",
    "buckets": "data.num_buckets_per_column",
    "vocabulary_files": "data.vocabulary_files",
    "vocabulary_columns": "data.vocabulary_columns",
}
SCHEMA_FILE = "schema.json"
SCHEMA_FORMAT_NAME = "recsys_smelu.tabular_schema"
SCHEMA_FORMAT_VERSION = 1
# A dense value: optional sign, up to 38 integer digits, optional fraction,
# optional 1-2 digit exponent (so float64 parsing cannot overflow; values
# beyond float32 are then bad rows).
NUMBER_REGEX = (r"[-+]?(?:[0-9]{1,38}(?:\.[0-9]*)?|\.[0-9]+)"
                r"(?:[eE][-+]?[0-9]{1,2})?")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_COLUMNS = 1000  # RE2's repetition limit
_ROW_SEED_OFFSET = 7919  # row shuffle seed = seed + this, as in criteo


# ---------------------------------------------------------------------------
# Role strings.
# ---------------------------------------------------------------------------


def parse_column_list(text: str, key: str) -> tuple[str, ...]:
  """Column names of a comma-separated role string (``key`` names it in
  errors). Empty (or only spaces) = none; names are stripped of spaces; an
  empty name (``"a,,b"``) or a name given twice is an error."""
  if not text.strip():
    return ()
  names = tuple(name.strip() for name in text.split(","))
  if "" in names:
    raise DataError(f"config key {key!r}: empty column name in {text!r} "
                    "(two commas or a trailing comma)")
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise DataError(f"config key {key!r}: column {repeated[0]!r} is named "
                    "twice")
  return names


def parse_column_values(text: str, key: str,
                        value_type: type = int) -> tuple[tuple[str, object], ...]:
  """``"site_id=100000,device_ip=1000000"`` -> ``(("site_id", 100000), ...)``.

  ``value_type`` int: each value a positive integer; str: any non-empty text
  (e.g. a vocabulary file path). Empty = none. A bad entry is an error naming
  ``key`` and the entry.
  """
  if not text.strip():
    return ()
  pairs, seen = [], set()
  for entry in text.split(","):
    name, sep, value = entry.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
      raise DataError(f"config key {key!r}: bad entry {entry!r}, expected "
                      "COLUMN=VALUE (e.g. site_id=100000)")
    if name in seen:
      raise DataError(f"config key {key!r}: column {name!r} is given twice")
    seen.add(name)
    if value_type is int:
      try:
        number = int(value)
      except ValueError:
        number = 0
      if number <= 0 or str(number) != value.lstrip("+"):
        raise DataError(f"config key {key!r}: bad entry {entry!r}, the "
                        "bucket count must be a positive integer")
      pairs.append((name, number))
    else:
      pairs.append((name, value))
  return tuple(pairs)


def _nearest(name: str, candidates: Iterable[str]) -> str:
  """`` (did you mean 'x'?)`` or ''."""
  match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
  return f" (did you mean {match[0]!r}?)" if match else ""


# ---------------------------------------------------------------------------
# The spec.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TabularSpec:
  """How to read tabular files and the role of each column.

  * ``file_format``: ``csv`` | ``tsv``; ``delimiter``: one character,
    "" = the format's (``,`` / tab); ``header``: the first line of every
    file names the columns. Without a header, ``column_names`` gives them in
    file order.
  * Roles: ``label_column`` (one name), ``dense_columns``,
    ``categorical_columns``, ``ignore_columns`` (names; model inputs come in
    the order given here).
  * ``num_buckets``: hash buckets of a categorical column, unless
    ``num_buckets_per_column`` ((name, count) pairs) says otherwise.
  * Vocabularies: ``vocabulary_files`` ((name, path) pairs: one value a line)
    or ``vocabulary_columns`` built from counts over the training files,
    keeping values seen at least ``vocab_min_count`` times. Bucket 0 is
    out-of-vocabulary (and missing); buckets = vocabulary size + 1.
  * ``dense_transform``: one of ``DENSE_TRANSFORMS`` (module docstring).
  """
  label_column: str
  dense_columns: tuple[str, ...] = ()
  categorical_columns: tuple[str, ...] = ()
  ignore_columns: tuple[str, ...] = ()
  file_format: str = "csv"
  delimiter: str = ""
  header: bool = True
  column_names: tuple[str, ...] = ()
  num_buckets: int = 10_000
  num_buckets_per_column: tuple[tuple[str, int], ...] = ()
  vocabulary_files: tuple[tuple[str, str], ...] = ()
  vocabulary_columns: tuple[str, ...] = ()
  vocab_min_count: int = 1
  dense_transform: str = "log1p_clip0"
  embedding_dim: int = 8

  def __post_init__(self):
    if self.file_format not in FILE_FORMATS:
      raise DataError(f"config key 'data.format': {self.file_format!r} is "
                      f"not a tabular format ({', '.join(FILE_FORMATS)})")
    if not self.delimiter:
      object.__setattr__(self, "delimiter",
                         DEFAULT_DELIMITERS[self.file_format])
    if len(self.delimiter) != 1 or self.delimiter in "\"\r\n":
      raise DataError(f"config key 'data.delimiter': {self.delimiter!r} must "
                      "be one character other than a quote or a newline")
    if not self.label_column:
      raise DataError(f"config key {KEYS['label']!r} is empty; name the 0/1 "
                      "label column")
    if "," in self.label_column:
      raise DataError(f"config key {KEYS['label']!r}: one column, got "
                      f"{self.label_column!r}")
    if self.dense_transform not in DENSE_TRANSFORMS:
      raise DataError(f"config key 'data.dense_transform': "
                      f"{self.dense_transform!r} is not one of "
                      f"{', '.join(DENSE_TRANSFORMS)}")
    if self.num_buckets <= 0:
      raise DataError("config key 'data.num_buckets' must be > 0")
    if self.vocab_min_count < 1:
      raise DataError("config key 'data.vocab_min_count' must be >= 1")
    if self.embedding_dim <= 0:
      raise DataError("config key 'model.embedding_dim' must be > 0")
    role_of = {}
    for role, names in (("label", (self.label_column,)),
                        ("dense", self.dense_columns),
                        ("categorical", self.categorical_columns),
                        ("ignore", self.ignore_columns)):
      for name in names:
        if name in role_of:
          raise DataError(f"column {name!r} is in two roles: "
                          f"{KEYS[role_of[name]]} and {KEYS[role]}")
        role_of[name] = role
    categorical = set(self.categorical_columns)
    for key, names in (
        ("buckets", [n for n, _ in self.num_buckets_per_column]),
        ("vocabulary_files", [n for n, _ in self.vocabulary_files]),
        ("vocabulary_columns", self.vocabulary_columns)):
      for name in names:
        if name not in categorical:
          raise DataError(
              f"config key {KEYS[key]!r}: {name!r} is not in "
              f"{KEYS['categorical']}{_nearest(name, categorical)}")
    with_vocabulary = ({n for n, _ in self.vocabulary_files}
                       | set(self.vocabulary_columns))
    for name, _ in self.num_buckets_per_column:
      if name in with_vocabulary:
        raise DataError(f"config key {KEYS['buckets']!r}: column {name!r} "
                        "has a vocabulary (its bucket count is the "
                        "vocabulary size + 1)")
    both = {n for n, _ in self.vocabulary_files} & set(self.vocabulary_columns)
    if both:
      raise DataError(f"column {sorted(both)[0]!r} is in both "
                      f"{KEYS['vocabulary_files']} and "
                      f"{KEYS['vocabulary_columns']}")
    if not self.header and not self.column_names:
      raise DataError("data.header is false: give the columns in file order "
                      "(column_names)")

  @classmethod
  def from_strings(cls, *, label_column: str, dense_columns: str = "",
                   categorical_columns: str = "", ignore_columns: str = "",
                   num_buckets_per_column: str = "",
                   vocabulary_files: str = "", vocabulary_columns: str = "",
                   column_names: str = "", **kwargs) -> "TabularSpec":
    """A spec from the config's role strings (comma-separated names, empty =
    none; ``"name=count,..."`` for ``num_buckets_per_column``, ``"name=path,
    ..."`` for ``vocabulary_files``); other arguments as the fields."""
    return cls(
        label_column=label_column.strip(),
        dense_columns=parse_column_list(dense_columns, KEYS["dense"]),
        categorical_columns=parse_column_list(categorical_columns,
                                              KEYS["categorical"]),
        ignore_columns=parse_column_list(ignore_columns, KEYS["ignore"]),
        num_buckets_per_column=parse_column_values(num_buckets_per_column,
                                                   KEYS["buckets"]),
        vocabulary_files=parse_column_values(
            vocabulary_files, KEYS["vocabulary_files"], str),
        vocabulary_columns=parse_column_list(vocabulary_columns,
                                             KEYS["vocabulary_columns"]),
        column_names=parse_column_list(column_names, "column_names"),
        **kwargs)

  @property
  def role_columns(self) -> tuple[str, ...]:
    """Every column a role names: label, dense, categorical, ignored."""
    return ((self.label_column,) + self.dense_columns
            + self.categorical_columns + self.ignore_columns)

  def buckets_of(self, name: str) -> int:
    return dict(self.num_buckets_per_column).get(name, self.num_buckets)

  def check_header(self, columns: Sequence[str], path: str) -> None:
    """Raises DataError naming ``path`` unless every column of the header
    ``columns`` has exactly one role and every role column is in it."""
    columns = list(columns)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
      raise DataError(f"{path}: header names column {repeated[0]!r} twice")
    in_header = set(columns)
    named = self.role_columns
    for role, names in (("label", (self.label_column,)),
                        ("dense", self.dense_columns),
                        ("categorical", self.categorical_columns),
                        ("ignore", self.ignore_columns)):
      for name in names:
        if name not in in_header:
          raise DataError(
              f"{path}: {KEYS[role]} names column {name!r}, which is not in "
              f"the header{_nearest(name, in_header - set(named))}; header: "
              f"{_short_list(columns)}")
    unnamed = [c for c in columns if c not in set(named)]
    if unnamed:
      raise DataError(
          f"{path}: header column {unnamed[0]!r} is in no role"
          f"{_nearest(unnamed[0], set(named) - in_header)}; name it in "
          f"{KEYS['dense']}, {KEYS['categorical']} or {KEYS['ignore']}"
          + (f" (unnamed: {_short_list(unnamed)})" if len(unnamed) > 1
             else ""))
    if len(columns) > _MAX_COLUMNS:
      raise DataError(f"{path}: {len(columns)} columns; at most "
                      f"{_MAX_COLUMNS} are supported")


def _short_list(names: Sequence[str], limit: int = 12) -> str:
  text = ", ".join(names[:limit])
  return text + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# ---------------------------------------------------------------------------
# Headers.
# ---------------------------------------------------------------------------


class _GFileReader(io.RawIOBase):
  """``tf.io.gfile.GFile`` as a raw binary stream (for io and gzip)."""

  def __init__(self, path: str):
    super().__init__()
    self._file = tf.io.gfile.GFile(path, "rb")

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    data = self._file.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def close(self) -> None:
    self._file.close()
    super().close()


def _open_text(path: str):
  """A UTF-8 text stream of a plain or gzip file (local or gs://), read as
  it goes; a byte-order mark is dropped, line ends are kept."""
  binary = io.BufferedReader(_GFileReader(path))
  if path.endswith(".gz"):
    binary = gzip.GzipFile(fileobj=binary)
  return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def _split_line(line: str, delimiter: str, path: str, line_number: int
                ) -> list[str]:
  try:
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter,
                           strict=True))
  except (csv.Error, StopIteration) as e:
    raise DataError(f"{path}:{line_number}: cannot split the line ({e}); "
                    f"line content: {line[:200]!r}") from None


def read_header(path: str, spec: TabularSpec) -> tuple[str, ...]:
  """The column names of ``path``'s first line (``spec.delimiter``, quotes
  as RFC 4180), or ``spec.column_names`` when the files have no header."""
  if spec.file_format == "parquet":
    from recsys_smelu.data import parquet  # pylint: disable=g-import-not-at-top
    return parquet.read_columns(path)
  if not spec.header:
    return spec.column_names
  try:
    # The first line alone, as bytes: a text stream would decode a whole
    # buffer ahead, so bad bytes in a data row would fail the header.
    with io.BufferedReader(_GFileReader(path)) as binary:
      stream = (gzip.GzipFile(fileobj=binary) if path.endswith(".gz")
                else binary)
      line = stream.readline().decode("utf-8-sig")
  except (OSError, UnicodeDecodeError, tf.errors.OpError) as e:
    raise DataError(f"{path}: cannot read the header ({e})") from None
  if not line.strip():
    raise DataError(f"{path}: empty first line; data.header is true, so it "
                    "must name the columns")
  return tuple(c.strip() for c in _split_line(line, spec.delimiter, path, 1))


def check_headers(files: Sequence[str], spec: TabularSpec,
                  columns: Optional[Sequence[str]] = None) -> tuple[str, ...]:
  """The header all ``files`` share, checked against ``spec``'s roles (and
  equal to ``columns`` when given). Headers that differ are an error naming
  both files."""
  if not files:
    raise pipeline.NoMatchingFilesError("no input files")
  first = None
  for path in files:
    first = check_file_columns(path, read_header(path, spec), first, spec,
                               columns)
  return first[1]


def check_file_columns(path: str, names: Sequence[str],
                       first: Optional[tuple[str, tuple[str, ...]]],
                       spec: TabularSpec,
                       columns: Optional[Sequence[str]] = None
                       ) -> tuple[str, tuple[str, ...]]:
  """Checks one file's column names (its header, or a Parquet schema's).

  The first file (``first`` None) is checked against ``spec``'s roles and
  must equal ``columns`` when given; every later file must have the first
  one's names. Returns ``first``: (its path, its names).
  """
  names = tuple(names)
  if first is None:
    spec.check_header(names, path)
    if columns is not None and tuple(columns) != names:
      raise DataError(f"{path}: header {_short_list(names)} differs from "
                      f"the schema's columns {_short_list(list(columns))}")
    return path, names
  if names != first[1]:
    raise DataError(f"{path}: header differs from {first[0]}'s: "
                    f"{_short_list(names)} vs {_short_list(first[1])}")
  return first


# ---------------------------------------------------------------------------
# The schema: features, dense transform and statistics.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TabularSchema:
  """What training needs to read tabular files and what serving must repeat.

  ``columns``: the header, in file order; ``features``: the model's
  ``FeatureSchema`` (dense = ``spec.dense_columns``, categorical =
  ``spec.categorical_columns`` with bucket counts and vocabularies);
  ``dense_mean``/``dense_std``: per dense column (``standardize``; else
  empty).
  """
  spec: TabularSpec
  columns: tuple[str, ...]
  features: features_lib.FeatureSchema
  dense_mean: tuple[float, ...] = ()
  dense_std: tuple[float, ...] = ()

  def __post_init__(self):
    if self.spec.dense_transform == "standardize":
      n = len(self.spec.dense_columns)
      if len(self.dense_mean) != n or len(self.dense_std) != n:
        raise DataError(f"standardize needs a mean and a std for each of the "
                        f"{n} dense columns")
      bad = [c for c, s in zip(self.spec.dense_columns, self.dense_std)
             if not s > 0 or not math.isfinite(s)]
      if bad:
        raise DataError(f"dense column {bad[0]!r}: std must be > 0")


def transform_dense(values, schema: TabularSchema):
  """Model dense inputs float32 [n, k] from raw values float32 [n, k] (NaN =
  missing), by ``schema.spec.dense_transform`` with its statistics
  (``features.transform_dense_values``: the serving graph's transform)."""
  return features_lib.transform_dense_values(
      tf.convert_to_tensor(values, tf.float32), schema.features)


def model_inputs(raw: Mapping[str, object], schema: TabularSchema) -> dict:
  """The model's features dict from raw named columns (each [n]: dense
  float32 with NaN = missing, categorical strings): ``transform_dense`` and
  ``features.categorical_ids``."""
  features = schema.features
  if features.dense:
    dense = transform_dense(
        tf.stack([tf.cast(raw[n], tf.float32) for n in features.dense], 1),
        schema)
  else:
    reference = tf.convert_to_tensor(raw[features.categorical[0].name])
    dense = tf.zeros(tf.concat([tf.shape(reference), [0]], 0), tf.float32)
  # Columns hashed into the same bucket count go through one hash op.
  groups: dict[int, list] = {}
  sparse = {}
  for feature in features.categorical:
    if feature.vocabulary is None:
      groups.setdefault(feature.num_buckets, []).append(feature)
    else:
      sparse[feature.name] = features_lib.categorical_ids(raw[feature.name],
                                                          feature)
  for group in groups.values():
    if len(group) == 1:
      sparse[group[0].name] = features_lib.categorical_ids(raw[group[0].name],
                                                           group[0])
      continue
    ids = features_lib.categorical_ids(
        tf.stack([raw[f.name] for f in group], axis=1), group[0])
    for i, feature in enumerate(group):
      sparse[feature.name] = ids[:, i]
  sparse = {f.name: sparse[f.name] for f in features.categorical}
  return {features_lib.DENSE_KEY: dense, features_lib.SPARSE_KEY: sparse}


def schema_to_json(schema: TabularSchema) -> dict:
  """The ``schema.json`` content: roles, vocabularies, statistics."""
  spec = schema.spec
  return {
      "format": SCHEMA_FORMAT_NAME,
      "version": SCHEMA_FORMAT_VERSION,
      "file_format": spec.file_format,
      "delimiter": spec.delimiter,
      "header": spec.header,
      "columns": list(schema.columns),
      "label_column": spec.label_column,
      "dense_columns": list(spec.dense_columns),
      "categorical_columns": list(spec.categorical_columns),
      "ignore_columns": list(spec.ignore_columns),
      "num_buckets": spec.num_buckets,
      "num_buckets_per_column": dict(spec.num_buckets_per_column),
      "vocabulary_files": dict(spec.vocabulary_files),
      "vocabulary_columns": list(spec.vocabulary_columns),
      "vocab_min_count": spec.vocab_min_count,
      "embedding_dim": spec.embedding_dim,
      "dense_transform": spec.dense_transform,
      "dense": [
          {"name": name,
           **({"mean": schema.dense_mean[i], "std": schema.dense_std[i]}
              if schema.dense_mean else {})}
          for i, name in enumerate(spec.dense_columns)],
      "categorical": [
          {"name": f.name, "num_buckets": f.num_buckets,
           "embedding_dim": f.embedding_dim,
           "vocabulary": None if f.vocabulary is None else list(f.vocabulary)}
          for f in schema.features.categorical],
  }


def schema_from_json(description: Mapping, source: str = "schema") -> TabularSchema:
  """Inverse of ``schema_to_json``; errors name ``source``."""
  if (description.get("format") != SCHEMA_FORMAT_NAME
      or description.get("version") != SCHEMA_FORMAT_VERSION):
    raise DataError(f"{source}: format {description.get('format')!r} version "
                    f"{description.get('version')!r}, expected "
                    f"{SCHEMA_FORMAT_NAME!r} version {SCHEMA_FORMAT_VERSION}")
  try:
    spec = TabularSpec(
        label_column=description["label_column"],
        dense_columns=tuple(description["dense_columns"]),
        categorical_columns=tuple(description["categorical_columns"]),
        ignore_columns=tuple(description["ignore_columns"]),
        file_format=description["file_format"],
        delimiter=description["delimiter"],
        header=description["header"],
        column_names=(() if description["header"]
                      else tuple(description["columns"])),
        num_buckets=description["num_buckets"],
        num_buckets_per_column=tuple(
            description["num_buckets_per_column"].items()),
        vocabulary_files=tuple(description["vocabulary_files"].items()),
        vocabulary_columns=tuple(description["vocabulary_columns"]),
        vocab_min_count=description["vocab_min_count"],
        embedding_dim=description["embedding_dim"],
        dense_transform=description["dense_transform"])
    dense = description["dense"]
    if [d["name"] for d in dense] != list(spec.dense_columns):
      raise DataError(f"{source}: 'dense' does not list the dense columns")
    categorical = tuple(
        features_lib.CategoricalFeature(
            c["name"], c["num_buckets"], c["embedding_dim"],
            None if c["vocabulary"] is None else tuple(c["vocabulary"]))
        for c in description["categorical"])
    if tuple(f.name for f in categorical) != spec.categorical_columns:
      raise DataError(f"{source}: 'categorical' does not list the "
                      "categorical columns")
    with_stats = spec.dense_transform == "standardize"
    dense_mean = tuple(float(d["mean"]) for d in dense) if with_stats else ()
    dense_std = tuple(float(d["std"]) for d in dense) if with_stats else ()
    return TabularSchema(
        spec=spec, columns=tuple(description["columns"]),
        features=feature_schema_of(spec, categorical, dense_mean, dense_std),
        dense_mean=dense_mean, dense_std=dense_std)
  except (KeyError, TypeError, AttributeError) as e:
    raise DataError(f"{source}: malformed schema ({type(e).__name__}: {e})"
                    ) from None


def save_schema(schema: TabularSchema, path: str) -> str:
  """Writes ``schema_to_json(schema)`` to ``path`` (a file, or a directory:
  ``path/schema.json``); returns the file written."""
  if tf.io.gfile.isdir(path):
    path = path.rstrip("/") + "/" + SCHEMA_FILE
  # Written beside and renamed, so a reader never sees half a schema.
  staging = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(staging, "w") as f:
    json.dump(schema_to_json(schema), f, indent=1)
  tf.io.gfile.rename(staging, path, overwrite=True)
  return path


def load_schema(path: str) -> TabularSchema:
  """The schema ``save_schema`` wrote (a file, or a directory holding
  ``schema.json``)."""
  if tf.io.gfile.isdir(path):
    path = path.rstrip("/") + "/" + SCHEMA_FILE
  try:
    with tf.io.gfile.GFile(path) as f:
      description = json.load(f)
  except ValueError as e:
    raise DataError(f"{path}: not valid JSON ({e})") from None
  except tf.errors.NotFoundError:
    raise DataError(f"{path}: no such file") from None
  return schema_from_json(description, path)


def read_vocabulary_file(path: str, column: str) -> tuple[str, ...]:
  """One value a line (UTF-8; line ends stripped, empty lines skipped: the
  empty value is the missing one, bucket 0). A value twice is an error."""
  try:
    with _open_text(path) as f:
      values = [line.rstrip("\r\n") for line in f]
  except (OSError, UnicodeDecodeError, tf.errors.OpError) as e:
    raise DataError(f"{path}: cannot read the vocabulary of column "
                    f"{column!r} ({e})") from None
  values = [v for v in values if v]
  seen = set()
  for number, value in enumerate(values, 1):
    if value in seen:
      raise DataError(f"{path}: vocabulary of column {column!r} has "
                      f"{value!r} twice")
    seen.add(value)
  if not values:
    raise DataError(f"{path}: vocabulary of column {column!r} is empty")
  return tuple(values)


def feature_schema_of(spec: TabularSpec,
                      categorical: tuple[features_lib.CategoricalFeature, ...],
                      dense_mean=(), dense_std=()) -> features_lib.FeatureSchema:
  """The model's ``FeatureSchema``: the spec's dense columns with its dense
  transform and statistics, ``categorical``, the label."""
  standardize = spec.dense_transform == "standardize"
  return features_lib.FeatureSchema(
      dense=spec.dense_columns, categorical=tuple(categorical),
      label=spec.label_column, dense_transform=spec.dense_transform,
      dense_mean=tuple(dense_mean) if standardize else (),
      dense_std=tuple(dense_std) if standardize else ())


def _schema(spec: TabularSpec, columns, vocabularies: Mapping[str, tuple],
            dense_mean=(), dense_std=()) -> TabularSchema:
  categorical = []
  for name in spec.categorical_columns:
    vocabulary = vocabularies.get(name)
    buckets = (spec.buckets_of(name) if vocabulary is None
               else len(vocabulary) + 1)
    categorical.append(features_lib.CategoricalFeature(
        name, buckets, spec.embedding_dim, vocabulary))
  return TabularSchema(
      spec=spec, columns=tuple(columns),
      features=feature_schema_of(spec, tuple(categorical), dense_mean,
                                 dense_std),
      dense_mean=tuple(dense_mean), dense_std=tuple(dense_std))


def build_schema(files: Sequence[str], spec: TabularSpec, *,
                 on_bad_row: str = "error",
                 bad_rows: Optional[BadRowCounter] = None,
                 selector: Optional[pipeline.LineSelector] = None
                 ) -> TabularSchema:
  """The schema of the training ``files`` under ``spec``.

  Checks the headers (``check_headers``), reads the vocabulary files, and
  when vocabularies are built (``spec.vocabulary_columns``) or dense values
  standardized, makes one streamed pass over the files (only the lines
  ``selector`` selects, the train split's, when given; bad rows by
  ``on_bad_row``):

  * vocabulary: the values seen at least ``spec.vocab_min_count`` times
    (the empty value never), most frequent first, ties in value order;
  * ``standardize``: per dense column the mean and the population std of its
    present values as read (float32), computed exactly (``ExactMoments``,
    so independent of chunking and reader) and rounded to float64; a
    column that is constant or has no value gets std 1 (so it standardizes
    to 0 at its mean) and, without values, mean 0.
  """
  files = list(files)
  columns = check_headers(files, spec)
  return schema_from_raw_chunks(
      spec, columns, len(files),
      lambda reading: raw_dataset(files, reading, on_bad_row=on_bad_row,
                                  bad_rows=bad_rows, selector=selector))


class ExactMoments:
  """Count, sum and sum of squares of float32 values, exactly (Python
  integers in units of 2**-149, the smallest float32 step, and its square),
  so the mean and std do not depend on how the values were chunked, sharded
  or ordered: csv, Parquet and DataFrame readers of the same rows agree to
  the bit. NaN (missing) values are left out."""

  def __init__(self):
    self.count = 0
    self.sum = 0  # sum(x) * 2**149
    self.sum_squares = 0  # sum(x**2) * 2**298

  def add(self, values) -> None:
    values = np.asarray(values, np.float32)
    values = values[~np.isnan(values)]
    if not values.size:
      return
    bits = values.view(np.uint32).astype(np.int64)
    negative = (bits >> 31) == 1
    exponent = (bits >> 23) & 0xFF
    mantissa = bits & 0x7FFFFF
    normal = exponent > 0
    mantissa = np.where(normal, mantissa | 0x800000, mantissa)
    shift = np.where(normal, exponent - 1, 0)  # |x| = mantissa * 2**(shift-149)
    signed = np.where(negative, -mantissa, mantissa)
    high, low = mantissa >> 12, mantissa & 0xFFF
    self.count += int(values.size)
    # Per exponent, sums of integers below 2**25 each: exact in float64
    # for any chunk under 2**28 values.
    length = int(shift.max()) + 1
    totals = np.bincount(shift, weights=signed.astype(np.float64),
                         minlength=length)
    self.sum += sum(int(t) << int(e) for e, t in enumerate(totals) if t)
    for weights, scale in ((high * high, 24), (2 * high * low, 12),
                           (low * low, 0)):
      totals = np.bincount(shift, weights=weights.astype(np.float64),
                           minlength=length)
      self.sum_squares += sum(int(t) << (2 * int(e) + scale)
                              for e, t in enumerate(totals) if t)

  def mean(self) -> float:
    """The mean, correctly rounded to float64 (0 without values)."""
    if not self.count:
      return 0.0
    return float(fractions.Fraction(self.sum, self.count << 149))

  def std(self) -> float:
    """The population std: sqrt of the correctly rounded variance."""
    if not self.count:
      return 0.0
    variance = fractions.Fraction(
        self.count * self.sum_squares - self.sum * self.sum,
        (self.count * self.count) << 298)
    return math.sqrt(float(variance))


def schema_from_raw_chunks(spec: TabularSpec, columns: Sequence[str],
                           num_files: int, raw_chunks) -> TabularSchema:
  """``build_schema``'s vocabularies and statistics from
  ``raw_chunks(reading_schema)``, a dataset of raw valid rows (as
  ``raw_dataset`` makes them) read with a placeholder schema; no pass when
  neither is needed. Shared by the csv/tsv and Parquet readers."""
  vocabularies = {name: read_vocabulary_file(path, name)
                  for name, path in spec.vocabulary_files}
  standardize = spec.dense_transform == "standardize"
  if not spec.vocabulary_columns and not standardize:
    return _schema(spec, columns, vocabularies)
  # The pass decodes with a placeholder schema: hashing only, no statistics.
  reading = _schema(dataclasses.replace(spec, dense_transform="none"),
                    columns, {})
  counters = {name: collections.Counter() for name in spec.vocabulary_columns}
  sums = [ExactMoments() for _ in spec.dense_columns]
  for raw in raw_chunks(reading).as_numpy_iterator():
    for name, counter in counters.items():
      values, counts = np.unique(raw[name], return_counts=True)
      counter.update(dict(zip(values.tolist(), counts.tolist())))
    if standardize:
      for moments, name in zip(sums, spec.dense_columns):
        moments.add(raw[name])
  for name, counter in counters.items():
    counter.pop(b"", None)
    kept = sorted(((value, n) for value, n in counter.items()
                   if n >= spec.vocab_min_count),
                  key=lambda item: (-item[1], item[0]))
    try:
      vocabularies[name] = tuple(v.decode("utf-8") for v, _ in kept)
    except UnicodeDecodeError:
      raise DataError(f"column {name!r}: a value is not UTF-8 text; a "
                      "vocabulary holds text") from None
    if not vocabularies[name]:
      raise DataError(
          f"column {name!r}: no value is seen at least "
          f"{spec.vocab_min_count} times in {num_files} training files "
          "(data.vocab_min_count); its vocabulary would be empty")
  dense_mean, dense_std = (), ()
  if standardize:
    dense_mean = tuple(m.mean() for m in sums)
    dense_std = tuple(m.std() or 1.0 for m in sums)
  return _schema(spec, columns, vocabularies, dense_mean, dense_std)


# ---------------------------------------------------------------------------
# Chunk parsing.
# ---------------------------------------------------------------------------


def _regexes(delimiter: str, num_columns: int) -> tuple[str, str, str]:
  """(row, any number of fields, quoted field) RE2 patterns."""
  d = f"\\x{{{ord(delimiter):x}}}"
  quoted = '"(?:[^"]|"")*"'
  field = f'(?:{quoted}|[^"{d}]*)'
  row = field + (f"(?:{d}{field}){{{num_columns - 1}}}"
                 if num_columns > 1 else "")
  return row, f"{field}(?:{d}{field})*", quoted


_REASON = {name: pipeline.BAD_ROW_REASONS.index(name)
           for name in ("column_count", "label", "dense_field", "quote")}


class _Layout:
  """Where a schema's columns are in a line, and the constants its parsers
  share."""

  def __init__(self, schema: TabularSchema):
    spec = schema.spec
    columns = list(schema.columns)
    self.spec = spec
    self.num_columns = len(columns)
    self.delimiter = spec.delimiter
    self.row_regex, self.fields_regex, self.quoted_regex = _regexes(
        spec.delimiter, self.num_columns)
    self.used = sorted(columns.index(n) for n in
                       (spec.label_column,) + spec.dense_columns
                       + spec.categorical_columns)
    self.slot = {columns[c]: i for i, c in enumerate(self.used)}
    self.index = {name: i for i, name in enumerate(columns)}
    self.placeholder = spec.delimiter * (self.num_columns - 1)


def _decode_lines(lines, layout: _Layout) -> dict:
  """Stock-op decoding of lines [n]: one RE2 match per line for its
  structure (column count, RFC 4180 quotes), so ``decode_csv`` cannot fail,
  then label and dense values by whole-column ops.

  Returns {"raw": the label float32, dense columns float32 (NaN = missing),
  categorical strings, a bad line as empty fields; "ok": bool [n]; and what
  ``_describe_bad`` needs}.
  """
  spec = layout.spec
  structure_ok = tf.strings.regex_full_match(lines, layout.row_regex)
  safe = tf.where(structure_ok, lines, layout.placeholder)
  fields = tf.io.decode_csv(safe, [[""]] * len(layout.used),
                            field_delim=layout.delimiter, use_quote_delim=True,
                            select_cols=layout.used)
  slot = layout.slot
  label_text = fields[slot[spec.label_column]]
  label_ok = tf.logical_or(tf.equal(label_text, "0"),
                           tf.equal(label_text, "1"))
  raw = {spec.label_column: tf.cast(tf.equal(label_text, "1"), tf.float32)}
  ok = structure_ok & label_ok
  decoded = {"structure_ok": structure_ok, "label_ok": label_ok,
             "label_text": label_text}
  if spec.dense_columns:
    dense_text = tf.stack([fields[slot[c]] for c in spec.dense_columns], 1)
    empty = tf.equal(dense_text, "")
    number_ok = tf.strings.regex_full_match(dense_text, NUMBER_REGEX)
    values = tf.strings.to_number(
        tf.where(number_ok, dense_text, "0"), tf.float64)
    dense_ok = empty | (number_ok & (tf.abs(values) <= _FLOAT32_MAX))
    values = tf.where(empty, tf.constant(float("nan"), tf.float64), values)
    values = tf.cast(values, tf.float32)
    for i, name in enumerate(spec.dense_columns):
      raw[name] = values[:, i]
    ok &= tf.reduce_all(dense_ok, axis=1)
    decoded.update(dense_ok=dense_ok, dense_text=dense_text)
  for name in spec.categorical_columns:
    raw[name] = fields[slot[name]]
  decoded.update(raw=raw, ok=ok)
  return decoded


def _describe_bad(filename, line_numbers, lines, decoded: dict,
                  layout: _Layout):
  """(reasons int32 [k], ``file:line: bad row ...`` messages [k]) of the bad
  ``lines`` [k] (numbered ``line_numbers``), ``decoded`` by
  ``_decode_lines(lines)``: the first of ``quote``, ``column_count``,
  ``label``, ``dense_field`` that applies."""
  spec = layout.spec
  quote_ok = tf.strings.regex_full_match(lines, layout.fields_regex)
  unquoted = tf.strings.regex_replace(lines, layout.quoted_regex, "")
  counts = tf.strings.split(unquoted, layout.delimiter).row_lengths()
  if spec.dense_columns:
    bad_dense = ~decoded["dense_ok"]
    first_bad = tf.argmax(tf.cast(bad_dense, tf.int32), axis=1,
                          output_type=tf.int32)
    dense_reason = tf.reduce_any(bad_dense, axis=1)
    bad_value = tf.gather(decoded["dense_text"], first_bad, batch_dims=1)
  else:
    first_bad = tf.zeros_like(quote_ok, tf.int32)
    dense_reason = tf.zeros_like(quote_ok, tf.bool)
    bad_value = tf.fill(tf.shape(quote_ok), "")
  dense_names = tf.constant(list(spec.dense_columns) or [""])
  reasons = tf.where(
      ~quote_ok, _REASON["quote"],
      tf.where(~decoded["structure_ok"], _REASON["column_count"],
               tf.where(~decoded["label_ok"], _REASON["label"],
                        tf.where(dense_reason, _REASON["dense_field"],
                                 _REASON["label"]))))
  detail_of = {
      "quote": tf.fill(tf.shape(quote_ok),
                       'misplaced or unclosed " (RFC 4180: a quoted field '
                       'is enclosed in " with inner " doubled, and '
                       'cannot span lines)'),
      "column_count": tf.strings.join([
          tf.as_string(counts), f" columns, expected {layout.num_columns}"]),
      "label": tf.strings.join([
          f"label column {spec.label_column} is [", decoded["label_text"],
          "], expected 0 or 1"]),
      "dense_field": tf.strings.join([
          "dense column ", tf.gather(dense_names, first_bad), " is [",
          bad_value, "], expected a number within float32 or empty"]),
  }
  order = sorted(detail_of, key=_REASON.get)
  details = tf.stack([detail_of[r] for r in order], axis=1)
  position = tf.searchsorted(
      tf.constant([_REASON[r] for r in order], tf.int32), reasons)
  details = tf.gather(details, position, batch_dims=1)
  return reasons, pipeline.describe_bad_rows(filename, line_numbers, reasons,
                                             details, lines, "line")


def _line_mask(filename, first_line, lines, line_shards, skip_header: bool):
  """(line numbers [n], the lines of this shard [n]: never the header) of
  ``lines`` [n]."""
  n = tf.shape(lines, out_type=tf.int64)[0]
  line_numbers = first_line + tf.range(n)
  mine = pipeline.line_mask(filename, line_numbers, line_shards)
  if skip_header:
    mine &= line_numbers > 1
  return line_numbers, mine


def _chunk_parser(schema: TabularSchema, checker: pipeline.ChunkChecker,
                  line_shards):
  """parse(filename, first line number, lines [n]) -> (raw, keep [n],
  dependency), by stock ops (``_decode_lines``).

  ``raw``: every line decoded (a bad line as empty fields): the label
  float32, dense columns float32 (NaN = missing), categorical strings;
  ``keep``: the valid lines of this shard (the header line never);
  ``dependency``: the bad-row handling (``checker``) of this shard's bad
  lines.
  """
  layout = _Layout(schema)

  def parse(filename, first_line, lines):
    line_numbers, mine = _line_mask(filename, first_line, lines, line_shards,
                                    schema.spec.header)
    decoded = _decode_lines(lines, layout)
    ok = decoded["ok"]

    def describe_bad(indices):
      subset = {k: tf.gather(v, indices) for k, v in decoded.items()
                if k not in ("raw", "ok")}
      return _describe_bad(filename, tf.gather(line_numbers, indices),
                           tf.gather(lines, indices), subset, layout)

    dependency = checker(mine & ~ok, describe_bad)
    return decoded["raw"], mine & ok, dependency

  return parse


def _native_packed_parser(schema: TabularSchema, checker: pipeline.ChunkChecker,
                          line_shards, ops):
  """(decode, parse): ``decode(lines [k], text)`` -> (decoded, number of
  lines) for ``readers.read_text``; ``parse(filename, first line number,
  lines, text, decoded)`` -> packed rows of the valid lines of this shard,
  as ``pack_raw_rows(*_chunk_parser(...)(...))`` gives them for the same
  lines (a test checks it).

  The lines are ``lines`` (gzip files) or those of ``text`` (plain files).
  One native op per chunk checks, splits, parses the numbers and hashes the
  categorical fields in one pass per line, as the chunk is read: with every
  categorical column hashed it also applies the dense transform and writes
  the packed rows (``native.pack_delimited_rows``); with vocabularies it
  gives the hashes (``native.decode_delimited_rows``) and stock ops do the
  lookups, the dense transform and the packing. The few bad lines are
  decoded again by the stock ops to describe them, so reasons and messages
  are the stock path's."""
  layout = _Layout(schema)
  spec, features = schema.spec, schema.features
  columns = dict(
      delimiter=spec.delimiter, num_columns=layout.num_columns,
      label_column=layout.index[spec.label_column],
      dense_columns=[layout.index[n] for n in spec.dense_columns],
      categorical_columns=[layout.index[n] for n in spec.categorical_columns],
      moduli=[features_lib.hash_modulus(f) for f in features.categorical])
  all_hashed = all(f.vocabulary is None for f in features.categorical)
  if all_hashed:  # packed rows straight from the op (lines or a text)
    decode_lines = decode_text = functools.partial(
        native.pack_delimited_rows, ops,
        dense_transform=features.dense_transform,
        dense_mean=features.dense_mean, dense_std=features.dense_std,
        **columns)
  else:
    decode_lines = functools.partial(native.decode_delimited_rows, ops,
                                     **columns)
    decode_text = functools.partial(native.decode_delimited_text, ops,
                                    **columns)

  def decode(lines, text):
    """(the op's outputs, valid last), number of lines."""
    decoded = tf.cond(tf.size(lines) > 0, lambda: decode_lines(lines),
                      lambda: decode_text(text))
    return decoded, tf.shape(decoded[-1], out_type=tf.int64)[0]

  def parse(filename, first_line, lines, text, decoded):
    valid = decoded[-1]
    has_lines = tf.size(lines) > 0
    n = tf.shape(valid, out_type=tf.int64)[0]
    line_numbers, mine = _line_mask(filename, first_line, tf.range(n),
                                    line_shards, spec.header)

    def describe_bad(indices):
      every_line = tf.cond(
          has_lines, lambda: lines,
          lambda: tf.strings.regex_replace(
              tf.strings.split(text, "\n")[:n], "\r$", ""))
      bad_lines = tf.gather(every_line, indices)
      decoded = _decode_lines(bad_lines, layout)
      return _describe_bad(filename, tf.gather(line_numbers, indices),
                           bad_lines, decoded, layout)

    dependency = checker(mine & ~valid, describe_bad)
    if all_hashed:
      rows = decoded[0]
    else:
      label, dense, hashes, _ = decoded
      rows = packed_lib.pack_columns(
          label, transform_dense(dense, schema),
          tf.stack([features_lib.ids_from_hashes(hashes[:, k], feature)
                    for k, feature in enumerate(features.categorical)],
                   axis=1))
    with tf.control_dependencies([dependency]):
      return pipeline.keep_rows(rows, mine & valid)

  return decode, parse


def _file_chunks(files: Sequence[str], read, *, shuffle_files: bool,
                 seed: Optional[int], parallel_files: int,
                 skip=None) -> tf.data.Dataset:
  """``read(filename, size)``'s datasets of ``files``, interleaved
  ``parallel_files`` at a time, in a shuffled file order when asked;
  ``skip(filename, chunks)``, when given, drops chunks outside a line
  range."""
  sizes = [readers.file_size(path, "tsv") for path in files]
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.constant(list(files), tf.string), tf.constant(sizes, tf.int64)))
  if shuffle_files and len(files) > 1:
    dataset = dataset.shuffle(len(files), seed=seed,
                              reshuffle_each_iteration=True)
  if skip is not None:
    read_all = read
    read = lambda f, size: skip(f, read_all(f, size))  # pylint: disable=g-long-lambda
  return dataset.interleave(
      read, cycle_length=parallel_files, block_length=1,
      **({"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
         if parallel_files > 1 else {}))


def _line_chunks(files: Sequence[str], line_filter=None,
                 **kwargs) -> tf.data.Dataset:
  """(filename, first line number, lines) of ``files`` (plain or gzip);
  with a ``pipeline.LineSelector`` as ``line_filter``, without the chunks
  wholly outside a file's line range."""
  skip = (line_filter.skip_outside
          if isinstance(line_filter, pipeline.LineSelector) else None)
  return _file_chunks(files, readers.read_chunks("tsv"), skip=skip, **kwargs)


def _text_chunks(files: Sequence[str], ops, decode, line_filter=None,
                 **kwargs) -> tf.data.Dataset:
  """(filename, first line number, lines, text, decode(lines, text)) of
  ``files`` (``readers.read_text``), for ``_native_packed_parser``; with a
  ``pipeline.LineSelector`` as ``line_filter``, stopping after a file's
  line range (a plain file's chunk is text whose line count is known only
  once decoded, so chunks before the range are read and masked)."""
  skip = None
  if isinstance(line_filter, pipeline.LineSelector):
    def skip(filename, chunks):
      _, end = line_filter.line_range(filename)
      return chunks.take_while(lambda _, start, *rest: start < end)
  return _file_chunks(files, readers.read_text(
      lambda *block: native.read_complete_lines(ops, *block), decode),
      skip=skip, **kwargs)


def raw_dataset(files: Sequence[str], schema: TabularSchema, *,
                on_bad_row: str = "error",
                bad_rows: Optional[BadRowCounter] = None,
                selector: Optional[pipeline.LineSelector] = None
                ) -> tf.data.Dataset:
  """Chunks of raw valid rows of ``files`` in file and line order: dicts
  {label float32, dense float32 (NaN = missing), categorical strings} of [k]
  tensors (for statistics, vocabularies and converting); only the lines
  ``selector`` selects when given (``recsys_smelu.data.splits``)."""
  files = list(files)
  check_headers(files, schema.spec, schema.columns)
  if selector is not None:
    selector = selector.with_files(files)
  parse = _chunk_parser(schema, pipeline.ChunkChecker(on_bad_row, bad_rows),
                        selector)

  def valid(filename, first, lines):
    raw, keep, dependency = parse(filename, first, lines)
    with tf.control_dependencies([dependency]):
      return tf.cond(
          tf.reduce_all(keep), lambda: {k: tf.identity(v) for k, v in raw.items()},
          lambda: {k: tf.boolean_mask(v, keep) for k, v in raw.items()})

  return _line_chunks(files, shuffle_files=False, seed=None,
                      parallel_files=1, line_filter=selector).map(
                          valid, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True).prefetch(tf.data.AUTOTUNE)


def pack_raw_rows(raw, keep, dependency, schema: "TabularSchema"):
  """Parsed raw columns -> packed rows (label, transformed dense, bucket ids)
  of the rows ``keep`` marks, after the bad-row check ``dependency``."""
  features = schema.features
  inputs = model_inputs(raw, schema)
  ids = None
  if features.categorical:
    ids = tf.stack([inputs[features_lib.SPARSE_KEY][n]
                    for n in features.categorical_names], axis=1)
  rows = packed_lib.pack_columns(raw[features.label],
                                 inputs[features_lib.DENSE_KEY], ids)
  with tf.control_dependencies([dependency]):
    return pipeline.keep_rows(rows, keep)


def packed_chunks(files: Sequence[str], schema: TabularSchema, *,
                  on_bad_row: str = "error",
                  bad_rows: Optional[BadRowCounter] = None,
                  line_shards=None, shuffle_files: bool = False,
                  seed: Optional[int] = None,
                  parallel_files: int = 1,
                  native_decoder: Optional[bool] = None) -> tf.data.Dataset:
  """Packed rows int32 [k, packed_width] (``packed.pack_columns``: label,
  transformed dense, bucket ids) of the valid lines of ``files``.

  Lines are decoded by the native op when ``native.load(native_decoder)``
  gives it (None: as ``RECSYS_SMELU_NATIVE_OPS`` says), else by stock ops;
  both give the same rows and bad rows.
  """
  checker = pipeline.ChunkChecker(on_bad_row, bad_rows)
  ops = native.load(native_decoder)
  if ops is not None:
    decode, pack = _native_packed_parser(schema, checker, line_shards, ops)
    chunks = _text_chunks(files, ops, decode, line_filter=line_shards,
                          shuffle_files=shuffle_files, seed=seed,
                          parallel_files=parallel_files)
  else:
    chunks = _line_chunks(files, line_filter=line_shards,
                          shuffle_files=shuffle_files, seed=seed,
                          parallel_files=parallel_files)
    parse = _chunk_parser(schema, checker, line_shards)

    def pack(filename, first, lines):
      return pack_raw_rows(*parse(filename, first, lines), schema)

  return chunks.map(pack, num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)


def count_rows(files: Sequence[str], spec: TabularSpec) -> int:
  """Rows of ``files`` as they hold them: lines less the header lines (bad
  rows included; they are found only while reading)."""
  files = list(files)
  lines = readers.count_rows(files, "tsv")
  return lines - (len(files) if spec.header else 0)


def row_counter(spec: TabularSpec) -> splits.RowCounter:
  """How the split layer (``recsys_smelu.data.splits``) numbers the rows
  of one file: its lines less the header, the first row on line 2 below a
  header (the line numbers of bad-row errors and of the 'hash' validation
  fingerprint are the file's own)."""
  header = 1 if spec.header else 0
  return splits.RowCounter(
      lambda path: max(readers.count_file_rows(path, "tsv") - header, 0),
      first_line=1 + header)


def make_dataset(files: Sequence[str], schema: TabularSchema,
                 batch_size: int, *, training: bool = True,
                 shuffle: bool = True, shuffle_buffer: int = 10_000,
                 seed: Optional[int] = None, repeat: bool = False,
                 cycle_length: int = 8, on_bad_row: str = "error",
                 bad_rows: Optional[BadRowCounter] = None,
                 num_shards: int = 1, shard_index: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 drop_remainder: Optional[bool] = None,
                 selector: Optional[pipeline.LineSelector] = None,
                 native_decoder: Optional[bool] = None) -> tf.data.Dataset:
  """Batches ``(features, label)`` of tabular ``files``, as the Criteo
  pipeline makes them (``criteo.make_dataset``'s reading, shuffling and
  sharding rules, ``selector`` included: a row range or validation split
  of ``recsys_smelu.data.splits``, counted by ``row_counter``).

  * ``training``: files interleaved ``cycle_length`` at a time; else read
    one after the other in line order. ``shuffle`` (needs ``training``):
    file order (seed ``seed``) and rows (``pipeline.shuffle_chunks``, buffer
    ``shuffle_buffer``, seed ``seed + 7919``), reshuffled each epoch with
    ``repeat``.
  * Sharding: ``input_context`` (``distribute_datasets_from_function``)
    sets ``num_shards``/``shard_index`` and makes ``batch_size`` global (each
    pipeline batches its per-replica share). By files when there are at
    least ``num_shards``, else line l of every file to shard
    ``(l - 1) % num_shards``.
  * Every file's header must equal ``schema.columns``.
  * ``native_decoder``: lines through the native op (``packed_chunks``);
    None = as ``RECSYS_SMELU_NATIVE_OPS`` says.
  """
  if shuffle and not training:
    raise DataError("evaluation data is never shuffled (shuffle=True with "
                    "training=False)")
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
    num_shards = input_context.num_input_pipelines
    shard_index = input_context.input_pipeline_id
  if batch_size <= 0:
    raise DataError(f"batch_size must be > 0, got {batch_size}")
  files = list(files)
  check_headers(files, schema.spec, schema.columns)
  # The parser's line filter: range, hash, line shard.
  files, line_shards = pipeline.shard_files(files, num_shards, shard_index,
                                            selector)
  if drop_remainder is None:
    drop_remainder = training
  dataset = packed_chunks(
      files, schema, on_bad_row=on_bad_row, bad_rows=bad_rows,
      line_shards=line_shards, shuffle_files=shuffle, seed=seed,
      parallel_files=min(cycle_length, len(files)) if training else 1,
      native_decoder=native_decoder)
  return batch_packed_chunks(
      dataset, schema, batch_size, shuffle=shuffle,
      shuffle_buffer=shuffle_buffer, seed=seed, repeat=repeat,
      drop_remainder=drop_remainder, sharded=num_shards > 1)


def batch_packed_chunks(dataset: tf.data.Dataset, schema: TabularSchema,
                        batch_size: int, *, shuffle: bool,
                        shuffle_buffer: int, seed: Optional[int],
                        repeat: bool, drop_remainder: bool,
                        sharded: bool) -> tf.data.Dataset:
  """Packed-row chunks -> shuffled (``pipeline.shuffle_chunks``, seed
  ``seed + 7919``), repeated, ``(features, label)`` batches."""
  if shuffle and shuffle_buffer > 0:
    dataset = pipeline.shuffle_chunks(
        dataset, shuffle_buffer,
        None if seed is None else seed + _ROW_SEED_OFFSET)
  if repeat:
    dataset = dataset.repeat()
  dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)
  dataset = dataset.map(lambda rows: packed_lib.unpack(rows, schema.features),
                        num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  return pipeline.finish_pipeline(dataset, sharded=sharded)


# ---------------------------------------------------------------------------
# Guessing roles from a sample (recsys-smelu-infer-schema).
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GuessedRoles:
  """Roles guessed from ``rows`` sampled rows, with one note per decision."""
  file_format: str
  delimiter: str
  label_column: str
  dense_columns: tuple[str, ...]
  categorical_columns: tuple[str, ...]
  ignore_columns: tuple[str, ...]
  dense_transform: str
  rows: int
  notes: tuple[str, ...]


def _format_of(path: str) -> str:
  name = path[:-3] if path.endswith(".gz") else path
  return "tsv" if name.endswith((".tsv", ".tab")) else "csv"


def guess_roles(path: str, *, file_format: str = "", delimiter: str = "",
                sample_rows: int = 1000) -> GuessedRoles:
  """Roles for ``path`` from its header and first ``sample_rows`` rows.

  A column named like a row id (``ROW_ID_NAMES``) is ignored; the first
  column named like a label (``LABEL_NAMES``) whose values are all 0/1 is the
  label; a column whose every non-empty value is a number (``NUMBER_REGEX``)
  is dense, any other categorical. ``standardize`` is suggested when a dense
  value is negative, else ``log1p_clip0``.
  """
  file_format = file_format or _format_of(path)
  if file_format not in ("csv", "tsv"):
    raise DataError(f"format {file_format!r} is not one of csv, tsv")
  delimiter = delimiter or DEFAULT_DELIMITERS[file_format]
  number = re.compile(NUMBER_REGEX)
  if not tf.io.gfile.exists(path):
    raise DataError(f"{path}: no such file")
  with _open_text(path) as f:
    header_line = f.readline()
    if not header_line.strip():
      raise DataError(f"{path}: empty first line; expected a header")
    columns = [c.strip() for c in _split_line(header_line, delimiter, path, 1)]
    values = [[] for _ in columns]
    rows = 0
    for line_number, line in enumerate(f, 2):
      if rows >= sample_rows:
        break
      if not line.strip():
        continue
      fields = _split_line(line, delimiter, path, line_number)
      if len(fields) != len(columns):
        raise DataError(f"{path}:{line_number}: {len(fields)} columns, the "
                        f"header has {len(columns)}")
      for i, value in enumerate(fields):
        values[i].append(value)
      rows += 1
  label, dense, categorical, ignore, notes = "", [], [], [], []
  negative = False
  for name, column in zip(columns, values):
    present = [v for v in column if v != ""]
    if name.lower() in ROW_ID_NAMES:
      ignore.append(name)
      notes.append(f"{name}: named like a row id -> ignore_columns")
    elif (not label and name.lower() in LABEL_NAMES and present
          and set(present) <= {"0", "1"}):
      label = name
      notes.append(f"{name}: 0/1 and named like a label -> label_column")
    elif present and all(number.fullmatch(v) for v in present):
      dense.append(name)
      negative |= any(v.startswith("-") for v in present)
    else:
      categorical.append(name)
  if dense:
    notes.append(f"{_short_list(dense, 8)}: numeric -> dense_columns (move "
                 "codes and ids that only look numeric to "
                 "categorical_columns)")
  if categorical:
    notes.append(f"{_short_list(categorical, 8)}: not numeric -> "
                 "categorical_columns")
  if not label:
    notes.append(f"no 0/1 column named like a label ({', '.join(LABEL_NAMES)})"
                 ": set label_column and take it out of the other roles")
  transform = "standardize" if negative else "log1p_clip0"
  if dense:
    notes.append(f"dense_transform={transform}" + (
        " (a dense value is negative)" if negative else
        " (no negative dense value seen)"))
  return GuessedRoles(file_format, delimiter, label, tuple(dense),
                      tuple(categorical), tuple(ignore), transform, rows,
                      tuple(notes))


def config_snippet(path: str, roles: GuessedRoles) -> str:
  """Command-line flags setting the ``data.*`` keys of ``roles``, with the
  reasons as comments, for the user to check and edit."""
  def value(text: str) -> str:
    if text == "\t":
      return "$'\\t'"
    return shlex.quote(text) if text else "''"

  keys = [
      ("data.format", roles.file_format),
      ("data.delimiter", roles.delimiter),
      ("data.header", "true"),
      ("data.label_column", roles.label_column),
      ("data.dense_columns", ",".join(roles.dense_columns)),
      ("data.categorical_columns", ",".join(roles.categorical_columns)),
      ("data.ignore_columns", ",".join(roles.ignore_columns)),
      ("data.num_buckets_per_column", ""),
      ("data.dense_transform", roles.dense_transform),
  ]
  lines = [f"# Guessed from the header and {roles.rows} rows of {path}; "
           "check every role before training.",
           "# Every header column needs one role; per-column buckets: "
           "data.num_buckets_per_column=site_id=100000,device_ip=1000000"]
  lines += [f"# {note}" for note in roles.notes]
  flags = [f"--config.{key}={value(text)}" for key, text in keys]
  lines += [flag + " \\" for flag in flags[:-1]] + [flags[-1]]
  return "\n".join(lines)


def infer_schema_snippet(path: str, *, file_format: str = "",
                         delimiter: str = "", sample_rows: int = 1000) -> str:
  """``config_snippet`` of ``guess_roles`` (recsys-smelu-infer-schema)."""
  return config_snippet(path, guess_roles(
      path, file_format=file_format, delimiter=delimiter,
      sample_rows=sample_rows))
