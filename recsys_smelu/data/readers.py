"""Readers: Criteo-format files as numbered chunks of lines, records or rows.

(``read_text`` serves parsers that take either lines or one text of many:
plain files as blocks of complete lines, without a string per line, read by
a native op.)

``read_chunks(file_format)`` maps ``(filename, size)`` to a dataset of
``(filename, first line/record/row number, chunk)``, numbers from 1:

* TSV (plain or gzip): chunks of up to ``CHUNK_ROWS`` lines. Plain text is
  read in blocks of ``BLOCK_BYTES`` split by one op (``_plain_text_chunks``),
  which avoids tf.data's per-line cost of ``TextLineDataset``; gzip goes line
  by line.
* TFRecord (plain or gzip): chunks of up to ``CHUNK_ROWS`` serialized records.
* packed: blocks of ``CHUNK_ROWS`` int32 rows of a given width, one
  ``decode_raw`` each (the layout is ``recsys_smelu.data.packed``'s).

Nothing here parses a row; the parsers in ``recsys_smelu.data.criteo`` do.
"""

from __future__ import annotations

import tensorflow as tf

CHUNK_ROWS = 4096  # lines (gzip) or records (TFRecord) parsed together
BLOCK_BYTES = 1 << 20  # plain text is read in blocks of this size
READ_BUFFER_BYTES = 8 << 20


def file_size(path: str, file_format: str) -> int:
  """Byte size for the block readers (plain text, packed); else -1."""
  if file_format == "tfrecord" or path.endswith(".gz"):
    return -1
  return tf.io.gfile.stat(path).length


def count_rows(files, file_format: str, width: int = 0) -> int:
  """Lines (TSV), records (TFRecord) or rows of ``width`` int32 values
  (packed) in ``files``, counted as ``read_chunks`` reads them (bad rows
  included)."""
  if file_format == "packed":
    return sum(tf.io.gfile.stat(f).length // (4 * width) for f in files)
  sizes = [file_size(path, file_format) for path in files]
  chunks = tf.data.Dataset.from_tensor_slices(
      (tf.constant(list(files), tf.string), tf.constant(sizes, tf.int64))
  ).interleave(read_chunks(file_format, width), cycle_length=1)
  return int(chunks.reduce(
      tf.constant(0, tf.int64),
      lambda total, chunk: total + tf.size(chunk[2], out_type=tf.int64)))


_FILE_ROWS_CACHE: dict[tuple, int] = {}


def count_file_rows(path: str, file_format: str, width: int = 0) -> int:
  """``count_rows([path], ...)``, remembered for the process while the file's
  size and modification time stay the same (row ranges and validation
  splits need every file's count, for each split)."""
  stat = tf.io.gfile.stat(path)
  key = (path, file_format, width, stat.length, stat.mtime_nsec)
  if key not in _FILE_ROWS_CACHE:
    _FILE_ROWS_CACHE[key] = count_rows([path], file_format, width)
  return _FILE_ROWS_CACHE[key]


def _file_blocks(filename, size, block_bytes: int) -> tf.data.Dataset:
  """A file's bytes as blocks of ``block_bytes``; the last block is shorter
  (``FixedLengthRecordDataset`` alone would drop it)."""
  tail = size % block_bytes
  blocks = tf.data.FixedLengthRecordDataset(
      filename, block_bytes, footer_bytes=tail, buffer_size=block_bytes)
  last_block = tf.data.FixedLengthRecordDataset(
      filename, tf.maximum(tail, 1), header_bytes=size - tail)
  return blocks.concatenate(last_block)


def _blocks_then_end(filename, size) -> tf.data.Dataset:
  """(block of ``BLOCK_BYTES``, False) of a file, then ("", True): the
  pieces the text readers carry a cut line over."""
  pieces = _file_blocks(filename, size, BLOCK_BYTES).map(lambda b: (b, False))
  return pieces.concatenate(tf.data.Dataset.from_tensors(
      (tf.constant(""), True)))


def _plain_text_chunks(filename, size):
  """Lines of an uncompressed text file, read in blocks of ``BLOCK_BYTES``.

  Reading fixed-size blocks and splitting them with one op avoids tf.data's
  per-line cost of ``TextLineDataset`` (docs/benchmarks.md). A line cut by a
  block boundary is carried over (``scan``); the last line needs no newline;
  ``\r\n`` endings lose the ``\r`` as with ``TextLineDataset``.
  """
  pieces = _blocks_then_end(filename, size)

  def split_lines(state, piece):
    carry, next_line = state
    block, is_last = piece
    text = tf.strings.join([carry, block])
    parts = tf.strings.split(text, "\n")
    num_complete = tf.size(parts, out_type=tf.int64) - 1
    # On the last piece the carry is the final line if it is not empty.
    num_lines = tf.where(is_last, tf.cast(tf.strings.length(parts[-1]) > 0,
                                          tf.int64), num_complete)
    lines = parts[:num_lines]
    has_carriage_return = tf.size(tf.strings.split(text, "\r")) > 1
    lines = tf.cond(
        has_carriage_return,
        lambda: tf.strings.regex_replace(lines, "\r$", ""), lambda: lines)
    new_state = (tf.where(is_last, "", parts[-1]), next_line + num_lines)
    return new_state, (next_line, lines)

  initial = (tf.constant(""), tf.constant(1, tf.int64))
  return pieces.scan(initial, split_lines)


def read_text(read_complete_lines, decode):
  """(filename, size) -> dataset of (filename, first line number, lines [k],
  text, decoded), numbers from 1, for parsers that take either lines or one
  text of many: gzip files as ``CHUNK_ROWS`` lines (text ""), plain files
  as blocks of complete lines in one string, no string per line (lines
  empty). ``read_complete_lines(filename, offset, length)`` (the native
  ``ReadCompleteLines``) gives the lines whose newline lies in each
  ``BLOCK_BYTES`` block, then the last line if it has none: the chunks of
  ``_plain_text_chunks``, but each read on its own, with no carry-over.

  ``decode(lines, text)`` -> (decoded, number of lines) runs on each chunk
  as it is read, in parallel and in order (reading and decoding a block are
  one step; the line numbers follow from the counts). Chunks without lines
  are dropped."""

  def read(filename, size):
    is_gzip = tf.strings.regex_full_match(filename, r".*\.gz")
    no_lines = tf.zeros([0], tf.string)
    lines = tf.data.TextLineDataset(filename, compression_type="GZIP",
                                    buffer_size=READ_BUFFER_BYTES)
    gzip_chunks = lines.batch(CHUNK_ROWS).map(
        lambda chunk: (chunk, tf.constant("")))
    # Blocks 0 .. ceil(size / BLOCK_BYTES) - 1, then the unended last line.
    size = tf.maximum(size, 0)
    num_blocks = tf.where(is_gzip, tf.constant(0, tf.int64),
                          (size + BLOCK_BYTES - 1) // BLOCK_BYTES + 1)
    plain_chunks = tf.data.Dataset.range(num_blocks).map(
        lambda k: (no_lines, read_complete_lines(
            filename, k * BLOCK_BYTES, tf.constant(BLOCK_BYTES, tf.int64))))
    everything, nothing = tf.constant(-1, tf.int64), tf.constant(0, tf.int64)
    chunks = gzip_chunks.take(tf.where(is_gzip, everything, nothing)
                              ).concatenate(plain_chunks)

    def decoded(chunk, text):
      result, count = decode(chunk, text)
      return chunk, text, result, count

    chunks = chunks.map(decoded, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True).filter(
                            lambda chunk, text, result, count: count > 0)

    def number(next_line, element):
      chunk, text, result, count = element
      return next_line + count, (filename, next_line, chunk, text, result)

    return chunks.scan(tf.constant(1, tf.int64), number)

  return read


def _packed_file_chunks(filename, size, width: int):
  """(first row number, rows [n, width] int32) of a packed file, in blocks of
  ``CHUNK_ROWS`` rows (the last one shorter)."""
  rows = _file_blocks(filename, size, 4 * width * CHUNK_ROWS).map(
      lambda block: tf.reshape(tf.io.decode_raw(block, tf.int32), [-1, width]))
  return tf.data.Dataset.zip((tf.data.Dataset.range(1, 2**62, CHUNK_ROWS),
                              rows))


def read_chunks(file_format: str, width: int = 0):
  """(filename, size) -> dataset of (filename, first line/record, chunk)."""

  def read(filename, size):
    if file_format == "packed":
      return _packed_file_chunks(filename, size, width).map(
          lambda first, chunk: (filename, first, chunk))
    is_gzip = tf.strings.regex_full_match(filename, r".*\.gz")
    compression = tf.where(is_gzip, "GZIP", "")
    if file_format == "tsv":
      lines = tf.data.TextLineDataset(filename, compression_type=compression,
                                      buffer_size=READ_BUFFER_BYTES)
      numbered = tf.data.Dataset.zip((
          tf.data.Dataset.range(1, 2**62, CHUNK_ROWS),
          lines.batch(CHUNK_ROWS)))
      # gzip: line by line; plain text: fast block reader (never both).
      everything, nothing = tf.constant(-1, tf.int64), tf.constant(0, tf.int64)
      numbered = numbered.take(tf.where(is_gzip, everything, nothing)).concatenate(
          _plain_text_chunks(filename, tf.maximum(size, 0)).take(
              tf.where(is_gzip, nothing, everything)))
    else:
      records = tf.data.TFRecordDataset(filename, compression_type=compression,
                                        buffer_size=READ_BUFFER_BYTES)
      numbered = tf.data.Dataset.zip((
          tf.data.Dataset.range(1, 2**62, CHUNK_ROWS),
          records.batch(CHUNK_ROWS)))
    numbered = numbered.filter(lambda first, chunk: tf.size(chunk) > 0)
    return numbered.map(lambda first, chunk: (filename, first, chunk))

  return read
