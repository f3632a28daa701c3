"""Criteo TSV -> TFRecord (tf.Example with the raw values) or packed rows.

``python -m recsys_smelu.data.convert --input=PATTERN --output_dir=D
[--records_per_file=N] [--on_bad_row=error|skip] [--prefix=part] [--gzip]
[--num_dense=13 --num_categorical=26]`` writes ``D/<prefix>-00000.tfrecord``,
``D/<prefix>-00001.tfrecord``, ... holding the input rows in input order
(patterns in order, files sorted, lines in order). Each record stores the
label and the *raw* values (``features.tf_example_feature_spec``): dense as
float32 (missing -> NaN), categorical as the original string, so hashing or
vocabulary lookup still happens in ``raw_to_model_inputs`` and the TFRecord
pipeline yields exactly the batches of the TSV pipeline.

Rows are read and validated by the same TSV reader as training (bad rows stop
the conversion or are skipped and counted), and tf.Example records are encoded
directly in the protobuf wire format with precomputed per-feature prefixes
(no Python object per row and feature, unlike ``tf.train.Example``; a test
checks the bytes parse back to the same values).

``--format=packed`` instead writes ``D/<prefix>-00000.packed``, ... plus
``D/packed_schema.json``: rows as the training pipeline holds them after
parsing (int32 little-endian: label and dense as float32 bits, dense already
``log(1 + max(x, 0))``, categorical already bucket ids), so training on them
(``data.format='packed'``) skips parsing, validation and hashing entirely:
parse once, train many times (the twin evaluator trains 2N models on the same
data). The ids depend on the bucket counts (``--num_buckets``, which must be
the training config's ``data.num_buckets``); the schema file records them and
the pipeline refuses files converted for another schema.

Tabular input (csv, tsv with a header, parquet): ``--format=packed
--schema_file=MODEL_DIR/schema.json`` reads the files by the roles,
vocabularies and dense statistics of that schema and writes it beside the
rows; train on them with ``data.format='packed'`` and
``data.schema_file=D/schema.json``.

The flags are absl flags (``--helpfull`` lists them); the main parses them
and calls ``convert_files``.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from recsys_smelu.data import criteo
from recsys_smelu.data import features as features_lib
from recsys_smelu.data import packed as packed_lib
from recsys_smelu.data import pipeline
from recsys_smelu.data import tabular

_MAX_CACHED_VALUES = 1 << 20  # per feature, encoded categorical entries


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _map_item(key: str, feature: bytes) -> bytes:
  """One entry of ``Features.feature`` (map<string, Feature>, field 1)."""
  return _field(1, _field(1, key.encode()) + _field(2, feature))


class ExampleEncoder:
  """Serializes rows of raw values as tf.Example records, fast.

  Float features (label, dense) become ``FloatList`` with one value: a
  constant prefix + 4 little-endian bytes, laid out for all rows at once with
  numpy. Categorical values become ``BytesList`` with one value; the encoded
  map entry of each distinct value is cached.
  """

  def __init__(self, schema: features_lib.FeatureSchema):
    self.schema = schema
    self.float_names = (schema.label, *schema.dense)
    # float_list is Feature field 2; FloatList.value (packed) is field 1.
    self._float_prefixes = [
        _map_item(name, _field(2, _field(1, b"\0\0\0\0")))[:-4]
        for name in self.float_names]
    self._caches = [{} for _ in schema.categorical]

  def _categorical_item(self, index: int, value: bytes) -> bytes:
    cache = self._caches[index]
    item = cache.get(value)
    if item is None:
      if len(cache) >= _MAX_CACHED_VALUES:
        cache.clear()
      # bytes_list is Feature field 1; BytesList.value is field 1.
      item = _map_item(self.schema.categorical[index].name,
                       _field(1, _field(1, value)))
      cache[value] = item
    return item

  def encode(self, floats: np.ndarray, categorical: Sequence[Sequence[bytes]]
             ) -> list[bytes]:
    """floats: [n, 1 + num_dense] (label first); categorical: per feature n
    values. Returns n serialized tf.Example records."""
    n = floats.shape[0]
    widths = [len(p) + 4 for p in self._float_prefixes]
    block = np.empty((n, sum(widths)), np.uint8)
    as_bytes = np.ascontiguousarray(floats, dtype="<f4").view(np.uint8)
    as_bytes = as_bytes.reshape(n, len(widths), 4)
    offset = 0
    for j, prefix in enumerate(self._float_prefixes):
      block[:, offset:offset + len(prefix)] = np.frombuffer(prefix, np.uint8)
      block[:, offset + len(prefix):offset + widths[j]] = as_bytes[:, j]
      offset += widths[j]
    float_part = block.tobytes()
    width = block.shape[1]
    records = []
    items = [[self._categorical_item(f, v) for v in values]
             for f, values in enumerate(categorical)]
    for r, row_items in enumerate(zip(*items) if items else [()] * n):
      payload = float_part[r * width:(r + 1) * width] + b"".join(row_items)
      records.append(b"\x0a" + _varint(len(payload)) + payload)
    return records


def _write_split(batches, output_dir: str, prefix: str, suffix: str,
                 records_per_file: int, open_file, write) -> tuple[list[str], int]:
  """Writes batches of records, in order, into files of ``records_per_file``.

  Files are ``<output_dir>/<prefix>-00000<suffix>``, ... ``open_file(path)``
  returns a writer with ``close()``; ``write(writer, records)`` writes a slice
  of a batch. Returns (paths written, records written).
  """
  outputs, writer, in_file, total = [], None, 0, 0
  try:
    for records in batches:
      start = 0
      while start < len(records):
        if writer is None or in_file == records_per_file:
          if writer is not None:
            writer.close()
          path = os.path.join(output_dir,
                              f"{prefix}-{len(outputs):05d}{suffix}")
          outputs.append(path)
          writer = open_file(path)
          in_file = 0
        take = min(records_per_file - in_file, len(records) - start)
        write(writer, records[start:start + take])
        in_file += take
        start += take
        total += take
  finally:
    if writer is not None:
      writer.close()
  return outputs, total


def convert(input_pattern: str, output_dir: str, *,
            schema: Optional[features_lib.FeatureSchema] = None,
            records_per_file: int = 1_000_000, on_bad_row: str = "error",
            prefix: str = "part", use_gzip: bool = False,
            bad_rows: Optional[pipeline.BadRowCounter] = None) -> dict:
  """Converts TSV files to TFRecord; returns a summary dict.

  ``schema`` defaults to Criteo's (13 dense, 26 categorical).
  """
  if records_per_file < 1:
    raise ValueError(f"records_per_file must be >= 1, got {records_per_file}")
  schema = schema or features_lib.criteo_schema()
  files = pipeline.expand_patterns(input_pattern)
  bad_rows = bad_rows if bad_rows is not None else pipeline.BadRowCounter()
  dataset = criteo.raw_dataset(files, schema, file_format="tsv",
                               on_bad_row=on_bad_row, bad_rows=bad_rows)
  encoder = ExampleEncoder(schema)
  tf.io.gfile.makedirs(output_dir)
  options = tf.io.TFRecordOptions(compression_type="GZIP" if use_gzip else "")
  suffix = ".tfrecord.gz" if use_gzip else ".tfrecord"

  def encoded():
    for raw in dataset:
      floats = np.stack([raw[name].numpy() for name in encoder.float_names],
                        axis=1)
      categorical = [raw[name].numpy().tolist()
                     for name in schema.categorical_names]
      yield encoder.encode(floats, categorical)

  def write(writer, records):
    for record in records:
      writer.write(record)

  outputs, total = _write_split(
      encoded(), output_dir, prefix, suffix, records_per_file,
      lambda path: tf.io.TFRecordWriter(path, options), write)
  return {"inputs": files, "outputs": outputs, "records": total,
          "skipped_bad_rows": bad_rows.by_reason()}


def _write_packed_split(chunks: tf.data.Dataset, output_dir: str, prefix: str,
                        records_per_file: int) -> tuple[list[str], int]:
  """Writes packed row chunks (int32 [n, row size]) as little-endian
  ``.packed`` files of at most ``records_per_file`` rows."""
  tf.io.gfile.makedirs(output_dir)
  return _write_split(
      (np.ascontiguousarray(chunk, dtype="<i4")
       for chunk in chunks.as_numpy_iterator()),
      output_dir, prefix, ".packed", records_per_file,
      lambda path: tf.io.gfile.GFile(path, "wb"),
      lambda writer, rows: writer.write(rows.tobytes()))


def convert_packed(input_pattern: str, output_dir: str, *,
                   schema: Optional[features_lib.FeatureSchema] = None,
                   records_per_file: int = 1_000_000,
                   on_bad_row: str = "error", prefix: str = "part",
                   bad_rows: Optional[pipeline.BadRowCounter] = None) -> dict:
  """Converts TSV or TFRecord files to packed files; returns a summary dict.

  Input ``.tfrecord``/``.tfrecord.gz`` files are read as TFRecord, others as
  TSV. ``schema`` defaults to Criteo's (13 dense, 26 categorical, 10,000
  buckets each).
  """
  if records_per_file < 1:
    raise ValueError(f"records_per_file must be >= 1, got {records_per_file}")
  schema = schema or features_lib.criteo_schema()
  files = pipeline.expand_patterns(input_pattern)
  is_tfrecord = [".tfrecord" in os.path.basename(f) for f in files]
  if any(is_tfrecord) and not all(is_tfrecord):
    raise ValueError(f"{input_pattern!r} mixes TFRecord and TSV files")
  bad_rows = bad_rows if bad_rows is not None else pipeline.BadRowCounter()
  chunks = criteo.packed_chunks(
      files, schema, file_format="tfrecord" if all(is_tfrecord) else "tsv",
      on_bad_row=on_bad_row, bad_rows=bad_rows)
  outputs, total = _write_packed_split(chunks, output_dir, prefix,
                                       records_per_file)
  schema_file = packed_lib.write_packed_schema(output_dir, schema)
  return {"inputs": files, "outputs": outputs, "schema_file": schema_file,
          "records": total, "skipped_bad_rows": bad_rows.by_reason()}


def convert_tabular_packed(input_pattern: str, output_dir: str,
                           schema: tabular.TabularSchema, *,
                           records_per_file: int = 1_000_000,
                           on_bad_row: str = "error", prefix: str = "part",
                           bad_rows: Optional[pipeline.BadRowCounter] = None
                           ) -> dict:
  """Converts tabular files (csv / tsv with a header / parquet, as
  ``schema`` reads them) to packed files; returns a summary dict.

  Writes ``output_dir/packed_schema.json`` and the tabular ``schema.json``
  (roles, vocabularies, statistics) beside the rows: train on them with
  ``data.format='packed'`` and ``data.schema_file=output_dir/schema.json``.
  """
  if records_per_file < 1:
    raise ValueError(f"records_per_file must be >= 1, got {records_per_file}")
  files = pipeline.expand_patterns(input_pattern)
  bad_rows = bad_rows if bad_rows is not None else pipeline.BadRowCounter()
  if schema.spec.file_format == "parquet":
    from recsys_smelu.data import parquet  # pylint: disable=g-import-not-at-top
    chunks = parquet.packed_chunks(files, schema, on_bad_row=on_bad_row,
                                   bad_rows=bad_rows)
  else:
    tabular.check_headers(files, schema.spec, schema.columns)
    chunks = tabular.packed_chunks(files, schema, on_bad_row=on_bad_row,
                                   bad_rows=bad_rows)
  outputs, total = _write_packed_split(chunks, output_dir, prefix,
                                       records_per_file)
  schema_file = packed_lib.write_packed_schema(output_dir, schema.features)
  tabular_schema_file = tabular.save_schema(
      schema, os.path.join(output_dir, tabular.SCHEMA_FILE))
  return {"inputs": files, "outputs": outputs, "schema_file": schema_file,
          "tabular_schema_file": tabular_schema_file, "records": total,
          "skipped_bad_rows": bad_rows.by_reason()}


def convert_files(input_pattern: str, output_dir: str, *,
                  output_format: str = "tfrecord", num_buckets: int = 10_000,
                  num_dense: int = 13, num_categorical: int = 26,
                  records_per_file: int = 1_000_000, on_bad_row: str = "error",
                  prefix: str = "part", use_gzip: bool = False,
                  schema_file: str = "") -> dict:
  """``convert`` (``output_format='tfrecord'``) or ``convert_packed``
  (``'packed'``) with the Criteo schema of these sizes; what the command line
  runs. With ``schema_file`` (a tabular ``schema.json``, e.g. a training
  run's ``model_dir/schema.json``) the input is tabular files read by its
  roles: ``convert_tabular_packed``. Returns the summary dict."""
  if output_format not in ("tfrecord", "packed"):
    raise ValueError(f"output_format must be 'tfrecord' or 'packed', got "
                     f"{output_format!r}")
  if schema_file:
    if output_format != "packed":
      raise ValueError("--schema_file (tabular input) converts to "
                       "--format=packed only")
    return convert_tabular_packed(
        input_pattern, output_dir, tabular.load_schema(schema_file),
        records_per_file=records_per_file, on_bad_row=on_bad_row,
        prefix=prefix)
  schema = features_lib.criteo_schema(num_buckets=num_buckets,
                                      num_dense=num_dense,
                                      num_categorical=num_categorical)
  if output_format == "packed":
    if use_gzip:
      raise ValueError("--gzip applies to --format=tfrecord only")
    return convert_packed(input_pattern, output_dir, schema=schema,
                          records_per_file=records_per_file,
                          on_bad_row=on_bad_row, prefix=prefix)
  return convert(input_pattern, output_dir, schema=schema,
                 records_per_file=records_per_file, on_bad_row=on_bad_row,
                 prefix=prefix, use_gzip=use_gzip)


# ----------------------------------------------------------------------------
# Command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command-line flags (on ``flag_values``, absl's global by default)."""
  flags.DEFINE_string("input", None, "Input file pattern(s), comma separated; "
                      ".gz is gunzipped.", flag_values=flag_values)
  flags.DEFINE_string("output_dir", None, "Directory to write the files to.",
                      flag_values=flag_values)
  flags.DEFINE_enum("format", "tfrecord", ("tfrecord", "packed"),
                    "tfrecord: tf.Example with the raw values; packed: parsed "
                    "rows for data.format='packed'.", flag_values=flag_values)
  flags.DEFINE_integer("records_per_file", 1_000_000, "Rows per output file.",
                       lower_bound=1, flag_values=flag_values)
  flags.DEFINE_enum("on_bad_row", "error", ("error", "skip"),
                    "Stop at a bad row, or skip and count it.",
                    flag_values=flag_values)
  flags.DEFINE_string("prefix", "part", "Output file name prefix.",
                      flag_values=flag_values)
  flags.DEFINE_bool("gzip", False, "Write GZIP-compressed .tfrecord.gz files "
                    "(--format=tfrecord only).", flag_values=flag_values)
  flags.DEFINE_integer("num_dense", 13, "Integer columns per row.",
                       flag_values=flag_values)
  flags.DEFINE_integer("num_categorical", 26, "Categorical columns per row.",
                       flag_values=flag_values)
  flags.DEFINE_integer("num_buckets", 10_000, "packed: buckets per "
                       "categorical feature; must be the training config's "
                       "data.num_buckets.", flag_values=flag_values)
  flags.DEFINE_string("schema_file", "", "packed: a tabular schema.json "
                      "(e.g. a training run's MODEL_DIR/schema.json): the "
                      "input is csv / tsv-with-header / parquet files read by "
                      "its column roles, vocabularies and statistics "
                      "(--num_* are ignored).", flag_values=flag_values)
  flags.mark_flags_as_required(["input", "output_dir"], flag_values=flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Converts as the parsed flags say and prints the summary as JSON."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flag_values
  try:
    summary = convert_files(
        f.input, f.output_dir, output_format=f.format,
        num_buckets=f.num_buckets, num_dense=f.num_dense,
        num_categorical=f.num_categorical,
        records_per_file=f.records_per_file, on_bad_row=f.on_bad_row,
        prefix=f.prefix, use_gzip=f.gzip, schema_file=f.schema_file)
  except tf.errors.InvalidArgumentError as e:
    bad_row = pipeline.bad_row_error(e)
    if bad_row is None:
      raise
    raise SystemExit(f"error: {bad_row}") from None
  except ValueError as e:  # includes pipeline.DataError
    raise SystemExit(f"error: {e}") from None
  print(json.dumps(summary, indent=2))


def run() -> None:
  """Console script ``recsys-smelu-convert``."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
