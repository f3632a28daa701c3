"""Synthetic Criteo-format data from a fixed random teacher with a known true CTR.

``generate(output_dir, num_train, num_eval, seed=...)`` (or ``python -m
recsys_smelu.data.synthetic --output_dir=D --num_train=N --num_eval=M
--seed=S [--num_files=K] [--gzip] [--base_ctr=0.25]``) writes

* ``D/train-0000i-of-0000K.tsv[.gz]`` and ``D/eval-0000i-of-0000K.tsv[.gz]``:
  Criteo Display Advertising rows (label, I1..I<num_dense>,
  C1..C<num_categorical>, tab separated, empty = missing). The eval rows are in
  file-name order, then line order.
* ``D/eval_truth.txt``: the true click probability of each eval row, one per
  line, in that order (``config.data.eval_truth`` points here).
* ``D/truth.json``: the generator parameters, the mean true CTR, and on the
  eval split the Bayes-optimal log loss and exact AUC (scoring every row with
  its true probability), the label mean and the log loss of predicting that
  constant, so a model's accuracy can be judged against both limits.

The teacher (fixed by ``seed``, independent of ``num_train``/``num_eval``):

* categorical feature f takes one of ``cardinality[f]`` values, an 8-hex-digit
  string like Criteo's, drawn with Zipf-like probabilities
  ``p_k ∝ k^(-s_f)`` (s_f in [1.05, 1.5]); some features are missing (empty)
  with probability up to 0.3;
* dense feature j is a skewed integer ``floor(exp(mu_j + sigma_j * N(0,1)))``
  (one feature is shifted to allow small negatives, like Criteo's I2), missing
  with probability up to 0.45; the teacher sees ``z_j = log(1 + max(x_j, 0))``
  (missing -> 0), the model's own dense transform;
* true logit = bias + ``logit_std`` * (sqrt(linear_share) * L + sqrt(1 -
  linear_share) * N), with L a standardized sum of per-value effects and dense
  weights (what logistic regression can represent) and N a standardized sum of
  a one-hidden-layer tanh network over per-value embeddings and z, dot
  products of embedding pairs and products of dense pairs (what needs a deep
  model). ``bias`` is set by bisection so the mean true CTR is ``base_ctr`` on
  a fixed calibration sample;
* label ~ Bernoulli(sigmoid(logit)).

Rows are generated in fixed-size blocks from ``numpy.random.SeedSequence``
streams, so the same arguments give byte-identical files (gzip headers carry
no time stamp or name).

truth.json's log losses and AUC are ``recsys_smelu.metrics``'s, the ones the
trainer and the twin report compute, so a model scored with the true
probabilities has an excess log loss of exactly 0. The command line takes
absl flags (``--helpfull`` lists them), one per ``generate`` argument.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
import numpy as np

from recsys_smelu import metrics as metrics_lib

_BLOCK_ROWS = 65_536  # rows generated per block (part of the seed contract)
_CALIBRATION_ROWS = 50_000
_EMBEDDING_DIM = 4
_HIDDEN_UNITS = 32
_NUM_EMBEDDING_PAIRS = 10
_NUM_DENSE_PAIRS = 4


@dataclasses.dataclass
class Teacher:
  """The fixed random network behind the synthetic labels."""
  cardinalities: np.ndarray  # [F] values per categorical feature
  zipf_exponents: np.ndarray  # [F]
  categorical_missing: np.ndarray  # [F] probability of an empty field
  value_strings: list[np.ndarray]  # per feature: [card] bytes 'S8'
  dense_mu: np.ndarray  # [D]
  dense_sigma: np.ndarray  # [D]
  dense_offset: np.ndarray  # [D] added to the integer (negatives allowed)
  dense_missing: np.ndarray  # [D]
  value_effects: list[np.ndarray]  # per feature: [card + 1] (last = missing)
  embeddings: list[np.ndarray]  # per feature: [card + 1, k]
  dense_weights: np.ndarray  # [D]
  hidden_kernel: np.ndarray  # [F*k + D, H]
  hidden_bias: np.ndarray  # [H]
  output_weights: np.ndarray  # [H]
  embedding_pairs: np.ndarray  # [P, 2] feature index pairs
  dense_pairs: np.ndarray  # [Q, 2]
  linear_scale: float = 1.0  # 1 / std of the linear part
  nonlinear_scale: float = 1.0  # 1 / std of the non-linear part
  bias: float = 0.0

  def sample_rows(self, rng: np.random.Generator, n: int):
    """Draws n rows: (value index [n, F] with card = missing, dense ints
    [n, D] float64 with NaN = missing)."""
    num_cat = len(self.cardinalities)
    values = np.empty((n, num_cat), np.int64)
    for f in range(num_cat):
      card = int(self.cardinalities[f])
      cdf = np.cumsum(np.arange(1, card + 1, dtype=np.float64)
                      ** -self.zipf_exponents[f])
      cdf /= cdf[-1]
      idx = np.searchsorted(cdf, rng.random(n), side="right")
      idx = np.minimum(idx, card - 1)
      missing = rng.random(n) < self.categorical_missing[f]
      values[:, f] = np.where(missing, card, idx)
    normal = rng.standard_normal((n, len(self.dense_mu)))
    dense = np.floor(np.exp(self.dense_mu + self.dense_sigma * normal))
    dense = dense + self.dense_offset
    missing = rng.random(dense.shape) < self.dense_missing
    dense[missing] = np.nan
    return values, dense

  def logit_parts(self, values: np.ndarray, dense: np.ndarray):
    """(linear part, non-linear part), both unscaled, for rows."""
    z = np.log1p(np.maximum(np.nan_to_num(dense, nan=0.0), 0.0)) / 3.0
    linear = z @ self.dense_weights
    embedded = []
    for f in range(len(self.cardinalities)):
      linear = linear + self.value_effects[f][values[:, f]]
      embedded.append(self.embeddings[f][values[:, f]])
    hidden = np.tanh(np.concatenate(embedded + [z], axis=1) @ self.hidden_kernel
                     + self.hidden_bias)
    nonlinear = hidden @ self.output_weights
    for f, g in self.embedding_pairs:
      nonlinear = nonlinear + np.sum(embedded[f] * embedded[g], axis=1)
    for i, j in self.dense_pairs:
      nonlinear = nonlinear + 2.0 * z[:, i] * z[:, j]
    return linear, nonlinear

  def logit(self, values: np.ndarray, dense: np.ndarray, logit_std: float,
            linear_share: float) -> np.ndarray:
    linear, nonlinear = self.logit_parts(values, dense)
    return self.bias + logit_std * (
        math.sqrt(linear_share) * linear * self.linear_scale
        + math.sqrt(1.0 - linear_share) * nonlinear * self.nonlinear_scale)


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def make_teacher(seed: int, num_dense: int = 13, num_categorical: int = 26,
                 min_cardinality: int = 3, max_cardinality: int = 300,
                 base_ctr: float = 0.25, logit_std: float = 1.5,
                 linear_share: float = 0.5) -> Teacher:
  """Builds the teacher for ``seed`` (same arguments -> same teacher)."""
  if not 0.0 < base_ctr < 1.0:
    raise ValueError(f"base_ctr must be in (0, 1), got {base_ctr}")
  if not 0.0 <= linear_share <= 1.0:
    raise ValueError(f"linear_share must be in [0, 1], got {linear_share}")
  if not 2 <= min_cardinality <= max_cardinality:
    raise ValueError("need 2 <= min_cardinality <= max_cardinality, got "
                     f"{min_cardinality}, {max_cardinality}")
  if num_categorical < 2 or num_dense < 2:
    raise ValueError("need num_categorical >= 2 and num_dense >= 2")
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
  k = _EMBEDDING_DIM
  cards = np.exp(rng.uniform(math.log(min_cardinality),
                             math.log(max_cardinality) + 1e-9,
                             num_categorical)).astype(np.int64)
  cards = np.clip(cards, min_cardinality, max_cardinality)
  zipf = rng.uniform(1.05, 1.5, num_categorical)
  cat_missing = np.where(rng.random(num_categorical) < 0.3,
                         rng.uniform(0.0, 0.3, num_categorical), 0.0)
  value_strings = []
  for card in cards:
    codes = np.unique(rng.integers(0, 2**32, size=2 * int(card) + 8))
    codes = rng.permutation(codes)[:card]
    value_strings.append(np.array([b"%08x" % c for c in codes], dtype="S8"))
  dense_mu = rng.uniform(0.0, 4.0, num_dense)
  dense_sigma = rng.uniform(0.5, 1.8, num_dense)
  dense_offset = np.zeros(num_dense)
  dense_offset[1] = -3.0
  dense_missing = np.where(rng.random(num_dense) < 0.6,
                           rng.uniform(0.0, 0.45, num_dense), 0.0)
  importance = rng.exponential(1.0, num_categorical)
  value_effects = [importance[f] * rng.standard_normal(int(cards[f]) + 1)
                   for f in range(num_categorical)]
  embeddings = [rng.standard_normal((int(cards[f]) + 1, k)) *
                math.sqrt(importance[f]) for f in range(num_categorical)]
  dense_weights = rng.standard_normal(num_dense)
  fan_in = num_categorical * k + num_dense
  hidden_kernel = rng.standard_normal((fan_in, _HIDDEN_UNITS)) / math.sqrt(
      fan_in / 2.0)
  hidden_bias = rng.standard_normal(_HIDDEN_UNITS) * 0.5
  output_weights = rng.standard_normal(_HIDDEN_UNITS)
  all_pairs = [(f, g) for f in range(num_categorical)
               for g in range(f + 1, num_categorical)]
  embedding_pairs = np.array(all_pairs)[rng.permutation(len(all_pairs))[
      :_NUM_EMBEDDING_PAIRS]]
  dense_all = [(i, j) for i in range(num_dense) for j in range(i + 1, num_dense)]
  dense_pairs = np.array(dense_all)[rng.permutation(len(dense_all))[
      :_NUM_DENSE_PAIRS]]
  teacher = Teacher(cards, zipf, cat_missing, value_strings, dense_mu,
                    dense_sigma, dense_offset, dense_missing, value_effects,
                    embeddings, dense_weights, hidden_kernel, hidden_bias,
                    output_weights, embedding_pairs, dense_pairs)
  # Standardize both parts and calibrate the bias on a fixed sample.
  values, dense = teacher.sample_rows(rng, _CALIBRATION_ROWS)
  linear, nonlinear = teacher.logit_parts(values, dense)
  teacher.linear_scale = 1.0 / max(float(np.std(linear)), 1e-12)
  teacher.nonlinear_scale = 1.0 / max(float(np.std(nonlinear)), 1e-12)
  teacher.bias = 0.0
  centred = teacher.logit(values, dense, logit_std, linear_share)
  low, high = -30.0, 30.0
  for _ in range(100):
    mid = 0.5 * (low + high)
    if np.mean(_sigmoid(centred + mid)) < base_ctr:
      low = mid
    else:
      high = mid
  teacher.bias = 0.5 * (low + high)
  return teacher


def _format_rows(teacher: Teacher, values: np.ndarray, dense: np.ndarray,
                 labels: np.ndarray) -> bytes:
  """Criteo TSV lines (bytes, each ending in newline) for a block of rows."""
  columns = [np.where(labels, b"1", b"0").tolist()]
  dense_int = np.nan_to_num(dense, nan=0.0).astype(np.int64).astype("S20")
  dense_missing = np.isnan(dense)
  for j in range(dense.shape[1]):
    columns.append(np.where(dense_missing[:, j], b"", dense_int[:, j]).tolist())
  for f in range(values.shape[1]):
    table = np.append(teacher.value_strings[f], np.array([b""], dtype="S8"))
    columns.append(table[values[:, f]].tolist())
  lines = map(b"\t".join, zip(*columns))
  return b"\n".join(lines) + b"\n"


def _split_counts(total: int, parts: int) -> list[int]:
  return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class _ShardedWriter:
  """Writes consecutive rows to K files with known row counts (gfile; gzip
  without time stamp or file name so output is byte-identical)."""

  def __init__(self, paths: Sequence[str], counts: Sequence[int], use_gzip: bool):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._gfile = tf.io.gfile
    self._paths = list(paths)
    self._remaining = list(counts)
    self._gzip = use_gzip
    self._index = -1
    self._raw = None
    self._stream = None
    self._next_file()

  def _next_file(self):
    self.close()
    self._index += 1
    if self._index < len(self._paths):
      self._raw = self._gfile.GFile(self._paths[self._index], "wb")
      if self._gzip:
        self._stream = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                                     compresslevel=6, mtime=0)
      else:
        self._stream = self._raw

  def write_lines(self, lines: list[bytes]):
    start = 0
    while start < len(lines):
      while self._remaining[self._index] == 0:
        self._next_file()
      take = min(self._remaining[self._index], len(lines) - start)
      self._stream.write(b"".join(lines[start:start + take]))
      self._remaining[self._index] -= take
      start += take

  def close(self):
    if self._stream is not None:
      if self._stream is not self._raw:
        self._stream.close()
      self._raw.close()
    self._stream = self._raw = None

  def finish(self):
    while self._index < len(self._paths) - 1:
      self._next_file()  # creates any remaining (empty) files
    self.close()


def _generate_split(teacher: Teacher, stream_seed: Sequence[int], num_rows: int,
                    paths: Sequence[str], use_gzip: bool, logit_std: float,
                    linear_share: float, keep_probabilities: bool):
  """Writes one split; returns (sum of true p, labels, probabilities or None)."""
  rng = np.random.default_rng(np.random.SeedSequence(list(stream_seed)))
  writer = _ShardedWriter(paths, _split_counts(num_rows, len(paths)), use_gzip)
  sum_p = 0.0
  labels_all, probs_all = [], []
  done = 0
  while done < num_rows:
    n = min(_BLOCK_ROWS, num_rows - done)
    values, dense = teacher.sample_rows(rng, n)
    probs = _sigmoid(teacher.logit(values, dense, logit_std, linear_share))
    labels = rng.random(n) < probs
    text = _format_rows(teacher, values, dense, labels)
    writer.write_lines(text.splitlines(keepends=True))
    sum_p += float(np.sum(probs))
    if keep_probabilities:
      labels_all.append(labels)
      probs_all.append(probs)
    done += n
  writer.finish()
  if keep_probabilities:
    labels = np.concatenate(labels_all) if labels_all else np.zeros(0, bool)
    probs = np.concatenate(probs_all) if probs_all else np.zeros(0)
    return sum_p, labels, probs
  return sum_p, None, None


def generate(output_dir: str, num_train: int, num_eval: int, seed: int = 0,
             num_files: int = 1, gzip: bool = False,  # pylint: disable=redefined-outer-name
             base_ctr: float = 0.25, num_dense: int = 13,
             num_categorical: int = 26, min_cardinality: int = 3,
             max_cardinality: int = 300, logit_std: float = 1.5,
             linear_share: float = 0.5) -> dict[str, Any]:
  """Writes train/eval TSV files, eval_truth.txt and truth.json; returns truth.

  ``num_files`` files per split (rows split evenly, in order). The knobs
  ``max_cardinality`` (values per categorical feature; keep it below the
  model's hash buckets to limit collisions), ``logit_std`` (signal strength)
  and ``linear_share`` (fraction of the logit variance a logistic regression
  can represent) shape the difficulty; the defaults give a problem a small
  DLRM learns in a few hundred steps on tens of thousands of rows.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if num_train < 0 or num_eval < 1:
    raise ValueError(f"need num_train >= 0 and num_eval >= 1, got {num_train}, "
                     f"{num_eval}")
  if num_files < 1:
    raise ValueError(f"num_files must be >= 1, got {num_files}")
  teacher = make_teacher(seed, num_dense, num_categorical, min_cardinality,
                         max_cardinality, base_ctr, logit_std, linear_share)
  tf.io.gfile.makedirs(output_dir)
  suffix = ".tsv.gz" if gzip else ".tsv"

  def paths(split):
    return [os.path.join(output_dir, f"{split}-{i:05d}-of-{num_files:05d}{suffix}")
            for i in range(num_files)]

  train_paths, eval_paths = paths("train"), paths("eval")
  train_sum, _, _ = _generate_split(teacher, (seed, 1), num_train, train_paths,
                                    gzip, logit_std, linear_share, False)
  eval_sum, eval_labels, eval_probs = _generate_split(
      teacher, (seed, 2), num_eval, eval_paths, gzip, logit_std, linear_share,
      True)
  truth_path = os.path.join(output_dir, "eval_truth.txt")
  with tf.io.gfile.GFile(truth_path, "w") as f:
    f.write("".join(f"{p!r}\n" for p in eval_probs.tolist()))
  label_mean = float(np.mean(eval_labels))
  truth = {
      "generator": {
          "seed": seed, "num_train": num_train, "num_eval": num_eval,
          "num_files": num_files, "gzip": gzip, "base_ctr": base_ctr,
          "num_dense": num_dense, "num_categorical": num_categorical,
          "min_cardinality": min_cardinality,
          "max_cardinality": max_cardinality, "logit_std": logit_std,
          "linear_share": linear_share,
          "cardinalities": teacher.cardinalities.tolist(),
          "bias": teacher.bias,
      },
      "train_files": train_paths,
      "eval_files": eval_paths,
      "eval_truth": truth_path,
      "mean_true_ctr": (train_sum + eval_sum) / (num_train + num_eval),
      "train_mean_true_ctr": train_sum / num_train if num_train else None,
      "eval_mean_true_ctr": eval_sum / num_eval,
      "eval_label_mean": label_mean,
      # The report's own metrics, so its excess over Bayes starts at 0.
      "eval_bayes_log_loss": metrics_lib.log_loss(eval_labels, eval_probs),
      "eval_bayes_auc": (metrics_lib.roc_auc(eval_labels, eval_probs)
                         if 0.0 < label_mean < 1.0 else None),
      "eval_constant_log_loss": metrics_lib.log_loss(
          eval_labels, np.full(num_eval, label_mean)),
  }
  with tf.io.gfile.GFile(os.path.join(output_dir, "truth.json"), "w") as f:
    f.write(json.dumps(truth, indent=2, sort_keys=True) + "\n")
  return truth


# ----------------------------------------------------------------------------
# Command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command-line flags (on ``flag_values``, absl's global by default);
  each is the ``generate`` argument of the same name."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("output_dir", None, "Directory to write the files to.",
                      **fv)
  flags.DEFINE_integer("num_train", None, "Training rows.", **fv)
  flags.DEFINE_integer("num_eval", None, "Eval rows.", **fv)
  flags.DEFINE_integer("seed", 0, "Fixes the teacher and every row.", **fv)
  flags.DEFINE_integer("num_files", 1, "Files per split.", **fv)
  flags.DEFINE_bool("gzip", False, "Write .tsv.gz files.", **fv)
  flags.DEFINE_float("base_ctr", 0.25, "Mean true click probability.", **fv)
  flags.DEFINE_integer("num_dense", 13, "Integer features.", **fv)
  flags.DEFINE_integer("num_categorical", 26, "Categorical features.", **fv)
  flags.DEFINE_integer("min_cardinality", 3, "Fewest values of a "
                       "categorical feature.", **fv)
  flags.DEFINE_integer("max_cardinality", 300, "Most values of a "
                       "categorical feature.", **fv)
  flags.DEFINE_float("logit_std", 1.5, "Standard deviation of the true "
                     "logit (signal strength).", **fv)
  flags.DEFINE_float("linear_share", 0.5, "Share of the logit variance a "
                     "logistic regression can represent.", **fv)
  flags.mark_flags_as_required(["output_dir", "num_train", "num_eval"], **fv)


_GENERATE_FLAGS = ("output_dir", "num_train", "num_eval", "seed", "num_files",
                   "gzip", "base_ctr", "num_dense", "num_categorical",
                   "min_cardinality", "max_cardinality", "logit_std",
                   "linear_share")


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Generates as the parsed flags say and prints the truth summary (JSON)."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    truth = generate(**{name: flag_values[name].value
                        for name in _GENERATE_FLAGS})
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  summary = {k: truth[k] for k in ("mean_true_ctr", "eval_label_mean",
                                   "eval_bayes_log_loss", "eval_bayes_auc",
                                   "eval_constant_log_loss")}
  print(json.dumps(summary, indent=2))


def run() -> None:
  """Console script ``recsys-smelu-synthetic``."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
