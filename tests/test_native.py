"""Native ops: the Criteo line decoder gives the stock ops' verdicts and
values; the embedding Adagrad update gives the float32 reference bit for bit;
the build cache and the auto / required / off switch."""

from __future__ import annotations

import os

import numpy as np
import pytest

from recsys_smelu.data import criteo
from recsys_smelu.data import features
from recsys_smelu import native
import tensorflow as tf

from conftest import require_native_compiler

NUM_DENSE, NUM_CATEGORICAL = 3, 4
MODULI = [1000, 7, 2**62, 1]

LABELS = ["0", "1", "2", "00", "", " 1", "1.0", "-0"]
INTEGERS = ["", "0", "-0", "17", "-17", "0007", "+5", " 12", "12 ", "1.5",
            "1e3", "-", "--1", "0x1f", "16777217", "-33554433",
            "123456789012345678", "1234567890123456789", "9" * 38, "9" * 39,
            "-" + "9" * 38, "1" * 37 + "5"]
CATEGORICALS = ["", "68fd1e64", "a b+c", "x" * 40, "\xff\xfe", "é",
                "with\0nul", "\r", "a\rb"]


@pytest.fixture(scope="module")
def ops():
  require_native_compiler()
  return native.load(required=True)


def _random_lines(n: int, seed: int) -> list[bytes]:
  """Mostly valid rows, some with a bad field or a wrong column count."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(n):
    fields = ([rng.choice(LABELS[:2]) if rng.random() < 0.9
               else rng.choice(LABELS)]
              + list(rng.choice(INTEGERS[:7] if rng.random() < 0.7
                                else INTEGERS, NUM_DENSE))
              + list(rng.choice(CATEGORICALS, NUM_CATEGORICAL)))
    if rng.random() < 0.05:
      fields = fields[:int(rng.integers(0, len(fields)))]
    elif rng.random() < 0.05:
      fields.append(rng.choice(CATEGORICALS))
    lines.append("\t".join(fields).encode("utf-8", "surrogateescape"))
  return lines


def test_verdicts_and_values_equal_stock_ops(ops):
  lines = _random_lines(3000, seed=0) + [b"", b"1", b"\t\t\t\t\t\t\t"]
  label, dense, hashes, valid = native.decode_criteo_rows(
      ops, tf.constant(lines), NUM_DENSE, MODULI)
  want_valid = tf.strings.regex_full_match(
      lines, criteo._row_regex(NUM_DENSE, NUM_CATEGORICAL)).numpy()
  np.testing.assert_array_equal(valid.numpy(), want_valid)
  assert 0.3 < want_valid.mean() < 0.9  # both kinds are well represented

  good = [line for line, ok in zip(lines, want_valid) if ok]
  schema = features.criteo_schema(num_dense=NUM_DENSE,
                                  num_categorical=NUM_CATEGORICAL)
  want_label, want_dense, fields = criteo._decode_valid_lines(
      tf.constant(good), schema)
  np.testing.assert_array_equal(label.numpy()[want_valid], want_label)
  # Bit for bit, NaN (missing) in the same places, -0 kept.
  np.testing.assert_array_equal(dense.numpy()[want_valid].view(np.int32),
                                want_dense.numpy().view(np.int32))
  want_hashes = np.stack(
      [tf.strings.to_hash_bucket_fast(fields[:, 1 + NUM_DENSE + k],
                                      modulus).numpy()
       for k, modulus in enumerate(MODULI)], axis=1)
  np.testing.assert_array_equal(hashes.numpy()[want_valid], want_hashes)
  assert not label.numpy()[~want_valid].any()
  assert not hashes.numpy()[~want_valid].any()


def test_hand_computed_row(ops):
  line = "1\t-0\t\t16777217\ta\t\t\t".encode()
  label, dense, hashes, valid = native.decode_criteo_rows(
      ops, tf.constant([line]), NUM_DENSE, MODULI)
  assert valid.numpy().tolist() == [True] and label.numpy().tolist() == [1.0]
  d = dense.numpy()[0]
  assert d[0] == 0 and np.signbit(d[0]) and np.isnan(d[1])
  assert d[2] == 16777216.0  # 2**24 + 1 rounds to even in float32
  h = hashes.numpy()[0]
  assert h[0] == tf.strings.to_hash_bucket_fast("a", 1000).numpy()
  assert h[3] == 0  # modulus 1


def test_rejects_a_non_vector_and_a_zero_modulus(ops):
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                     match="rank 1|must be a vector"):
    native.decode_criteo_rows(ops, tf.constant([["1"]]), 0, [])
  with pytest.raises(tf.errors.InvalidArgumentError, match="moduli must be > 0"):
    native.decode_criteo_rows(ops, tf.constant(["1\ta"]), 0, [0])


def test_build_is_cached_by_source_and_tensorflow_version(ops):
  del ops  # built already
  path = native.library_path()
  assert os.path.exists(path) and path.startswith(native.cache_dir())
  modified = os.path.getmtime(path)
  assert native.build() == path
  assert os.path.getmtime(path) == modified
  assert tf.__version__ not in path  # the version is in the hash, not the name


def test_build_failure_names_the_compiler(tmp_path, monkeypatch):
  monkeypatch.setenv("RECSYS_SMELU_CACHE_DIR", str(tmp_path))
  monkeypatch.setenv("CXX", "no-such-compiler-xyz")
  with pytest.raises(native.NativeOpsError, match="no-such-compiler-xyz"):
    native.build()
  monkeypatch.setenv("CXX", "false")  # runs, fails
  with pytest.raises(native.NativeOpsError,
                     match="compiling .*criteo_rows.cc .*embedding_adagrad.cc"):
    native.build()
  # No partial library left behind; the failure is recorded.
  assert [name.endswith(".failed") for name in os.listdir(tmp_path)] == [True]


def _fake_compiler(directory) -> str:
  """A ``$CXX`` that logs each compile to ``calls``, prints ``version`` for
  --version, fails while a ``fail`` file exists, else writes its -o file."""
  script = directory / "fake-cxx"
  script.write_text(
      "#!/bin/sh\n"
      "here=$(dirname \"$0\")\n"
      "if [ \"$1\" = --version ]; then cat \"$here/version\"; exit 0; fi\n"
      "echo compile >> \"$here/calls\"\n"
      "if [ -f \"$here/fail\" ]; then echo 'x.cc:1: error: broken' >&2; "
      "exit 1; fi\n"
      "while [ $# -gt 0 ]; do\n"
      "  if [ \"$1\" = -o ]; then echo library > \"$2\"; fi; shift\n"
      "done\n")
  script.chmod(0o755)
  (directory / "version").write_text("fake-cxx 1.0\n")
  return str(script)


def _compiles(directory) -> int:
  calls = directory / "calls"
  return len(calls.read_text().split()) if calls.exists() else 0


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch):
  """(compiler directory, cache directory) with ``$CXX`` the fake compiler."""
  bin_dir, cache = tmp_path / "bin", tmp_path / "cache"
  bin_dir.mkdir()
  monkeypatch.setenv("CXX", _fake_compiler(bin_dir))
  monkeypatch.setenv("RECSYS_SMELU_CACHE_DIR", str(cache))
  monkeypatch.setenv(native.ENV_SWITCH, "auto")
  return bin_dir, cache


def test_failed_build_is_remembered_per_compiler_version(fake_compiler):
  bin_dir, cache = fake_compiler
  (bin_dir / "fail").touch()
  with pytest.raises(native.NativeOpsError, match="error: broken"):
    native.build()
  assert _compiles(bin_dir) == 1
  # Later processes read the record instead of compiling again.
  with pytest.raises(native.NativeOpsError,
                     match="(?s)earlier build .*failed.*python -m "
                     "recsys_smelu.native.*error: broken"):
    native.build()
  assert native.prepare() is not None  # auto: falls back, no compile
  assert _compiles(bin_dir) == 1
  # Another compiler version retries (the record is keyed on it).
  (bin_dir / "version").write_text("fake-cxx 2.0\n")
  with pytest.raises(native.NativeOpsError, match="error: broken"):
    native.build()
  assert _compiles(bin_dir) == 2
  # An explicit retry compiles; success removes the records.
  (bin_dir / "fail").unlink()
  path = native.build(retry=True)
  assert _compiles(bin_dir) == 3
  assert sorted(os.listdir(cache)) == [os.path.basename(path)]


def test_native_main_always_retries(fake_compiler):
  from recsys_smelu.native import __main__ as native_main  # pylint: disable=g-import-not-at-top
  bin_dir, _ = fake_compiler
  (bin_dir / "fail").touch()
  with pytest.raises(native.NativeOpsError):
    native.build()
  assert native_main.main() == 1
  assert native_main.main() == 1
  assert _compiles(bin_dir) == 3


def test_prepare_raises_when_required_and_skips_when_off(fake_compiler,
                                                         monkeypatch):
  bin_dir, cache = fake_compiler
  (bin_dir / "fail").touch()
  monkeypatch.setenv(native.ENV_SWITCH, "0")
  assert native.prepare() is None
  assert _compiles(bin_dir) == 0 and not cache.exists()
  monkeypatch.setenv(native.ENV_SWITCH, "1")
  with pytest.raises(native.NativeOpsError, match="error: broken"):
    native.prepare()
  (bin_dir / "fail").unlink()
  monkeypatch.setenv(native.ENV_SWITCH, "auto")
  assert "earlier build" in native.prepare()  # the record holds: no compile
  assert _compiles(bin_dir) == 1


def test_build_removes_stale_libraries_and_leftover_partials(fake_compiler):
  _, cache = fake_compiler
  cache.mkdir()
  old = {"recsys_smelu_ops-0123456789abcdef.so": "stale",
         "tmpab12cd.so.partial": "stale",
         "recsys_smelu_ops-fedcba9876543210.so.x1.partial": "stale",
         "notes.txt": "kept"}
  new = {"recsys_smelu_ops-0123456789abcdef-cxx0123456789abcdef.failed":
             "stale",
         "recsys_smelu_ops-fedcba9876543210.so": "kept",  # in use elsewhere
         "recsys_smelu_ops-fedcba9876543210.so.x2.partial": "kept"}
  for name in {**old, **new}:
    (cache / name).write_text("x")
  eight_days_ago = os.path.getmtime(cache / "notes.txt") - 8 * 24 * 3600
  for name in old:
    os.utime(cache / name, (eight_days_ago, eight_days_ago))
  path = native.build()
  kept = [name for name, fate in {**old, **new}.items() if fate == "kept"]
  assert sorted(os.listdir(cache)) == sorted(kept + [os.path.basename(path)])


def test_switch_auto_falls_back_required_raises_off_skips(monkeypatch):
  calls = []

  def unavailable():
    calls.append(1)
    return None, "NativeOpsError: no compiler"

  monkeypatch.setattr(native, "_load_library", unavailable)
  monkeypatch.setenv(native.ENV_SWITCH, "auto")
  assert native.load() is None
  monkeypatch.setenv(native.ENV_SWITCH, "1")
  with pytest.raises(native.NativeOpsError, match="no compiler"):
    native.load()
  monkeypatch.setenv(native.ENV_SWITCH, "0")
  assert native.load() is None
  assert native.load(required=False) is None
  assert len(calls) == 2
  monkeypatch.setenv(native.ENV_SWITCH, "yes")
  with pytest.raises(native.NativeOpsError, match="RECSYS_SMELU_NATIVE_OPS"):
    native.load()


# --------------------------------------------------------------------------
# EmbeddingAdagradUpdate


def _adagrad_reference(table, accumulator, indices, gradients, lr, epsilon):
  """The op's rule in numpy float32 (every operation correctly rounded)."""
  table, accumulator = table.copy(), accumulator.copy()
  sums = {}
  for index, row in zip(indices.tolist(), gradients):
    sums[index] = sums.get(index, np.zeros_like(row)) + row
  for index, g in sums.items():
    accumulator[index] = accumulator[index] + g * g
    denominator = np.sqrt(accumulator[index] + np.float32(epsilon))
    table[index] = table[index] + (np.float32(-lr) * g) / denominator
  return table, accumulator


@pytest.mark.parametrize("index_dtype", [tf.int64, tf.int32])
def test_embedding_adagrad_update_equals_float32_reference(ops, index_dtype):
  rng = np.random.default_rng(3)
  shapes = [(50, 4), (7, 3), (1000, 16)]
  tables = [rng.normal(size=s).astype(np.float32) for s in shapes]
  accumulators = [np.full(s, 0.1, np.float32) for s in shapes]
  variables = [tf.Variable(t) for t in tables]
  slots = [tf.Variable(a) for a in accumulators]
  lr, epsilon = 0.05, 1e-7
  initial_table_2, looked_up = tables[2].copy(), []
  for step in range(3):
    # Many duplicates (ids drawn from a few rows), gradients of mixed scale.
    indices = [rng.integers(0, min(s[0], 9 + 500 * step), 64) for s in shapes]
    gradients = [(rng.normal(size=(64, s[1])) * 10.0 ** rng.integers(-4, 2))
                 .astype(np.float32) for s in shapes]
    native.embedding_adagrad_update(
        ops, variables, slots, [tf.constant(i, index_dtype) for i in indices],
        [tf.constant(g) for g in gradients], tf.constant(lr, tf.float32),
        epsilon)
    looked_up.append(indices[2])
    for t in range(len(shapes)):
      tables[t], accumulators[t] = _adagrad_reference(
          tables[t], accumulators[t], indices[t], gradients[t], lr, epsilon)
      np.testing.assert_array_equal(variables[t].numpy(), tables[t])
      np.testing.assert_array_equal(slots[t].numpy(), accumulators[t])
  # Rows never looked up were not written (table 2 has 1000 rows, <= 192 ids).
  touched = np.unique(np.concatenate(looked_up))
  untouched = np.setdiff1d(np.arange(shapes[2][0]), touched)
  assert untouched.size > 500
  np.testing.assert_array_equal(variables[2].numpy()[untouched],
                                initial_table_2[untouched])
  np.testing.assert_array_equal(slots[2].numpy()[untouched], np.float32(0.1))


def test_embedding_adagrad_update_leaves_earlier_dense_reads_alone(ops):
  table = tf.Variable(tf.ones([4, 2]))
  accumulator = tf.Variable(tf.fill([4, 2], 0.1))
  before = table.read_value()  # shares the buffer until the op copies it
  native.embedding_adagrad_update(
      ops, [table], [accumulator], [tf.constant([1, 1], tf.int64)],
      [tf.constant([[1.0, 2.0], [3.0, 4.0]])], tf.constant(1.0), 0.0)
  np.testing.assert_array_equal(before.numpy(), np.ones([4, 2], np.float32))
  expected, _ = _adagrad_reference(
      np.ones([4, 2], np.float32), np.full([4, 2], 0.1, np.float32),
      np.array([1, 1]), np.array([[1, 2], [3, 4]], np.float32), 1.0, 0.0)
  np.testing.assert_array_equal(table.numpy(), expected)


def test_embedding_adagrad_update_rejects_bad_input(ops):
  tables = [tf.Variable(tf.zeros([5, 2])), tf.Variable(tf.zeros([3, 2]))]
  slots = [tf.Variable(tf.fill([5, 2], 0.1)), tf.Variable(tf.fill([3, 2], 0.1))]
  good = tf.constant([0, 1], tf.int64)
  grads = [tf.ones([2, 2]), tf.ones([2, 2])]
  lr = tf.constant(0.1)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="table 1: index 3 is outside \\[0, 3\\)"):
    native.embedding_adagrad_update(
        ops, tables, slots, [good, tf.constant([0, 3], tf.int64)], grads, lr,
        1e-7)
  with pytest.raises(tf.errors.InvalidArgumentError, match="table 0: indices"):
    native.embedding_adagrad_update(
        ops, tables, slots, [good, good], [tf.ones([2, 3]), grads[1]], lr,
        1e-7)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="table 0: table shape"):
    native.embedding_adagrad_update(
        ops, tables[:1], [tf.Variable(tf.zeros([4, 2]))], [good], grads[:1],
        lr, 1e-7)
  with pytest.raises(tf.errors.InvalidArgumentError, match="float32"):
    native.embedding_adagrad_update(
        ops, [tf.Variable(tf.zeros([5, 2], tf.float64))],
        [tf.Variable(tf.zeros([5, 2], tf.float64))], [good], grads[:1], lr,
        1e-7)


# ---------------------------------------------------------------------------
# DecodeDelimitedRows / DecodeDelimitedText (the tabular reader's decoder).
# ---------------------------------------------------------------------------

NUMBERS = ["", "0", "-0", "+0", "1.5", "-2.25", ".5", "5.", "1e5", "1E-05",
           "1e+2", "-1.e3", "1e", "1e123", "e5", ".", "-", "+", "1.5.2",
           "0x10", "inf", "nan", " 1", "1 ", "1,5", "9" * 38, "9" * 39,
           "1" * 20 + ".5", "0." + "0" * 40 + "1", "123456789012345678901",
           "3.4028234663852886e38", "3.4028235677973366e38", "3.5e38",
           "-3.4028234e38", "1e-45", "7e-46", "1e-99", "4.9406564584124654e-324",
           "0.30000000000000004", "2.00000011920928955078125",
           "16777217", "9007199254740993", "1.00000005960464477539062",
           "0000000000000000000000000123.4500000000000000000000000"]
# Raw bytes, one character each (encoded as latin-1): "\xc3\xa9" is é in
# UTF-8; the others are RE2's edge cases of valid and invalid UTF-8.
TEXTS = ["", "a", "a b", "\xc3\xa9", "\xff", "\xc3", "x\x80y", "\xed\xa0\x80",
         "\xe0\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xc0\x80",
         '"q"', '"a,b"', '"say ""x"""', '""', '"', 'a"b', '"a"b', '"a""',
         "\t", "with\0nul"]


def _delimited_lines(n, seed, delimiter):
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(n):
    fields = [rng.choice(["0", "1", "2", '"1"', ""]) if rng.random() < 0.3
              else rng.choice(["0", "1"]),
              *rng.choice(NUMBERS if rng.random() < 0.5 else NUMBERS[:12], 2),
              *rng.choice(TEXTS if rng.random() < 0.5 else TEXTS[:4], 3)]
    if rng.random() < 0.2:  # a quoted dense or label field
      k = int(rng.integers(0, 3))
      fields[k] = '"' + fields[k].replace('"', '""') + '"'
    if rng.random() < 0.05:
      fields = fields[:int(rng.integers(0, len(fields)))]
    elif rng.random() < 0.05:
      fields.append("extra")
    lines.append(delimiter.join(fields).encode("latin-1"))
  return lines


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_delimited_decoder_equals_the_tabular_stock_ops(ops, delimiter):
  from recsys_smelu.data import tabular  # pylint: disable=g-import-not-at-top
  spec = tabular.TabularSpec(
      label_column="label", dense_columns=("a", "b"),
      categorical_columns=("x", "z"), ignore_columns=("y",),
      delimiter=delimiter, num_buckets=1000)
  columns = ("label", "a", "b", "x", "y", "z")
  schema = tabular._schema(spec, columns, {})  # pylint: disable=protected-access
  moduli = [1000, 2**62]
  lines = _delimited_lines(4000, seed=1, delimiter=delimiter)
  label, dense, hashes, valid = native.decode_delimited_rows(
      ops, tf.constant(lines), delimiter=delimiter, num_columns=6,
      label_column=0, dense_columns=[1, 2], categorical_columns=[3, 5],
      moduli=moduli)
  want = tabular._decode_lines(  # pylint: disable=protected-access
      tf.constant(lines), tabular._Layout(schema))  # pylint: disable=protected-access
  ok = want["ok"].numpy()
  np.testing.assert_array_equal(valid.numpy(), ok)
  assert 0.2 < ok.mean() < 0.8
  raw = want["raw"]
  np.testing.assert_array_equal(label.numpy()[ok], raw["label"].numpy()[ok])
  want_dense = np.stack([raw["a"].numpy(), raw["b"].numpy()], 1)[ok]
  np.testing.assert_array_equal(dense.numpy()[ok].view(np.int32),
                                want_dense.view(np.int32))
  for k, (name, modulus) in enumerate(zip(("x", "z"), moduli)):
    np.testing.assert_array_equal(
        hashes.numpy()[ok, k],
        tf.strings.to_hash_bucket_fast(raw[name], modulus).numpy()[ok])
  assert not label.numpy()[~ok].any() and not hashes.numpy()[~ok].any()

  # The same lines in one text, with \n and \r\n line ends.
  text = b"".join(line + (b"\r\n" if i % 2 else b"\n")
                  for i, line in enumerate(lines))
  from_text = native.decode_delimited_text(
      ops, tf.constant(text[:-1]), delimiter=delimiter, num_columns=6,
      label_column=0, dense_columns=[1, 2], categorical_columns=[3, 5],
      moduli=moduli)
  for got, expected in zip(from_text, (label, dense, hashes, valid)):
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_text_lines_are_split_as_the_lines_input(ops):
  """DecodeDelimitedText finds newlines 32 bytes per step, then by memchr in
  the text's last bytes: lines of 0-70 bytes (empty ones, a \r inside, a
  \r\n across a 32-byte step) give the rows of the same lines given one by
  one, one \r before each \n dropped, for texts ending with and without a
  newline and shorter than one step."""
  rng = np.random.default_rng(11)
  alphabet = np.array(list(b"01,ab\r"), dtype=np.uint8)
  lines = []
  for _ in range(600):
    length = int(rng.integers(0, 71))
    body = bytes(rng.choice(alphabet, length)) if length else b""
    lines.append(b"" if rng.random() < 0.1 else b"0," + body)
  columns = dict(delimiter=",", num_columns=2, label_column=0,
                 dense_columns=[], categorical_columns=[1], moduli=[2**31])
  for count in (1, 2, 600):
    for ending in (b"\n", b"\r\n", b""):
      chosen = lines[:count]
      text = b"".join(line + (b"\r\n" if i % 3 == 0 else b"\n")
                      for i, line in enumerate(chosen[:-1]))
      text += chosen[-1] + ending
      # Lines ended by \n (the last one need not be), one trailing \r
      # dropped from each, as the stock readers do.
      want_lines = text.split(b"\n")
      if want_lines[-1] == b"":
        want_lines.pop()
      want_lines = [line[:-1] if line.endswith(b"\r") else line
                    for line in want_lines]
      got = native.decode_delimited_text(ops, tf.constant(text), **columns)
      want = native.decode_delimited_rows(ops, tf.constant(want_lines),
                                          **columns)
      for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy(),
                                      err_msg=f"{count} lines, {ending!r}")


def test_wide_lines_equal_the_tabular_stock_ops(ops):
  """Criteo-wide lines (40 columns, 20-600 bytes), which the decoder scans
  32 bytes at a time: field counts off by one, quotes and non-ASCII bytes
  past the first 32 bytes, and a last line that ends the text (too close to
  its end for a 32-byte load) decode as the stock ops decode them."""
  from recsys_smelu.data import tabular  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(13)
  dense = tuple(f"I{i}" for i in range(1, 14))
  categorical = tuple(f"C{i}" for i in range(1, 27))
  spec = tabular.TabularSpec(label_column="label", dense_columns=dense,
                             categorical_columns=categorical, num_buckets=97)
  columns = ("label",) + dense + categorical
  schema = tabular._schema(spec, columns, {})  # pylint: disable=protected-access
  lines = []
  for _ in range(3000):
    fields = [rng.choice(["0", "1"])]
    fields += [rng.choice(["", "0", "-1", "7", "123", "99999999", "1.5",
                           "1" * int(rng.integers(1, 30))]) for _ in dense]
    fields += ["".join(rng.choice(list("0123456789abcdef"),
                                  int(rng.integers(0, 20))))
               for _ in categorical]
    kind = rng.random()
    if kind < 0.05:
      fields = fields[:-1]
    elif kind < 0.1:
      fields.append("x")
    elif kind < 0.15:
      k = int(rng.integers(20, 40))
      fields[k] = '"' + fields[k] + '"'
    elif kind < 0.2:
      fields[int(rng.integers(20, 40))] += "\xc3\xa9"
    lines.append(",".join(fields).encode("latin-1"))
  moduli = [97] * len(categorical)
  want = tabular._decode_lines(  # pylint: disable=protected-access
      tf.constant(lines), tabular._Layout(schema))  # pylint: disable=protected-access
  ok = want["ok"].numpy()
  assert 0.6 < ok.mean() < 0.95
  for got in (
      native.decode_delimited_rows(
          ops, tf.constant(lines), delimiter=",", num_columns=40,
          label_column=0, dense_columns=range(1, 14),
          categorical_columns=range(14, 40), moduli=moduli),
      native.decode_delimited_text(
          ops, tf.constant(b"\n".join(lines)), delimiter=",", num_columns=40,
          label_column=0, dense_columns=list(range(1, 14)),
          categorical_columns=list(range(14, 40)), moduli=moduli)):
    label, dense_values, hashes, valid = got
    np.testing.assert_array_equal(valid.numpy(), ok)
    raw = want["raw"]
    np.testing.assert_array_equal(label.numpy()[ok], raw["label"].numpy()[ok])
    np.testing.assert_array_equal(
        dense_values.numpy()[ok].view(np.int32),
        np.stack([raw[n].numpy() for n in dense], 1)[ok].view(np.int32))
    np.testing.assert_array_equal(
        hashes.numpy()[ok],
        np.stack([tf.strings.to_hash_bucket_fast(raw[n], 97).numpy()
                  for n in categorical], 1)[ok])


INTEGERS = ([str(i) for i in range(-50, 2000)] +
            [str(v) for v in np.random.default_rng(3).integers(
                -10**15, 10**15, 3000)] +
            ["00012", "-0007", "999999999999999", "-999999999999999",
             "12345678", "99999999", "-9999999", "-1234567", "123456789",
             "1-2", "12-", "--1", "-", "0-", "1+", "+12", "1/2", "1:2",
             "9999999999999999", "12345678901234567", "-"])


@pytest.mark.parametrize("transform", ["log1p_clip0", "none", "standardize"])
def test_packed_rows_equal_the_decoded_rows_transformed_and_packed(
    ops, transform):
  """PackDelimitedRows/Text = DecodeDelimitedRows, then the stock dense
  transform (features.transform_dense_values) and packed.pack_columns, bit
  for bit, on the random lines (quotes, bad rows, every number form) and on
  integers (the decoder's fast path), -0 and subnormals included."""
  from recsys_smelu.data import packed  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  lines = _delimited_lines(3000, seed=2, delimiter=",") + [
      f"1,{a},{b},x,y,z".encode()
      for a, b in zip(INTEGERS, rng.permutation(INTEGERS))]
  mean, std = (0.5, -3.25), (2.0, 0.1)
  schema = features.FeatureSchema(
      dense=("a", "b"), categorical=(
          features.CategoricalFeature("x", 1000, 4),
          features.CategoricalFeature("z", 2**31, 4)),
      dense_transform=transform,
      **(dict(dense_mean=mean, dense_std=std)
         if transform == "standardize" else {}))
  columns = dict(delimiter=",", num_columns=6, label_column=0,
                 dense_columns=[1, 2], categorical_columns=[3, 5],
                 moduli=[1000, 2**31])
  label, dense, hashes, valid = native.decode_delimited_rows(
      ops, tf.constant(lines), **columns)
  want = packed.pack_columns(
      label, features.transform_dense_values(dense, schema),
      tf.cast(hashes, tf.int32)).numpy()
  want[~valid.numpy()] = 0
  stats = (dict(dense_mean=mean, dense_std=std)
           if transform == "standardize" else {})
  rows, got_valid = native.pack_delimited_rows(
      ops, tf.constant(lines), dense_transform=transform, **stats, **columns)
  np.testing.assert_array_equal(got_valid.numpy(), valid.numpy())
  assert 0.2 < valid.numpy().mean() < 0.95
  np.testing.assert_array_equal(rows.numpy(), want)
  text_rows, text_valid = native.pack_delimited_rows(
      ops, tf.constant(b"\n".join(lines)), dense_transform=transform,
      **stats, **columns)
  np.testing.assert_array_equal(text_rows.numpy(), want)
  np.testing.assert_array_equal(text_valid.numpy(), valid.numpy())


def test_short_value_hash_cache_is_exact(ops):
  """Values of 0-8 bytes go through a direct-mapped cache per column
  (ShortValueHashes), values of 0-16 bytes through an inlined Fingerprint64:
  thousands of distinct, colliding values of 0-20 bytes in one call,
  repeated in shuffled order, with longer ones between, still hash exactly
  as tf.strings.to_hash_bucket_fast; 8-byte values ending in a byte below
  8 (which skip the cache: the key holds a shorter value's length there)
  included."""
  rng = np.random.default_rng(11)
  alphabet = np.array(list("0123456789abcdef\x00\x07\x08 "))
  values = sorted({"".join(rng.choice(alphabet, int(rng.integers(0, 21))))
                   for _ in range(6000)})
  # A value of L < 8 bytes and its 8-byte twin padded with \0 and ending
  # in chr(L) have the same bytes where the cache keeps the length.
  values += [v + "\0" * (7 - len(v)) + chr(len(v))
             for v in values[:300] if len(v) < 8]
  column = list(rng.permutation(values * 3))
  other = list(rng.permutation(column))
  lines = [f"1,{a},{b}".encode() for a, b in zip(column, other)]
  label, dense, hashes, valid = native.decode_delimited_text(
      ops, tf.constant(b"\n".join(lines)), delimiter=",", num_columns=3,
      label_column=0, dense_columns=[], categorical_columns=[1, 2],
      moduli=[2**62, 1009])
  del label, dense
  assert valid.numpy().all()
  np.testing.assert_array_equal(
      hashes.numpy()[:, 0], tf.strings.to_hash_bucket_fast(column, 2**62))
  np.testing.assert_array_equal(
      hashes.numpy()[:, 1], tf.strings.to_hash_bucket_fast(other, 1009))


def test_outputs_do_not_depend_on_how_a_call_splits_its_rows(ops):
  """A call of more than 1024 lines decodes ranges of rows on the intra-op
  threads (ForRowRanges in decoded_rows.h), each range with its own
  scratch (hash cache, quote buffer): one call on 6,000 lines (quotes, bad
  rows, repeated short values) gives exactly the rows of calls on slices of
  at most 300 lines, which are never split, for the Decode and Pack ops
  (text and lines) and the Criteo decoder. With one intra-op thread no call
  splits and the test holds trivially; CI's 2 cores split every long
  call."""
  lines = _delimited_lines(6000, seed=5, delimiter=",")
  columns = dict(delimiter=",", num_columns=6, label_column=0,
                 dense_columns=[1, 2], categorical_columns=[3, 5],
                 moduli=[1000, 2**31])
  calls = {
      "decode_lines": lambda chunk: native.decode_delimited_rows(
          ops, tf.constant(chunk), **columns),
      "decode_text": lambda chunk: native.decode_delimited_text(
          ops, tf.constant(b"\n".join(chunk)), **columns),
      "pack_text": lambda chunk: native.pack_delimited_rows(
          ops, tf.constant(b"\n".join(chunk)), dense_transform="log1p_clip0",
          **columns),
  }
  for name, call in calls.items():
    whole = [t.numpy() for t in call(lines)]
    pieces = [[t.numpy() for t in call(lines[i:i + 300])]
              for i in range(0, len(lines), 300)]
    for k, got in enumerate(whole):
      want = np.concatenate([piece[k] for piece in pieces])
      np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8),
                                    err_msg=f"{name} output {k}")
    assert 0.2 < whole[-1].mean() < 0.95, name  # valid and bad rows both
  criteo_lines = _random_lines(6000, seed=6)
  whole = [t.numpy() for t in native.decode_criteo_rows(
      ops, tf.constant(criteo_lines), NUM_DENSE, MODULI)]
  for k, got in enumerate(whole):
    want = np.concatenate([
        native.decode_criteo_rows(ops, tf.constant(criteo_lines[i:i + 300]),
                                  NUM_DENSE, MODULI)[k].numpy()
        for i in range(0, len(criteo_lines), 300)])
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_packed_rows_reject_bad_attributes(ops):
  base = dict(delimiter=",", num_columns=2, label_column=0, dense_columns=[],
              categorical_columns=[1], moduli=[10])
  with pytest.raises(tf.errors.InvalidArgumentError, match="dense_transform"):
    native.pack_delimited_rows(ops, tf.constant(["1,a"]),
                               dense_transform="log", **base)
  with pytest.raises(tf.errors.InvalidArgumentError, match="2\\^31"):
    native.pack_delimited_rows(ops, tf.constant(["1,a"]),
                               dense_transform="none",
                               **{**base, "moduli": [2**31 + 1]})
  with pytest.raises(tf.errors.InvalidArgumentError, match="means and stds"):
    native.pack_delimited_rows(ops, tf.constant(["1,2"]),
                               dense_transform="standardize",
                               **{**base, "dense_columns": [1],
                                  "categorical_columns": [], "moduli": []})


@pytest.mark.parametrize("text", [
    b"", b"a", b"a\n", b"ab\ncd\nef", b"abcdefghij\nk\n", b"\n\n\nx",
    b"a\r\nbb\r\n", b"0123456789abcdefghij" * 3 + b"\nz"])
def test_read_complete_lines_blocks_are_the_stock_readers_chunks(
    ops, tmp_path, text):
  """Blocks 0, 1, ... of every size (then the tail block past the end)
  concatenate to the file, and each is the stock reader's chunk: the lines
  whose newline lies in the block (a line with no newline: after all
  blocks)."""
  path = str(tmp_path / "f.txt")
  with open(path, "wb") as f:
    f.write(text)
  for length in (1, 2, 3, 5, 16, 64):
    blocks = [native.read_complete_lines(ops, path, k * length, length
                                         ).numpy()
              for k in range(-(-len(text) // length) + 1)]
    assert b"".join(blocks) == text, length
    # Stock rule: carry + block, cut after its last newline.
    carry, want = b"", []
    for k in range(-(-len(text) // length)):
      joined = carry + text[k * length:(k + 1) * length]
      cut = joined.rfind(b"\n") + 1
      want.append(joined[:cut])
      carry = joined[cut:]
    want.append(carry)
    assert blocks == want, length
  with pytest.raises(tf.errors.NotFoundError, match="missing"):
    native.read_complete_lines(ops, str(tmp_path / "missing"), 0, 4)


def test_delimited_decoder_rejects_bad_attributes(ops):
  base = dict(delimiter=",", num_columns=2, label_column=0, dense_columns=[],
              categorical_columns=[1], moduli=[10])
  for change, match in ((dict(delimiter='"'), "delimiter"),
                        (dict(moduli=[0]), "moduli must be > 0"),
                        (dict(categorical_columns=[0]), "two roles"),
                        (dict(categorical_columns=[5]), "outside")):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
      native.decode_delimited_rows(ops, tf.constant(["1,a"]),
                                   **{**base, **change})
