r"""Training throughput of our DLRM against TF Model Garden's DLRM, same data.

Prints ONE JSON object:

  {"shape": {...}, "device": "...", "settings": {...},
   "ours": {"relu": {"examples_per_s": .., "runs": [..]}, "smelu": {..},
            "relu_xla": {..}, "smelu_xla": {..}, "relu_packed": {..},
            "smelu_packed": {..}},
   "model_garden": {"examples_per_s": .., "runs": [..]}   # or {"error": ".."}
   "ratios": {"ours_relu_vs_model_garden": ..,
              "ours_relu_packed_vs_model_garden": ..,
              "ours_best_vs_model_garden": .., "smelu_vs_relu": ..,
              "smelu_xla_vs_relu_xla": .., "smelu_packed_vs_relu_packed": ..,
              "relu_xla_vs_relu": .., "relu_packed_vs_relu": ..,
              "per_repeat": {..}},  # ratios of medians
   "targets": {...}}

The model (both sides): 13 dense + 26 categorical features, 26 tables of
100,000 buckets x 16, bottom MLP [256, 64, 16], dot interaction, top MLP
[256, 128, 1], global batch 1024, one CPU process, default strategy.

Data: ``--rows`` rows of synthetic Criteo-format TSV from
``recsys_smelu.data.synthetic`` (26 hex-string categoricals, 13 integers,
empty = missing), in 8 files.

* Ours reads those raw files through ``recsys_smelu.data.build_dataset`` (row
  validation, integer -> log(1 + x), hashing of the hex strings into buckets,
  seeded shuffle) and trains with ``recsys_smelu.train.train`` (Keras fit,
  the model's ``train_step`` sending table gradients to the embedding
  optimizer and the rest to the dense one, checkpoint and TensorBoard
  monitor) — what users run.
* Model Garden's TSV reader (``CriteoTsvReader``) expects *pre-processed*
  Criteo (dense already log-transformed floats, categoricals already integer
  ids), so the same rows are converted once, by our pipeline in file order,
  into that layout (identical dense values and bucket ids, 8 files, one per
  reader shard) and read by ``official.recommendation.ranking.train
  --experiment=dlrm_criteo`` with ``--params_override``. Its reader therefore
  does strictly less work per row than ours.
* Ours on pre-processed input too (variants ``*_packed``): the same rows
  converted once by ``recsys-smelu-convert --format=packed`` (8 files) and
  read with ``data.format='packed'`` (no parsing or hashing per step), the
  like-for-like comparison with Model Garden's pre-processed input.

Optimizers on both sides: embeddings ``--embedding_optimizer`` (default
Adagrad, our config's default; Model Garden's dlrm_criteo defaults to SGD,
``--embedding_optimizer=sgd`` runs both sides with SGD), dense layers Adam.
``steps_per_execution`` (Model Garden: ``trainer.steps_per_loop``, whose own
default is 1000) is the same on both sides.

Measurement: each run trains ``--warmup_steps + --steps`` steps in its own
subprocess, one run after another; its examples/s is the steady-state rate
over the last ``--steps`` steps (examples / seconds summed over the logged
intervals after warm-up: ours from the trainer's
``train/examples_per_second`` TensorBoard summary, Model Garden's from its
``TimeHistory`` log lines). With ``--repeats R`` the variants run round-robin
R times (rotating order, so load from other processes hits all alike) and
each reports the median. Ratios are computed within this run.

Model Garden is installed only for this benchmark, never into the project's
environment: ``pip install --no-deps --target <repo>/.bench_modelgarden``
of the pinned packages in ``MODEL_GARDEN_PACKAGES`` (about 70 MB, seconds),
put on ``PYTHONPATH`` of its subprocess only. If the install or its run
fails, ``"model_garden"`` holds ``{"error": ...}`` and our figures are still
reported.

Run: python scripts/bench_train.py [--steps 300] [--warmup_steps 100]
     [--rows 300000] [--repeats 1] [--steps_per_execution 1]
     [--skip_model_garden]
     [--variants relu,smelu,relu_xla,smelu_xla,relu_packed,smelu_packed]
Measured runs, with their commands and machines: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

from recsys_smelu import platform_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL_GARDEN_DIR = os.path.join(REPO, ".bench_modelgarden")
# Pinned: the versions this benchmark was written against. --no-deps, so
# TensorFlow, tf-keras, TFRS, numpy, protobuf, absl and PyYAML come from the
# project's environment; these are the rest of what the ranking trainer
# imports (found by importing official.recommendation.ranking.train).
MODEL_GARDEN_PACKAGES = (
    "tf-models-nightly==2.21.0.dev20260217",
    "gin-config==0.5.0",
    "tensorflow-datasets==4.9.10",
    "tensorboard==2.21.0",
    "etils==1.15.0",
    "toml==0.10.2",
    "promise==2.3",
    "tensorflow-metadata==1.21.0",
    "immutabledict==4.3.1",
)
MODEL_GARDEN_MODULE = "official.recommendation.ranking.train"

NUM_DENSE = 13
NUM_CATEGORICAL = 26
NUM_BUCKETS = 100_000
EMBEDDING_DIM = 16
BOTTOM_MLP = [256, 64, 16]
TOP_MLP = [256, 128, 1]
BATCH_SIZE = 1024
NUM_FILES = 8  # Model Garden's reader: num_shards_per_host = 8

# Our variants: activation spec, jit_compile, input format ("tsv": the raw
# files; "packed": the same rows converted once by recsys-smelu-convert
# --format=packed, i.e. pre-processed like Model Garden's input).
VARIANTS = {
    "relu": ("relu", False, "tsv"),
    "smelu": ("smelu", False, "tsv"),
    "relu_xla": ("relu", True, "tsv"),
    "smelu_xla": ("smelu", True, "tsv"),
    "relu_packed": ("relu", False, "packed"),
    "smelu_packed": ("smelu", False, "packed"),
}
RESULT_MARKER = "BENCH_TRAIN_RESULT "
TIME_HISTORY_RE = re.compile(
    r"TimeHistory: ([0-9.]+) seconds, ([0-9.]+) examples/second between steps "
    r"(\d+) and (\d+)")


# ----------------------------------------------------------------------------
# Helpers shared by the parent and the workers


def _env(extra_pythonpath: Sequence[str] = ()) -> dict[str, str]:
  env = dict(os.environ)
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  env["TF_USE_LEGACY_KERAS"] = "1"
  paths = [*extra_pythonpath, REPO]
  if env.get("PYTHONPATH"):
    paths.append(env["PYTHONPATH"])
  env["PYTHONPATH"] = os.pathsep.join(paths)
  return env


def steady_rate(intervals: Sequence[tuple[int, int, float]], batch_size: int,
                warmup_steps: int) -> Optional[float]:
  """Examples/s over the logged intervals that start at or after warm-up.

  ``intervals``: (first step, last step, examples/s) per logged interval.
  Rate = examples / time summed over those intervals (time of an interval =
  its examples / its rate), i.e. the step-weighted harmonic mean.
  """
  examples = seconds = 0.0
  for start, end, rate in intervals:
    if start >= warmup_steps and end > start and rate > 0:
      n = (end - start) * batch_size
      examples += n
      seconds += n / rate
  return examples / seconds if seconds else None


def _device() -> str:
  model = platform_info.cpu_name()
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
      else os.cpu_count()
  return f"CPU: {model}, {cores} cores available (no accelerator used)"


# ----------------------------------------------------------------------------
# Workers (run in subprocesses: one TensorFlow process per measured run)


def _ours_config(data_dir: str, activation: str, jit: bool, args,
                 input_format: str = "tsv"):
  from recsys_smelu import config as config_lib  # pylint: disable=g-import-not-at-top
  total = args.warmup_steps + args.steps
  if input_format == "packed":
    files = {"data.train_files": os.path.join(args.packed_dir, "*.packed"),
             "data.eval_files": os.path.join(args.packed_dir, "*.packed")}
  else:
    files = {"data.train_files": os.path.join(data_dir, "train-*.tsv"),
             "data.eval_files": os.path.join(data_dir, "eval-*.tsv")}
  return config_lib.override(config_lib.default_config(), {
      "data.format": input_format,
      **files,
      "data.num_dense": NUM_DENSE,
      "data.num_categorical": NUM_CATEGORICAL,
      "data.num_buckets": NUM_BUCKETS,
      "data.shuffle_buffer": args.shuffle_buffer,
      "model.interaction": "dot",
      "model.embedding_dim": EMBEDDING_DIM,
      "model.bottom_mlp": list(BOTTOM_MLP),
      "model.top_mlp": list(TOP_MLP),
      "model.activation": activation,
      "train.batch_size": BATCH_SIZE,
      "train.steps": total,
      "train.optimizer": "adam",
      "train.learning_rate": 1e-3,
      "train.embedding_optimizer": args.embedding_optimizer,
      "train.embedding_learning_rate": (
          0.05 if args.embedding_optimizer != "sgd" else 0.1),
      "train.steps_per_execution": args.steps_per_execution,
      "train.jit_compile": jit,
      # One checkpoint, at the end (after the measured steps).
      "train.checkpoint_every": total,
      "train.log_every": args.log_every,
  })


def _read_rate_summaries(summary_dir: str) -> list[tuple[int, float]]:
  """(step, examples/s) from the trainer's TensorBoard event files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  points = []
  for path in sorted(tf.io.gfile.glob(os.path.join(summary_dir, "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "train/examples_per_second":
          number = (float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor") else value.simple_value)
          points.append((int(event.step), number))
  return sorted(points)


def _worker_ours(args) -> dict[str, Any]:
  from recsys_smelu import tf_keras2  # pylint: disable=g-import-not-at-top
  tf_keras2.ensure_keras2()
  from recsys_smelu import train as train_lib  # pylint: disable=g-import-not-at-top
  activation, jit, input_format = VARIANTS[args.variant]
  config = _ours_config(args.data_dir, activation, jit, args, input_format)
  model_dir = tempfile.mkdtemp(prefix=f"bench_ours_{args.variant}_",
                               dir=args.work_dir)
  started = time.perf_counter()
  result = train_lib.train(config, model_dir, mode="train", interactive=False)
  wall = time.perf_counter() - started
  points = _read_rate_summaries(os.path.join(model_dir, "train"))
  intervals, previous = [], 0
  for step, rate in points:
    intervals.append((previous, step, rate))
    previous = step
  shutil.rmtree(model_dir, ignore_errors=True)
  from recsys_smelu import native  # pylint: disable=g-import-not-at-top
  return {
      "examples_per_s": steady_rate(intervals, BATCH_SIZE, args.warmup_steps),
      # The native CPU ops (embedding Adagrad, SmeLU) built and in use.
      "native_ops": native.load() is not None,
      "trainer_median_examples_per_s": result.examples_per_second,
      "final_step": result.step,
      "wall_s": round(wall, 1),
      "intervals": [(a, b, round(r)) for a, b, r in intervals],
  }


def _worker_convert(args) -> dict[str, Any]:
  """Writes the training rows in Model Garden's pre-processed TSV layout.

  label, 13 dense floats (our transform: log(1 + max(x, 0)), missing -> 0),
  26 integer bucket ids (our hashing), produced by our own pipeline in file
  and line order, so both sides train on identical feature values.
  """
  from recsys_smelu import tf_keras2  # pylint: disable=g-import-not-at-top
  tf_keras2.ensure_keras2()
  import numpy as np  # pylint: disable=g-import-not-at-top
  from recsys_smelu import config as config_lib  # pylint: disable=g-import-not-at-top
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  config = _ours_config(args.data_dir, "relu", False, args)
  # The eval split reads files in order, unshuffled, keeping every row.
  config = config_lib.override(config, {
      "data.eval_files": config.data.train_files})
  schema = data_lib.build_schema(config)
  dataset = data_lib.build_dataset(config, "eval", 8192)
  out_dir = args.output_dir
  os.makedirs(out_dir, exist_ok=True)
  files = [open(os.path.join(out_dir, f"train-{i:05d}-of-{NUM_FILES:05d}.tsv"),
                "w") for i in range(NUM_FILES)]
  rows = 0
  fmt = ["%d"] + ["%.7g"] * NUM_DENSE + ["%d"] * NUM_CATEGORICAL
  try:
    for index, (features, label) in enumerate(dataset.as_numpy_iterator()):
      sparse = features[data_lib.SPARSE_KEY]
      table = np.column_stack(
          [label.astype(np.int64), features[data_lib.DENSE_KEY]]
          + [sparse[name] for name in schema.categorical_names])
      np.savetxt(files[index % NUM_FILES], table, fmt=fmt, delimiter="\t")
      rows += len(label)
  finally:
    for f in files:
      f.close()
  return {"rows": rows}


def _worker_main(args) -> None:
  worker = {"ours": _worker_ours, "convert": _worker_convert}[args.worker]
  result = worker(args)
  print(RESULT_MARKER + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------
# Parent: data, install, runs, JSON


def _run(command: Sequence[str], env: dict[str, str], timeout: float
         ) -> subprocess.CompletedProcess:
  return subprocess.run(list(command), env=env, cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, check=False)


def _tail(text: str, lines: int = 15) -> str:
  return "\n".join(text.strip().splitlines()[-lines:])


def _worker_result(proc: subprocess.CompletedProcess, what: str) -> dict[str, Any]:
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith(RESULT_MARKER):
      return json.loads(line[len(RESULT_MARKER):])
  raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n"
                     f"{_tail(proc.stderr + proc.stdout)}")


def _worker_command(args, worker: str, **extra) -> list[str]:
  command = [sys.executable, os.path.abspath(__file__), f"--worker={worker}",
             f"--data_dir={args.data_dir}", f"--work_dir={args.work_dir}",
             f"--steps={args.steps}", f"--warmup_steps={args.warmup_steps}",
             f"--log_every={args.log_every}",
             f"--steps_per_execution={args.steps_per_execution}",
             f"--shuffle_buffer={args.shuffle_buffer}",
             f"--embedding_optimizer={args.embedding_optimizer}",
             f"--packed_dir={args.packed_dir}"]
  command += [f"--{k}={v}" for k, v in extra.items()]
  return command


def _generate_data(args, log) -> None:
  if os.path.exists(os.path.join(args.data_dir, "truth.json")):
    log(f"reusing data in {args.data_dir}")
    return
  log(f"generating {args.rows} rows in {args.data_dir}")
  proc = _run([sys.executable, "-m", "recsys_smelu.data.synthetic",
               f"--output_dir={args.data_dir}", f"--num_train={args.rows}",
               "--num_eval=2048", f"--seed={args.seed}",
               f"--num_files={NUM_FILES}",
               # Values per feature up to the bucket count, like Criteo's
               # long tails (the generator's default is 300).
               f"--max_cardinality={args.max_cardinality}"],
              _env(), timeout=1800)
  if proc.returncode:
    raise RuntimeError(f"data generation failed:\n{_tail(proc.stderr)}")


def _convert_packed(args, log) -> None:
  """Our pre-processed input: the training rows as packed files, 8 files."""
  log(f"converting the rows to packed files in {args.packed_dir}")
  proc = _run([sys.executable, "-m", "recsys_smelu.data.convert",
               "--format=packed", f"--num_buckets={NUM_BUCKETS}",
               f"--num_dense={NUM_DENSE}", f"--num_categorical={NUM_CATEGORICAL}",
               f"--input={os.path.join(args.data_dir, 'train-*.tsv')}",
               f"--output_dir={args.packed_dir}",
               f"--records_per_file={-(-args.rows // NUM_FILES)}"],
              _env(), timeout=1800)
  if proc.returncode:
    raise RuntimeError(f"packed conversion failed:\n{_tail(proc.stderr)}")


def ensure_model_garden(target: str, log) -> str:
  """Installs the pinned Model Garden packages into ``target`` if missing.

  Returns ``target`` (to put on PYTHONPATH). The stamp file records the
  package list, so a changed pin reinstalls. Raises RuntimeError with pip's
  or the import's message on failure.
  """
  stamp = os.path.join(target, ".bench_train_installed")
  want = "\n".join(MODEL_GARDEN_PACKAGES)
  if not (os.path.exists(stamp) and open(stamp).read() == want):
    log(f"installing Model Garden into {target} (--no-deps --target)")
    proc = _run([sys.executable, "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", "--no-deps", "--upgrade",
                 "--target", target, *MODEL_GARDEN_PACKAGES], _env(),
                timeout=900)
    if proc.returncode:
      raise RuntimeError(f"pip install --target {target} failed:\n"
                         f"{_tail(proc.stderr, 8)}")
    with open(stamp, "w") as f:
      f.write(want)
  proc = _run([sys.executable, "-c", f"import {MODEL_GARDEN_MODULE}"],
              _env([target]), timeout=300)
  if proc.returncode:
    raise RuntimeError(f"import {MODEL_GARDEN_MODULE} failed:\n"
                       f"{_tail(proc.stderr, 8)}")
  return target


def _model_garden_override(args, data_dir: str) -> str:
  """The --params_override YAML (JSON is YAML) for the same model and data."""
  total = args.warmup_steps + args.steps
  pattern = os.path.join(data_dir, "train-*.tsv")
  data = {"input_path": pattern, "global_batch_size": BATCH_SIZE}
  override = {
      "runtime": {"distribution_strategy": "off"},
      "task": {
          "use_synthetic_data": False,
          "train_data": data,
          "validation_data": data,
          "model": {
              "num_dense_features": NUM_DENSE,
              "vocab_sizes": [NUM_BUCKETS] * NUM_CATEGORICAL,
              "embedding_dim": EMBEDDING_DIM,
              "bottom_mlp": list(BOTTOM_MLP),
              "top_mlp": list(TOP_MLP),
              "interaction": "dot",
          },
      },
      "trainer": {
          # fit() runs train_steps // validation_interval epochs.
          "train_steps": total,
          "validation_interval": total,
          "validation_steps": 1,
          "steps_per_loop": args.steps_per_execution,
          "checkpoint_interval": total,
          "summary_interval": total,
          "time_history": {"log_steps": args.log_every},
          "optimizer_config": {
              "embedding_optimizer": {"sgd": "SGD", "adagrad": "Adagrad",
                                      "adam": "Adam"}[args.embedding_optimizer],
              "dense_optimizer": "Adam",
          },
      },
  }
  path = os.path.join(args.work_dir, "model_garden_override.yaml")
  with open(path, "w") as f:
    json.dump(override, f, indent=1)
  return path


def _run_model_garden(args, pythonpath: str, override: str) -> dict[str, Any]:
  model_dir = tempfile.mkdtemp(prefix="bench_model_garden_", dir=args.work_dir)
  started = time.perf_counter()
  proc = _run([sys.executable, "-m", MODEL_GARDEN_MODULE,
               "--experiment=dlrm_criteo", "--mode=train",
               f"--model_dir={model_dir}", f"--params_override={override}"],
              _env([pythonpath]), timeout=args.run_timeout)
  wall = time.perf_counter() - started
  shutil.rmtree(model_dir, ignore_errors=True)
  intervals = [(int(m.group(3)), int(m.group(4)), float(m.group(2)))
               for m in TIME_HISTORY_RE.finditer(proc.stderr)]
  if proc.returncode or not intervals:
    raise RuntimeError(f"Model Garden run failed (exit {proc.returncode}):\n"
                       f"{_tail(proc.stderr)}")
  return {
      "examples_per_s": steady_rate(intervals, BATCH_SIZE, args.warmup_steps),
      "final_step": intervals[-1][1],
      "wall_s": round(wall, 1),
      "intervals": [(a, b, round(r)) for a, b, r in intervals],
  }


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
  rates = [r["examples_per_s"] for r in runs if r.get("examples_per_s")]
  out: dict[str, Any] = {
      "examples_per_s": round(statistics.median(rates), 1) if rates else None}
  if len(rates) > 1:
    out["min"], out["max"] = round(min(rates), 1), round(max(rates), 1)
  out["runs"] = runs
  return out


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return round(a / b, 3) if a and b else None


def _met(ratio: Optional[float], minimum: float) -> Optional[bool]:
  """Whether a measured ratio reaches its target; None when not measured."""
  return ratio >= minimum if ratio else None


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parse_args(argv)
  if args.worker:
    _worker_main(args)
    return
  log = (lambda message: None) if args.quiet else (
      lambda message: print(f"[bench_train] {message}", file=sys.stderr,
                            flush=True))
  if args.log_every % args.steps_per_execution or (
      args.warmup_steps % args.log_every) or args.steps % args.log_every:
    raise SystemExit("--log_every must be a multiple of --steps_per_execution, "
                     "and --warmup_steps and --steps multiples of --log_every")
  variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    raise SystemExit(f"--variants: unknown {unknown}; choose from "
                     f"{sorted(VARIANTS)}")
  own_work_dir = not args.work_dir
  args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_train_")
  args.data_dir = args.data_dir or os.path.join(args.work_dir, "criteo")
  args.packed_dir = os.path.join(args.work_dir, "packed")
  started = time.perf_counter()
  try:
    _generate_data(args, log)
    if any(VARIANTS[v][2] == "packed" for v in variants):
      _convert_packed(args, log)
    mg_state: dict[str, Any] = {}
    if not args.skip_model_garden:
      try:
        pythonpath = ensure_model_garden(args.model_garden_dir, log)
        log("converting the rows to Model Garden's pre-processed layout")
        mg_data = os.path.join(args.work_dir, "model_garden_data")
        proc = _run(_worker_command(args, "convert", output_dir=mg_data),
                    _env(), timeout=1800)
        mg_state["rows"] = _worker_result(proc, "conversion")["rows"]
        mg_state["pythonpath"] = pythonpath
        mg_state["override"] = _model_garden_override(args, mg_data)
      except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        mg_state["error"] = str(e)

    order = list(variants)
    if "pythonpath" in mg_state:
      order.append("model_garden")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    errors: dict[str, str] = {}
    for repeat in range(args.repeats if order else 0):
      shift = repeat % len(order)
      for name in order[shift:] + order[:shift]:
        if name in errors:
          continue
        log(f"repeat {repeat + 1}/{args.repeats}: {name}")
        try:
          if name == "model_garden":
            result = _run_model_garden(args, mg_state["pythonpath"],
                                       mg_state["override"])
          else:
            proc = _run(_worker_command(args, "ours", variant=name), _env(),
                        timeout=args.run_timeout)
            result = _worker_result(proc, f"ours/{name}")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
          errors[name] = str(e)
          continue
        log(f"  {name}: {result['examples_per_s']:,.0f} examples/s")
        runs[name].append(result)

    ours = {}
    for name in variants:
      ours[name] = ({"error": errors[name]} if name in errors
                    else _summarize(runs[name]))
    if args.skip_model_garden:
      model_garden: dict[str, Any] = {"skipped": True}
    elif "error" in mg_state:
      model_garden = {"error": mg_state["error"]}
    elif "model_garden" in errors:
      model_garden = {"error": errors["model_garden"]}
    else:
      model_garden = _summarize(runs["model_garden"])
      model_garden["rows_converted"] = mg_state["rows"]

    def rate(entry):
      return entry.get("examples_per_s") if entry else None

    mg_rate = rate(model_garden)
    ours_rates = {n: rate(ours.get(n)) for n in VARIANTS}
    best_name = max((n for n in ours_rates if ours_rates[n]),
                    key=lambda n: ours_rates[n], default=None)
    ratios = {
        "ours_relu_vs_model_garden": _ratio(ours_rates["relu"], mg_rate),
        "ours_relu_packed_vs_model_garden": _ratio(ours_rates["relu_packed"],
                                                   mg_rate),
        "ours_best_vs_model_garden": _ratio(ours_rates.get(best_name), mg_rate),
        "ours_best_variant": best_name,
        "smelu_vs_relu": _ratio(ours_rates["smelu"], ours_rates["relu"]),
        "smelu_xla_vs_relu_xla": _ratio(ours_rates["smelu_xla"],
                                        ours_rates["relu_xla"]),
        "smelu_packed_vs_relu_packed": _ratio(ours_rates["smelu_packed"],
                                              ours_rates["relu_packed"]),
        "relu_xla_vs_relu": _ratio(ours_rates["relu_xla"], ours_rates["relu"]),
        "relu_packed_vs_relu": _ratio(ours_rates["relu_packed"],
                                      ours_rates["relu"]),
    }
    # Per-repeat ratios pair runs made close in time (same round).
    def per_repeat(a: str, b: str) -> list[float]:
      pairs = zip(runs.get(a, []), runs.get(b, []))
      return [round(x["examples_per_s"] / y["examples_per_s"], 3)
              for x, y in pairs if x.get("examples_per_s")
              and y.get("examples_per_s")]

    if args.repeats > 1:
      ratios["per_repeat"] = {
          "ours_relu_vs_model_garden": per_repeat("relu", "model_garden"),
          "smelu_vs_relu": per_repeat("smelu", "relu"),
          "smelu_xla_vs_relu_xla": per_repeat("smelu_xla", "relu_xla"),
          "ours_relu_packed_vs_model_garden": per_repeat("relu_packed",
                                                         "model_garden"),
          "smelu_packed_vs_relu_packed": per_repeat("smelu_packed",
                                                    "relu_packed"),
      }
    report = {
        "shape": {"dense": NUM_DENSE, "categorical": NUM_CATEGORICAL,
                  "buckets_per_feature": NUM_BUCKETS,
                  "embedding_dim": EMBEDDING_DIM, "bottom_mlp": BOTTOM_MLP,
                  "top_mlp": TOP_MLP, "interaction": "dot",
                  "batch_size": BATCH_SIZE},
        "device": _device(),
        "settings": {
            "rows": args.rows, "files": NUM_FILES,
            "max_cardinality": args.max_cardinality,
            "warmup_steps": args.warmup_steps, "measured_steps": args.steps,
            "log_every": args.log_every,
            "steps_per_execution": args.steps_per_execution,
            "repeats": args.repeats,
            "embedding_optimizer": args.embedding_optimizer,
            "dense_optimizer": "adam",
            "ours_shuffle_buffer": args.shuffle_buffer,
            "ours_input": "raw Criteo TSV: validate, log1p, hash hex strings "
                          "(*_packed: the same rows converted once with "
                          "recsys-smelu-convert --format=packed)",
            "model_garden_input": "same rows pre-processed (floats + ids), "
                                  "CriteoTsvReader, no shuffle",
            "model_garden_packages": list(MODEL_GARDEN_PACKAGES),
        },
        "ours": ours,
        "model_garden": model_garden,
        "ratios": ratios,
        "targets": {
            "ours_vs_model_garden_min": 1.5,
            **{f"{name}_met": _met(ratios[name], 1.5) for name in (
                "ours_relu_vs_model_garden",
                "ours_relu_packed_vs_model_garden")},
            "smelu_vs_relu_min": 0.95,
            **{f"{name}_met": _met(ratios[name], 0.95) for name in (
                "smelu_vs_relu", "smelu_packed_vs_relu_packed")},
        },
        "total_wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=1 if args.indent else None))
  finally:
    if own_work_dir and not args.keep:
      shutil.rmtree(args.work_dir, ignore_errors=True)


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=300,
                 help="measured steps per run, after --warmup_steps")
  p.add_argument("--warmup_steps", type=int, default=100,
                 help="steps per run before measuring (tracing, first reads)")
  p.add_argument("--log_every", type=int, default=50,
                 help="logging interval (steps) of both trainers")
  p.add_argument("--steps_per_execution", type=int, default=1,
                 help="steps per tf.function call, both sides (Model "
                      "Garden: trainer.steps_per_loop)")
  p.add_argument("--rows", type=int, default=300_000,
                 help="training rows generated (they repeat as needed)")
  p.add_argument("--max_cardinality", type=int, default=100_000,
                 help="distinct values per categorical feature in the data")
  p.add_argument("--repeats", type=int, default=1,
                 help="round-robin repeats; each variant reports the median")
  p.add_argument("--variants", default=",".join(VARIANTS),
                 help="our variants to run, comma separated")
  p.add_argument("--embedding_optimizer", default="adagrad",
                 choices=("sgd", "adagrad", "adam"),
                 help="embedding-table optimizer, both sides")
  p.add_argument("--shuffle_buffer", type=int, default=10_000,
                 help="our data.shuffle_buffer (0: no row shuffle, as Model "
                      "Garden's reader)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--skip_model_garden", action="store_true")
  p.add_argument("--model_garden_dir", default=DEFAULT_MODEL_GARDEN_DIR,
                 help="pip --target directory for Model Garden")
  p.add_argument("--data_dir", default="",
                 help="reuse / keep generated data here (default: temp dir)")
  p.add_argument("--work_dir", default="", help="default: a temp dir")
  p.add_argument("--keep", action="store_true", help="keep the temp dir")
  p.add_argument("--run_timeout", type=float, default=900,
                 help="seconds before one run is abandoned")
  p.add_argument("--indent", action="store_true", help="pretty-print JSON")
  p.add_argument("--quiet", action="store_true", help="no progress on stderr")
  # Internal: the subprocess workers.
  p.add_argument("--worker", choices=("ours", "convert"), default="",
                 help=argparse.SUPPRESS)
  p.add_argument("--variant", default="relu", help=argparse.SUPPRESS)
  p.add_argument("--output_dir", default="", help=argparse.SUPPRESS)
  p.add_argument("--packed_dir", default="", help=argparse.SUPPRESS)
  return p.parse_args(argv)


if __name__ == "__main__":
  main()
