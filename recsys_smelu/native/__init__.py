"""Native (C++) TensorFlow CPU ops, compiled on first use.

Hot spots of CPU training where stock ops cost several times the work
(measured in docs/benchmarks.md):

* ``DecodeCriteoRows`` (``criteo_rows.cc``), input pipeline: the Criteo TSV
  path takes several stock ops per row (RE2 row check, field split,
  ``decode_csv``, hashing), each a pass over the data. The op checks, decodes
  and hashes a line in one pass, with exactly the same results (tests compare
  it with the stock ops).
* ``DecodeDelimitedRows`` (``tabular_rows.cc``), input pipeline: the same for
  CSV/TSV files with a header and named column roles (``data.tabular``): any
  delimiter, RFC 4180 quotes, dense values that are empty, negative or
  fractional, ignored columns; it keeps exactly the lines the stock ops keep,
  with the same values and hashes (tests compare them). ``ReadCompleteLines``
  reads a plain file's blocks of whole lines for it, each block on its own,
  so blocks are read and decoded in parallel; ``PackDelimitedRows`` /
  ``PackDelimitedText`` decode the same way into packed rows, the dense
  transform applied (hashed columns only), so no stock op touches a row
  before batching.
* ``EmbeddingAdagradUpdate`` (``embedding_adagrad.cc``), training: Keras
  Adagrad spends about a dozen ops per embedding table and step (unique,
  segment sum, two scatters, a gather, element-wise ops); the op updates all
  tables in one pass with the rows prefetched
  (``models.embedding_optimizers``).
* ``SmeluForward`` / ``SmeluBackward`` (``smelu.cc``), training: SmeLU with a
  constant beta in one pass over memory each, bit-identical to the stock-op
  expression (``activations.smelu``); ReLU is fused into the matmul, and
  SmeLU's XLA-fused kernels pay an XLA launch per call, which is visible at
  CTR batch sizes.

All are CPU-only. The training ops are used only in graphs not compiled by
XLA, on CPU (see ``activations.smelu`` and ``FusedEmbeddingAdagrad`` for the
exact conditions); SavedModels are exported with stock ops, and XLA, GPU and
TPU use the stock ops too.

Build: ``$CXX`` (default ``c++``) compiles the sources against the installed
TensorFlow's headers and library (``tf.sysconfig``) once, into
a cache directory: ``$RECSYS_SMELU_CACHE_DIR``, else
``$XDG_CACHE_HOME/recsys_smelu``, else ``~/.cache/recsys_smelu``. The file name
carries a hash of the source, the TensorFlow version and the flags (the
cache key), so an upgrade rebuilds; a successful build deletes our libraries
of other cache keys unused for a week and leftover ``.partial`` files of
interrupted builds (``remove_stale_files``).
A failed build is remembered in the cache (a ``.failed`` file keyed on the
cache key and the compiler's path and version), so later processes fall back
at once instead of compiling again; a new compiler or source retries.
``python -m recsys_smelu.native`` builds it ahead of time and always retries
(``scripts/_venv.sh`` and the Docker images run it).

``RECSYS_SMELU_NATIVE_OPS`` chooses:

* ``auto`` (default): use the native ops when they build and load; otherwise
  log one warning with the reason and use the stock-op paths (slower; the
  decoder's and SmeLU's results are identical, the Adagrad update's agree to
  float32 rounding, see ``embedding_adagrad_update``).
* ``1``: require it; ``NativeOpsError`` when it cannot be built.
* ``0``: never build or use it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Optional, Sequence

from absl import logging

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_FILES = tuple(os.path.join(_HERE, name)
                     for name in ("criteo_rows.cc", "embedding_adagrad.cc",
                                  "smelu.cc", "tabular_rows.cc"))
HEADER_FILES = (os.path.join(_HERE, "decoded_rows.h"),)
ENV_SWITCH = "RECSYS_SMELU_NATIVE_OPS"
_SWITCH_VALUES = ("auto", "1", "0")
# -ffp-contract=off: no fused multiply-adds, so the float arithmetic is the
# rounding the sources spell out, on every compiler and CPU.
# -fno-trapping-math: lets -O3 vectorize loops with float comparisons (GCC
# otherwise treats them as branches that may raise FP exceptions); values do
# not change, only the FP exception flags, which nothing reads.
_CXX_FLAGS = ("-O3", "-shared", "-fPIC", "-ffp-contract=off",
              "-fno-trapping-math", "-Wno-deprecated-declarations")
# TensorFlow's x86-64 wheels require AVX, so the ops may use it too.
_ARCH_FLAGS = {"x86_64": ("-mavx",), "amd64": ("-mavx",)}
_MAX_COMPILER_OUTPUT = 4000
_LIBRARY_PREFIX = "recsys_smelu_ops-"
# A .partial file this old belongs to a build that was interrupted (a build
# takes well under a minute); younger ones may be another process's build.
_STALE_PARTIAL_SECONDS = 3600
_STALE_LIBRARY_SECONDS = 7 * 24 * 3600


class NativeOpsError(RuntimeError):
  """The native ops were required but could not be built or loaded."""


def mode() -> str:
  """``RECSYS_SMELU_NATIVE_OPS``: 'auto', '1' or '0' (see module docstring)."""
  value = os.environ.get(ENV_SWITCH, "auto").strip().lower() or "auto"
  if value not in _SWITCH_VALUES:
    raise NativeOpsError(f"{ENV_SWITCH} must be one of "
                         f"{', '.join(_SWITCH_VALUES)}, got {value!r}")
  return value


def cache_dir() -> str:
  """Where built libraries are kept (see module docstring)."""
  explicit = os.environ.get("RECSYS_SMELU_CACHE_DIR")
  if explicit:
    return explicit
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "recsys_smelu")


def _compile_command(output: str) -> list[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  include = tf.sysconfig.get_include()
  farmhash = os.path.join(include, "external", "farmhash_archive", "src")
  return [*shlex.split(os.environ.get("CXX", "c++")), *_CXX_FLAGS,
          *_ARCH_FLAGS.get(platform.machine().lower(), ()),
          *SOURCE_FILES, "-o", output, f"-I{farmhash}",
          *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def _cache_key() -> str:
  """Hash of the sources, the TensorFlow version and the compile command."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  key = hashlib.sha256()
  for source_file in SOURCE_FILES + HEADER_FILES:
    with open(source_file, "rb") as source:
      key.update(source.read())
  key.update(tf.__version__.encode())
  key.update(" ".join(_compile_command("")).encode())
  return key.hexdigest()[:16]


def library_path() -> str:
  """The cached library's path for this source, TensorFlow and flags."""
  return os.path.join(cache_dir(), f"{_LIBRARY_PREFIX}{_cache_key()}.so")


def _compiler_identity() -> Optional[tuple[str, str]]:
  """(resolved path, ``--version`` output) of ``$CXX``; None when not found."""
  command = shlex.split(os.environ.get("CXX", "c++")) or ["c++"]
  path = shutil.which(command[0])
  if path is None:
    return None
  try:
    result = subprocess.run([path, *command[1:], "--version"],
                            capture_output=True, text=True, check=False,
                            timeout=60)
    version = result.stdout.strip() or f"exit status {result.returncode}"
  except (OSError, subprocess.TimeoutExpired) as error:
    version = f"{type(error).__name__}: {error}"
  return os.path.realpath(path), version


def failure_record_path(compiler: tuple[str, str]) -> str:
  """Where a failed build with ``compiler`` is remembered for this key."""
  digest = hashlib.sha256("\0".join(compiler).encode()).hexdigest()[:16]
  return library_path()[:-len(".so")] + f"-cxx{digest}.failed"


def build(retry: bool = False) -> str:
  """Compiles the library into the cache unless it is there; returns its path.

  Concurrent builds (several worker processes) are safe: each compiles to a
  temporary file and renames it into place. Raises ``NativeOpsError`` with
  the compiler's output when compiling fails, and records the failure, so
  that later calls with the same cache key and compiler raise at once
  without compiling; ``retry=True`` compiles anyway.
  """
  path = library_path()
  if os.path.exists(path):
    return path
  compiler = _compiler_identity()
  if compiler is None:  # nothing to run: as quick as reading a record
    name = (shlex.split(os.environ.get("CXX", "c++")) or ["c++"])[0]
    raise NativeOpsError(f"cannot run the C++ compiler {name!r} "
                         "(not found; set CXX to one)")
  record = failure_record_path(compiler)
  if not retry and os.path.exists(record):
    with open(record) as f:
      reason = f.read()
    raise NativeOpsError(
        f"an earlier build with this compiler failed (recorded in {record}; "
        f"`python -m recsys_smelu.native` retries):\n{reason}")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handle, partial = tempfile.mkstemp(
      prefix=os.path.basename(path) + ".", suffix=".partial",
      dir=os.path.dirname(path))
  os.close(handle)
  command = _compile_command(partial)
  try:
    result = subprocess.run(command, capture_output=True, text=True,
                            check=False)
  except OSError as error:  # the compiler vanished or cannot execute
    os.unlink(partial)
    reason = (f"cannot run the C++ compiler {command[0]!r} (set CXX to one): "
              f"{error}")
    _write_atomically(record, reason)
    raise NativeOpsError(reason) from error
  if result.returncode != 0:
    os.unlink(partial)
    reason = (f"compiling {' '.join(SOURCE_FILES)} failed (exit "
              f"{result.returncode}):\n{shlex.join(command)}\n"
              f"{_compiler_errors(result.stderr)}")
    _write_atomically(record, reason)
    raise NativeOpsError(reason)
  os.replace(partial, path)
  remove_stale_files(keep=path)
  return path


def _write_atomically(path: str, text: str) -> None:
  """Best effort: a cache that cannot take the record only costs a retry."""
  try:
    handle, partial = tempfile.mkstemp(prefix=os.path.basename(path) + ".",
                                       suffix=".partial",
                                       dir=os.path.dirname(path))
    with os.fdopen(handle, "w") as f:
      f.write(text)
    os.replace(partial, path)
  except OSError as error:
    logging.warning("Cannot record the failed native build in %s: %s", path,
                    error)


def remove_stale_files(keep: str) -> list[str]:
  """Deletes stale files of ours in the cache; returns them.

  Stale: failure records (``keep`` has just been built; other cache keys
  retry once); libraries of other cache keys (an older source or TensorFlow)
  not loaded for a week (another checkout or virtual environment sharing the
  cache keeps its library while in use: loading touches it); ``.partial``
  files of builds interrupted over an hour ago.
  """
  directory = os.path.dirname(keep)
  now = time.time()
  removed = []
  for name in os.listdir(directory):
    candidate = os.path.join(directory, name)
    ours = name.startswith(_LIBRARY_PREFIX) or name.endswith(".so.partial")
    if not ours or candidate == keep:
      continue
    max_age = {".partial": _STALE_PARTIAL_SECONDS,
               ".so": _STALE_LIBRARY_SECONDS, ".failed": 0}.get(
                   os.path.splitext(name)[1])
    try:
      if max_age is None or now - os.path.getmtime(candidate) < max_age:
        continue
      os.unlink(candidate)
      removed.append(candidate)
    except OSError:  # another process removed it first
      pass
  return removed


def _compiler_errors(stderr: str) -> str:
  """The compiler's error lines (TF's headers add many warnings), else its
  output's end."""
  errors = "\n".join(line for line in stderr.splitlines() if "error" in line)
  return (errors or stderr)[-_MAX_COMPILER_OUTPUT:]


_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _load_library():
  """(module, None) or (None, reason): built and loaded once per process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    path = build()
    try:
      os.utime(path)  # in use: not stale for other checkouts' builds
    except OSError:
      pass
    return tf.load_op_library(path), None
  except (NativeOpsError, tf.errors.NotFoundError, OSError) as error:
    return None, f"{type(error).__name__}: {error}"


def load(required: Optional[bool] = None):
  """The loaded op module, or None when the stock-op path is to be used.

  ``required``: None follows ``RECSYS_SMELU_NATIVE_OPS``; True raises
  ``NativeOpsError`` when the library cannot be built or loaded; False
  returns None without building.
  """
  if required is None:
    switch = mode()
    if switch == "0":
      return None
    required = switch == "1"
  elif not required:
    return None
  with _lock:
    module, reason = _load_library()
  if module is None:
    if required:
      raise NativeOpsError(f"native ops unavailable: {reason}")
    _warn_once(reason)
  return module


def prepare() -> Optional[str]:
  """Builds the library for worker processes, as ``RECSYS_SMELU_NATIVE_OPS``
  says, before they start: they then load it from the cache, or read the
  failure record, instead of all compiling at once. Returns the reason when
  the stock ops will be used (None when the native ops build or are off);
  raises ``NativeOpsError`` when they are required and cannot be built."""
  switch = mode()
  if switch == "0":
    return None
  try:
    build()
  except NativeOpsError as error:
    if switch == "1":
      raise
    _warn_once(f"{type(error).__name__}: {error}")
    return str(error)
  return None


@functools.lru_cache(maxsize=None)
def _warn_once(reason: str) -> None:
  logging.warning(
      "Native ops unavailable; using the stock TensorFlow ops (slower). Set "
      "%s=0 to silence this. Reason: %s", ENV_SWITCH,
      reason)


def decode_criteo_rows(module, lines, num_dense: int, moduli: Sequence[int]):
  """Checks and decodes Criteo TSV lines in one pass (``criteo_rows.cc``).

  Returns ``(label float32 [n], dense float32 [n, num_dense] with NaN =
  missing, hashes int64 [n, len(moduli)], valid bool [n])``: hashes[:, k] =
  ``tf.strings.to_hash_bucket_fast(field, moduli[k])``. A line is valid when it
  has ``1 + num_dense + len(moduli)`` tab-separated fields, the label is 0 or
  1 and each integer field is empty or ``-?[0-9]{1,38}``; invalid lines have
  zeros in their rows.
  """
  return module.decode_criteo_rows(lines, num_dense=num_dense,
                                   moduli=list(moduli))


def decode_delimited_rows(module, lines, *, delimiter: str, num_columns: int,
                          label_column: int, dense_columns: Sequence[int],
                          categorical_columns: Sequence[int],
                          moduli: Sequence[int]):
  """Checks, splits and decodes delimited text lines in one pass
  (``tabular_rows.cc``).

  Columns are file positions: ``label_column``, ``dense_columns`` (output
  order), ``categorical_columns`` (output order, hashed modulo ``moduli``);
  the others are only checked. Returns ``(label float32 [n], dense float32
  [n, len(dense_columns)] with NaN = missing, hashes int64 [n,
  len(categorical_columns)], valid bool [n])``: hashes[:, k] =
  ``tf.strings.to_hash_bucket_fast(field, moduli[k])`` of the unquoted field.
  A line is valid exactly when ``data.tabular``'s stock ops keep it (RE2's
  UTF-8, ``num_columns`` RFC 4180 fields, a 0/1 label, dense fields empty or
  numbers within float32); invalid lines have zeros in their rows.
  """
  return tuple(module.decode_delimited_rows(
      lines, delimiter=delimiter, num_columns=num_columns,
      label_column=label_column, dense_columns=list(dense_columns),
      categorical_columns=list(categorical_columns), moduli=list(moduli)))


def decode_delimited_text(module, text, **kwargs):
  """``decode_delimited_rows`` of the lines of ``text`` (a scalar: lines each
  ended by ``\n``, the last one need not be; one ``\r`` before a line end is
  dropped, as the plain-text reader does), without a string per line."""
  kwargs = {k: list(v) if isinstance(v, (list, tuple)) else v
            for k, v in kwargs.items()}
  return tuple(module.decode_delimited_text(text, **kwargs))


def pack_delimited_rows(module, lines, *, dense_transform: str,
                        dense_mean: Sequence[float] = (),
                        dense_std: Sequence[float] = (), **columns):
  """``decode_delimited_rows`` (same column arguments) as packed rows:
  ``(rows int32 [n, 1 + len(dense_columns) + len(moduli)], valid bool
  [n])`` in ``data.packed.pack_columns``' layout, the bucket ids being the
  hashes (every modulus <= 2**31) and the dense values transformed by
  ``dense_transform`` ('log1p_clip0', 'none', 'standardize' with
  ``dense_mean``/``dense_std``) as ``features.transform_dense_values`` does;
  invalid lines are rows of zeros. ``lines`` is a vector of lines, or a
  scalar text of lines (as ``decode_delimited_text`` takes it)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  lines = tf.convert_to_tensor(lines, tf.string)
  columns = {k: list(v) if isinstance(v, (list, tuple)) else v
             for k, v in columns.items()}
  op = (module.pack_delimited_text if lines.shape.rank == 0
        else module.pack_delimited_rows)
  return tuple(op(lines, tf.constant(list(dense_mean), tf.float64),
                  tf.constant(list(dense_std), tf.float64),
                  dense_transform=dense_transform, **columns))


def read_complete_lines(module, filename, offset, length):
  """The text of the lines of ``filename`` whose ``\n`` lies in bytes
  [offset, offset + length); for offset >= the file size, the last line
  when it has no ``\n``, else "" (``ReadCompleteLines``)."""
  return module.read_complete_lines(filename, offset, length)


def building_xla_graph() -> bool:
  """Whether ops built now go into an XLA computation (``jit_compile``, TPU),
  where custom ops cannot compile."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from recsys_smelu.compat import control_flow_util  # pylint: disable=g-import-not-at-top
  return control_flow_util.GraphOrParentsInXlaContext(
      tf.compat.v1.get_default_graph())


def embedding_adagrad_update(module, tables: Sequence, accumulators: Sequence,
                             indices: Sequence, gradients: Sequence,
                             learning_rate, epsilon: float):
  """Sparse Adagrad step of several embedding tables, in place, one op.

  For table t and its gradient rows ``gradients[t][i]`` at rows
  ``indices[t][i]``: duplicate rows are summed first (in order of
  appearance, as ``tf.math.unsorted_segment_sum``), then for each distinct
  row r with summed gradient G::

    acc[r]   += G * G
    table[r] += (-learning_rate * G) / sqrt(acc[r] + epsilon)

  in float32, each operation rounded as written. That is Keras Adagrad's
  sparse rule; Keras' own graph differs only in that Grappler rewrites the
  division by a square root into a multiplication by ``rsqrt``, so the two
  agree to about one float32 rounding per step. Tables are updated in
  parallel on the intra-op thread pool, each under its variables' locks.

  ``tables``/``accumulators``: float32 resource variables [rows, dim] on CPU;
  ``indices``: [n_t], all int32 or all int64; ``gradients``: float32
  [n_t, dim]. An index
  outside [0, rows) raises ``InvalidArgumentError`` naming the table.
  """
  return module.embedding_adagrad_update(
      tables=[t.handle for t in tables],
      accumulators=[a.handle for a in accumulators],
      indices=list(indices), gradients=list(gradients),
      learning_rate=learning_rate, epsilon=float(epsilon))


def smelu_forward(module, x, beta: float):
  """``max(x, beta h^2)``, h = clip((x + beta) / (beta + beta), 0, 1); float32."""
  return module.smelu_forward(x, beta=float(beta))


def smelu_backward(module, x, dy, beta: float):
  """``dy * clip((x + beta) / (beta + beta), 0, 1)``; float32."""
  return module.smelu_backward(x, dy, beta=float(beta))
