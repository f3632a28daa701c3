"""A keras-rs DLRM with SmeLU, trained on Criteo-format TSV on Keras 3 (JAX).

The model (Naumov et al. 2019) as keras-rs builds it:

* dense features -> ``log(1 + max(x, 0))`` (missing -> 0) -> bottom MLP
  (Dense + SmeLU per hidden layer) -> a vector of ``--embedding_dim``;
* each categorical feature -> its own ``keras.layers.Embedding`` of
  ``--num_buckets + 1`` rows (the value's stable hash modulo
  ``--num_buckets``; the last row is "missing");
* ``keras_rs.layers.DotInteraction`` over the bottom-MLP vector and the
  embeddings (every pairwise dot product), concatenated with the bottom-MLP
  vector -> top MLP (Dense + SmeLU) -> one logit -> sigmoid.

Activations are ``recsys_smelu.keras3`` layers from spec strings
(``--activation``, default ``smelu:beta=1``; e.g.
``smelu:trainable=true,per_unit=true`` or ``relu`` to compare).

The TSV files are read with pandas (no TensorFlow), so on the JAX backend
the run needs no TensorFlow at all. Make data with
``python -m recsys_smelu.data.synthetic --output_dir=D --num_train=N
--num_eval=M`` (that command imports TensorFlow; run it once, anywhere).

Prints the evaluation AUC and log loss (``recsys_smelu.metrics``), and
one JSON line with everything (``--json_out`` also writes it to a file).

Run: KERAS_BACKEND=jax python scripts/keras3_dlrm.py --data_dir=D
[--steps 300] [--batch_size 256]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import keras_rs  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recsys_smelu import keras3 as smelu_keras3  # noqa: E402
from recsys_smelu import metrics  # noqa: E402


class DataError(ValueError):
  """A Criteo-format file that cannot be read as asked."""


def read_criteo_tsv(pattern: str, num_dense: int, num_categorical: int,
                    num_buckets: int) -> dict[str, np.ndarray]:
  """Label, transformed dense features and hashed ids from matching files.

  Returns ``{"label": float32 [N], "dense": float32 [N, num_dense],
  "sparse": int32 [N, num_categorical]}``, rows in file-name order. Dense:
  ``log(1 + max(x, 0))``, missing -> 0 (the TF pipeline's transform).
  Categorical: ``pandas.util.hash_array`` of the string modulo
  ``num_buckets`` (stable across runs and machines), missing ->
  ``num_buckets``.

  Raises:
    DataError: no file matches, or a file has the wrong number of columns or
      a label / dense field that is not a number (names file and line).
  """
  files = sorted(glob.glob(pattern))
  if not files:
    raise DataError(f"no file matches {pattern!r}")
  columns = 1 + num_dense + num_categorical
  labels, dense, sparse = [], [], []
  for path in files:
    frame = pd.read_csv(path, sep="\t", header=None, dtype=str,
                        na_filter=False, quoting=3)
    if frame.shape[1] != columns:
      raise DataError(
          f"{path}: {frame.shape[1]} tab-separated columns, expected "
          f"{columns} (label, {num_dense} dense, {num_categorical} "
          "categorical); set --num_dense/--num_categorical")
    for j, name in [(0, "label")] + [(1 + k, f"I{k + 1}")
                                     for k in range(num_dense)]:
      values = pd.to_numeric(frame[j].where(frame[j] != ""), errors="coerce")
      bad = values.isna() & (frame[j] != "") | (
          (j == 0) & ~frame[j].isin(["0", "1"]))
      if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(f"{path}, line {line}: {name} = {frame[j][line - 1]!r} "
                        f"is not {'0 or 1' if j == 0 else 'a number'}")
    labels.append(frame[0].astype(np.float32).to_numpy())
    raw = frame.iloc[:, 1:1 + num_dense].replace("", "0").astype(np.float64)
    dense.append(np.log1p(np.maximum(raw.to_numpy(), 0)).astype(np.float32))
    ids = np.empty((len(frame), num_categorical), np.int32)
    for k in range(num_categorical):
      values = frame[1 + num_dense + k].to_numpy(dtype=object)
      hashed = pd.util.hash_array(values) % np.uint64(num_buckets)
      ids[:, k] = np.where(values == "", num_buckets, hashed)
    sparse.append(ids)
  return {"label": np.concatenate(labels), "dense": np.concatenate(dense),
          "sparse": np.concatenate(sparse)}


def build_dlrm(num_dense: int, num_categorical: int, num_buckets: int,
               embedding_dim: int, bottom_mlp: list[int], top_mlp: list[int],
               activation: str) -> keras.Model:
  """The DLRM of the module docstring; inputs ``{"dense", "sparse"}``."""
  dense_in = keras.Input((num_dense,), name="dense")
  sparse_in = keras.Input((num_categorical,), dtype="int32", name="sparse")

  def mlp(x, units: list[int], name: str):
    for i, width in enumerate(units):
      x = keras.layers.Dense(width, name=f"{name}_dense_{i}")(x)
      x = smelu_keras3.get_activation(activation)(x)
    return x

  bottom = mlp(dense_in, bottom_mlp, "bottom")
  bottom = keras.layers.Dense(embedding_dim, name="bottom_out")(bottom)
  embeddings = [
      keras.layers.Embedding(num_buckets + 1, embedding_dim,
                             name=f"embedding_C{k + 1}")(sparse_in[:, k])
      for k in range(num_categorical)]
  interactions = keras_rs.layers.DotInteraction(name="dot_interaction")(
      [bottom, *embeddings])
  top = keras.layers.Concatenate(name="top_in")([bottom, interactions])
  top = mlp(top, top_mlp, "top")
  logit = keras.layers.Dense(1, name="logit")(top)
  prediction = keras.layers.Activation("sigmoid", dtype="float32",
                                       name="prediction")(logit)
  return keras.Model({"dense": dense_in, "sparse": sparse_in}, prediction,
                     name="dlrm_smelu")


def train_and_evaluate(args: argparse.Namespace) -> dict:
  """Reads the data, trains ``args.steps`` batches, scores the eval split."""
  keras.utils.set_random_seed(args.seed)
  read = lambda split: read_criteo_tsv(  # noqa: E731
      os.path.join(args.data_dir, f"{split}-*.tsv*"), args.num_dense,
      args.num_categorical, args.num_buckets)
  train, evaluation = read("train"), read("eval")
  model = build_dlrm(args.num_dense, args.num_categorical, args.num_buckets,
                     args.embedding_dim, args.bottom_mlp, args.top_mlp,
                     args.activation)
  model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                loss=keras.losses.BinaryCrossentropy())
  rng = np.random.default_rng(args.seed)
  order = rng.permutation(len(train["label"]))
  start = time.perf_counter()
  losses = []
  for step in range(args.steps):
    offset = (step * args.batch_size) % len(order)
    batch = np.take(order, range(offset, offset + args.batch_size),
                    mode="wrap")
    losses.append(float(model.train_on_batch(
        {"dense": train["dense"][batch], "sparse": train["sparse"][batch]},
        train["label"][batch])))
  train_seconds = time.perf_counter() - start
  predictions = model.predict(
      {"dense": evaluation["dense"], "sparse": evaluation["sparse"]},
      batch_size=args.eval_batch_size, verbose=0)[:, 0]
  predictions = np.clip(predictions.astype(np.float64), 0.0, 1.0)
  result = {
      "backend": keras.backend.backend(),
      "activation": args.activation,
      "steps": args.steps,
      "batch_size": args.batch_size,
      "train_rows": int(len(train["label"])),
      "eval_rows": int(len(evaluation["label"])),
      "final_train_loss": losses[-1] if losses else None,
      "train_seconds": round(train_seconds, 3),
      "auc": metrics.roc_auc(evaluation["label"], predictions),
      "log_loss": metrics.log_loss(evaluation["label"], predictions),
  }
  truth_path = os.path.join(args.data_dir, "truth.json")
  if os.path.exists(truth_path):  # synthetic data: the Bayes-optimal limits
    with open(truth_path) as f:
      truth = json.load(f)
    for key in ("eval_bayes_auc", "eval_bayes_log_loss",
                "eval_constant_log_loss"):
      if key in truth:
        result[key] = truth[key]
  return result


def _int_list(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True,
                      help="folder with train-*.tsv[.gz] and eval-*.tsv[.gz]")
  parser.add_argument("--num_dense", type=int, default=13)
  parser.add_argument("--num_categorical", type=int, default=26)
  parser.add_argument("--num_buckets", type=int, default=10_000,
                      help="hash buckets per categorical feature")
  parser.add_argument("--embedding_dim", type=int, default=16)
  parser.add_argument("--bottom_mlp", type=_int_list, default=[64, 32])
  parser.add_argument("--top_mlp", type=_int_list, default=[64, 32])
  parser.add_argument("--activation", default="smelu:beta=1",
                      help="activation spec of the MLPs (recsys_smelu."
                      "activation_specs), e.g. smelu:trainable=true or relu")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--eval_batch_size", type=int, default=4096)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json_out", default="",
                      help="also write the result JSON to this file")
  args = parser.parse_args(argv)
  try:
    smelu_keras3.parse_activation_spec(args.activation)
  except ValueError as e:
    parser.error(f"--activation: {e}")
  if args.steps < 1 or args.batch_size < 1:
    parser.error("--steps and --batch_size must be >= 1")
  try:
    result = train_and_evaluate(args)
  except DataError as e:
    print(f"keras3_dlrm: {e}", file=sys.stderr)
    return 2
  print(f"eval AUC {result['auc']:.4f}  log loss {result['log_loss']:.4f}  "
        f"({result['steps']} steps of {result['batch_size']} on "
        f"{result['backend']}, {result['activation']})")
  line = json.dumps(result)
  print(line)
  if args.json_out:
    with open(args.json_out, "w") as f:
      f.write(line + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
