"""Trainer: outputs, resume, determinism, NaN guard, strategies, command line."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from recsys_smelu import config as config_lib
from recsys_smelu import models as models_lib
from recsys_smelu import train as train_lib
from recsys_smelu.models import schedules

from conftest import REPO_ROOT, run_python, tiny_config, write_config_file


def checkpoint_arrays(model_dir: str) -> dict[str, np.ndarray]:
  """Every variable of the latest checkpoint (model and optimizer)."""
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  assert path, f"no checkpoint in {model_dir}"
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if "OBJECT_GRAPH" not in name}


def assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]):
  assert a.keys() == b.keys()
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, f"{len(different)} variables differ, e.g. {different[:3]}"


def train_cli(config_file: str, model_dir: str, *extra: str, **kwargs):
  return run_python(["-m", "recsys_smelu.train", f"--config={config_file}",
                     f"--model_dir={model_dir}", *extra], **kwargs)


def test_train_and_eval_writes_all_outputs(synthetic_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  result = train_lib.train(tiny_config(synthetic_dir), model_dir,
                           interactive=False)
  assert result.step == 20
  metrics = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
  assert metrics["num_examples"] == 1000
  assert metrics["step"] == 20
  for key in ("auc", "logloss", "calibration", "excess_logloss"):
    assert np.isfinite(metrics[key]), key
  assert metrics == pytest.approx(result.eval_metrics)
  saved = config_lib.load(model_dir)  # resolved config, absolute paths
  assert os.path.isabs(saved.data.train_files)
  assert sorted(os.path.basename(p) for p in glob.glob(
      f"{model_dir}/checkpoints/ckpt-*.index")) == ["ckpt-10.index",
                                                    "ckpt-20.index"]
  assert glob.glob(f"{model_dir}/train/events.out.tfevents.*")
  predictions = np.load(f"{model_dir}/predictions.npz")
  assert predictions["probabilities"].shape == (1000,)
  assert set(np.unique(predictions["labels"])) <= {0.0, 1.0}


def test_training_learns_something(synthetic_dir, tmp_path):
  result = train_lib.train(
      tiny_config(synthetic_dir, train__steps=150, train__checkpoint_every=150),
      str(tmp_path / "run"), interactive=False)
  assert result.eval_metrics["auc"] > 0.6, result.eval_metrics


def test_gc_is_frozen_after_the_first_step_and_unfrozen_at_the_end(
    synthetic_dir, tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(train_lib.gc, "freeze", lambda: calls.append(
      ("freeze", int(model_step()))))
  monkeypatch.setattr(train_lib.gc, "unfreeze", lambda: calls.append(
      ("unfreeze", int(model_step()))))
  built = []
  original_build = train_lib.build

  def build(*args, **kwargs):
    built.append(original_build(*args, **kwargs))
    return built[-1]

  def model_step():
    return built[0][0].optimizer.iterations.numpy()

  monkeypatch.setattr(train_lib, "build", build)
  train_lib.train(tiny_config(synthetic_dir, train__steps=6,
                              train__checkpoint_every=3),
                  str(tmp_path / "run"), mode="train", interactive=False)
  assert calls == [("freeze", 1), ("unfreeze", 6)]


def test_resume_continues_from_checkpoint(synthetic_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  first = train_lib.train(tiny_config(synthetic_dir, train__steps=10),
                          model_dir, mode="train", interactive=False)
  assert first.step == 10 and first.eval_metrics is None
  second = train_lib.train(tiny_config(synthetic_dir, train__steps=30),
                           model_dir, mode="train", interactive=False)
  assert second.step == 30
  assert second.checkpoint.endswith("ckpt-30")
  # Nothing to do once train.steps is reached; eval still works.
  third = train_lib.train(tiny_config(synthetic_dir, train__steps=30),
                          model_dir, mode="eval", interactive=False)
  assert third.step == 30 and third.eval_metrics["step"] == 30


def test_eval_without_checkpoint_is_an_error(synthetic_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    train_lib.train(tiny_config(synthetic_dir), str(tmp_path / "empty"),
                    mode="eval")


def test_missing_data_is_a_config_error_before_training(tmp_path):
  config = tiny_config(str(tmp_path / "nowhere"))
  with pytest.raises(config_lib.ConfigError, match="matches no file"):
    train_lib.train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_learning_rate_schedule_warmup_and_decay():
  schedule = schedules.WarmupDecaySchedule(1.0, warmup_steps=10,
                                           total_steps=110, decay="cosine")
  assert float(schedule(0)) == pytest.approx(0.1)
  assert float(schedule(9)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.5)  # half way through decay
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)
  linear = schedules.WarmupDecaySchedule(2.0, 0, 100, "linear")
  assert float(linear(25)) == pytest.approx(1.5)


@pytest.mark.slow
def test_deterministic_twins_and_split_run_are_bit_identical(synthetic_dir,
                                                             tmp_path):
  config = tiny_config(synthetic_dir, determinism=True, train__steps=30,
                       model__dropout=0.1)
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  for name in ("a", "b"):
    result = train_cli(config_file, str(tmp_path / name), "--mode=train")
    assert result.returncode == 0, result.stderr[-3000:]
  # Interrupted at step 10 (a checkpoint), then resumed to 30.
  result = train_cli(config_file, str(tmp_path / "split"), "--mode=train",
                     "--config.train.steps=10")
  assert result.returncode == 0, result.stderr[-3000:]
  result = train_cli(config_file, str(tmp_path / "split"), "--mode=train")
  assert result.returncode == 0, result.stderr[-3000:]
  a = checkpoint_arrays(str(tmp_path / "a"))
  assert_identical(a, checkpoint_arrays(str(tmp_path / "b")))
  assert_identical(a, checkpoint_arrays(str(tmp_path / "split")))
  # A different init seed gives different weights.
  result = train_cli(config_file, str(tmp_path / "c"), "--mode=train",
                     "--config.seed.init=2")
  assert result.returncode == 0, result.stderr[-3000:]
  c = checkpoint_arrays(str(tmp_path / "c"))
  assert any(not np.array_equal(a[k], c[k]) for k in a if "model" in k)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(synthetic_dir,
                                                           tmp_path):
  config = tiny_config(synthetic_dir, determinism=True, train__steps=600,
                       train__checkpoint_every=50, train__log_every=50)
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  killed_dir = tmp_path / "killed"
  args = [sys.executable, "-m", "recsys_smelu.train", f"--config={config_file}",
          f"--model_dir={killed_dir}", "--mode=train"]
  proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  def committed_step():
    # The checkpoint state file is written after ckpt-N.index.
    latest = tf.train.latest_checkpoint(f"{killed_dir}/checkpoints")
    return int(latest.rsplit("-", 1)[1]) if latest else 0

  while committed_step() < 100:
    assert proc.poll() is None, "training ended before it could be killed"
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # The last committed checkpoint (a later one may be half written).
  latest = tf.train.latest_checkpoint(f"{killed_dir}/checkpoints")
  killed_step = int(latest.rsplit("-", 1)[1])
  assert 100 <= killed_step < 600, "killed too late to test resume"
  result = train_cli(config_file, str(killed_dir), "--mode=train")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"(step {killed_step})" in result.stderr
  result = train_cli(config_file, str(tmp_path / "whole"), "--mode=train")
  assert result.returncode == 0, result.stderr[-3000:]
  resumed = checkpoint_arrays(str(killed_dir))
  assert resumed["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 600
  assert_identical(resumed, checkpoint_arrays(str(tmp_path / "whole")))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    synthetic_dir, tmp_path, monkeypatch):
  model_dir = str(tmp_path / "run")
  train_lib.train(tiny_config(synthetic_dir, train__steps=10), model_dir,
                  mode="train", interactive=False)
  # From the resumed run's first step on, the loss is NaN.
  # (train_step takes the cross-entropy from loss_terms.)
  real_terms = models_lib.CTRModel.loss_terms

  def nan_terms(self, *args, **kwargs):
    loss, penalty = real_terms(self, *args, **kwargs)
    return loss * np.nan, penalty

  monkeypatch.setattr(models_lib.CTRModel, "loss_terms", nan_terms)
  with pytest.raises(train_lib.NonFiniteLossError,
                     match=r"NaN/Inf at step 11 .*ckpt-10"):
    train_lib.train(tiny_config(synthetic_dir, train__steps=30), model_dir,
                    mode="train", interactive=False)
  assert tf.train.latest_checkpoint(f"{model_dir}/checkpoints").endswith(
      "ckpt-10")


def test_cli_non_finite_loss_exits_nonzero(synthetic_dir, tmp_path):
  # Linear activations cannot saturate: huge SGD steps overflow to inf/NaN.
  config = tiny_config(synthetic_dir, train__optimizer="sgd",
                       train__learning_rate=1e30, model__activation="linear",
                       train__embedding_optimizer="sgd",
                       train__embedding_learning_rate=1e30, train__steps=200)
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  result = train_cli(config_file, str(tmp_path / "run"))
  assert result.returncode != 0
  assert "NaN/Inf at step" in result.stderr


def test_cli_rejects_unknown_override_with_suggestion(synthetic_dir, tmp_path):
  config_file = write_config_file(str(tmp_path / "config.py"),
                                  tiny_config(synthetic_dir))
  result = train_cli(config_file, str(tmp_path / "run"),
                     "--config.model.actvation=smelu")
  assert result.returncode != 0
  assert "did you mean 'model.activation'" in result.stderr
  assert not (tmp_path / "run").exists()


def test_cli_trains_with_override_and_writes_config(synthetic_dir, tmp_path):
  config_file = write_config_file(str(tmp_path / "config.py"),
                                  tiny_config(synthetic_dir))
  result = train_cli(config_file, str(tmp_path / "run"),
                     "--config.model.activation=smelu:beta=0.5",
                     "--config.train.steps=10")
  assert result.returncode == 0, result.stderr[-3000:]
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["model"]["activation"] == "smelu:beta=0.5"
  assert saved["train"]["steps"] == 10
  assert (tmp_path / "run" / "eval_metrics.json").exists()


def test_cli_help_lists_flags():
  result = run_python(["-m", "recsys_smelu.train", "--helpfull"])
  assert result.returncode == 1, result.stderr[-3000:]  # absl's for --helpfull
  for flag in ("--strategy", "--tpu", "--mode", "--model_dir", "--config"):
    assert flag in result.stdout


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(synthetic_dir, tmp_path):
  config_file = write_config_file(str(tmp_path / "config.py"),
                                  tiny_config(synthetic_dir))
  code = f"""
import recsys_smelu, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from recsys_smelu import train
import importlib.util
spec = importlib.util.spec_from_file_location("c", {config_file!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
strategy = train.make_strategy("mirrored")
result = train.train(module.get_config(), {str(tmp_path / 'run')!r}, strategy)
print("REPLICAS", strategy.num_replicas_in_sync, "STEP", result.step,
      "AUC", result.eval_metrics["auc"], "N", result.eval_metrics["num_examples"])
"""
  result = run_python(["-c", code])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "REPLICAS 2 STEP 20" in result.stdout
  assert "N 1000" in result.stdout


def _free_ports(n: int) -> list[int]:
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _multi_worker_train(config_file: str, model_dir, num_workers: int = 2):
  """Runs ``num_workers`` trainer processes under multi_worker_mirrored on
  this host; returns their outputs after checking each exited with 0."""
  ports = _free_ports(num_workers)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for index in range(num_workers):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "recsys_smelu.train", f"--config={config_file}",
         f"--model_dir={model_dir}", "--strategy=multi_worker_mirrored",
         "--mode=train"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0] * num_workers, "\n\n".join(
      f"worker {i}:\n{out[-2500:]}" for i, out in enumerate(outputs))
  return outputs


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes(synthetic_dir, tmp_path):
  config_file = write_config_file(str(tmp_path / "config.py"),
                                  tiny_config(synthetic_dir))
  model_dir = tmp_path / "run"
  _multi_worker_train(config_file, model_dir)
  assert (model_dir / "checkpoints" / "ckpt-20.index").exists()
  assert (model_dir / "config.json").exists()


@pytest.mark.slow
def test_multi_worker_mirrored_on_csv_with_a_validation_tail(tmp_path):
  """Two workers on one csv file (line shards of the train rows less the
  validation tail): the chief writes the run's schema.json and checkpoints."""
  config = _avazu_config(tmp_path, **{"data.validation_fraction": 0.1})
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  model_dir = tmp_path / "run"
  _multi_worker_train(config_file, model_dir)
  assert (model_dir / "checkpoints" / "ckpt-20.index").exists()
  written = json.loads((model_dir / "schema.json").read_text())
  assert written["label_column"] == "click"
  assert config_lib.load(str(model_dir)).data.schema_file == str(
      model_dir / "schema.json")


def test_tpu_strategy_factory_uses_resolver():
  with mock.patch.object(tf.distribute.cluster_resolver, "TPUClusterResolver"
                         ) as resolver_cls, \
      mock.patch.object(tf.config, "experimental_connect_to_cluster") as connect, \
      mock.patch.object(tf.tpu.experimental, "initialize_tpu_system") as init, \
      mock.patch.object(tf.distribute, "TPUStrategy") as strategy_cls:
    strategy = train_lib.make_strategy("tpu", "my-tpu")
    resolver_cls.assert_called_once_with(tpu="my-tpu")
    connect.assert_called_once_with(resolver_cls.return_value)
    init.assert_called_once_with(resolver_cls.return_value)
    strategy_cls.assert_called_once_with(resolver_cls.return_value)
    assert strategy is strategy_cls.return_value
    # On a TPU VM there is no remote cluster to connect to.
    connect.reset_mock()
    train_lib.make_strategy("tpu", "local")
    connect.assert_not_called()


def test_unknown_strategy_is_an_error():
  with pytest.raises(ValueError, match="multi_worker_mirrored"):
    train_lib.make_strategy("horovod")


def _summary_steps(model_dir: str) -> dict[str, list[int]]:
  steps: dict[str, list[int]] = {}
  for path in sorted(glob.glob(os.path.join(model_dir, "train", "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(int(event.step))
  return {tag: sorted(s) for tag, s in steps.items()}


def test_summaries_at_log_steps_with_steps_per_execution_and_resume(
    synthetic_dir, tmp_path):
  """The monitor counts steps from Keras' batch index: summaries land on the
  logged steps, also with several steps per execution and after a resume."""
  model_dir = str(tmp_path / "run")
  config = tiny_config(synthetic_dir, train__steps=12, train__log_every=4,
                       train__steps_per_execution=2,
                       train__checkpoint_every=6)
  result = train_lib.train(config, model_dir, mode="train", interactive=False)
  assert result.step == 12 and result.examples_per_second > 0
  config = config_lib.override(config, {"train.steps": 20})
  train_lib.train(config, model_dir, mode="train", interactive=False)
  steps = _summary_steps(model_dir)
  for tag in ("train/loss", "train/auc", "train/log_loss",
              "train/examples_per_second", "train/learning_rate"):
    assert steps[tag] == [4, 8, 12, 16, 20], tag


def test_trains_end_to_end_with_native_ops_off(synthetic_dir, tmp_path):
  """RECSYS_SMELU_NATIVE_OPS=0: the stock-op paths train and evaluate, and
  nothing is built (the cache directory is never created)."""
  config_file = write_config_file(
      str(tmp_path / "config.py"),
      tiny_config(synthetic_dir, train__steps=150,
                  train__checkpoint_every=150))
  cache = tmp_path / "native_cache"
  result = train_cli(config_file, str(tmp_path / "run"),
                     env={"RECSYS_SMELU_NATIVE_OPS": "0",
                          "RECSYS_SMELU_CACHE_DIR": str(cache)})
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
  assert metrics["step"] == 150 and metrics["auc"] > 0.6, metrics
  assert np.isfinite(metrics["logloss"])
  assert not cache.exists()
  assert "Native ops unavailable" not in result.stderr


def _with_bad_rows(source: str, target: str, bad_lines: dict[int, str]) -> str:
  """A copy of the TSV file ``source`` at ``target`` with the given lines
  (numbered from 1) replaced."""
  with open(source) as f:
    lines = f.read().splitlines()
  for number, text in bad_lines.items():
    lines[number - 1] = text
  with open(target, "w") as f:
    f.write("\n".join(lines) + "\n")
  return target


@pytest.mark.parametrize("split", ["train", "eval"])
def test_cli_bad_row_ends_with_one_message_and_no_traceback(
    synthetic_dir, tmp_path, split):
  source = sorted(glob.glob(os.path.join(synthetic_dir, f"{split}-*.tsv")))[0]
  with open(source) as f:
    row = f.read().splitlines()[6]
  bad = _with_bad_rows(source, str(tmp_path / f"bad_{split}.tsv"),
                       {7: "2" + row[1:]})
  changes = {f"data__{split}_files": bad}
  if split == "eval":
    changes["data__eval_truth"] = ""
  config = tiny_config(synthetic_dir, train__steps=10, **changes)
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  result = train_cli(config_file, str(tmp_path / "run"))
  output = result.stdout + result.stderr
  assert result.returncode != 0
  assert "Traceback" not in output
  message = (f"{bad}:7: bad row (label: label is [2], expected 0 or 1); "
             "line content: 2\t")
  # The last line (and so the tail of a twin run's train.log) is the message.
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {message}"), last
  assert last.endswith("(set data.on_bad_row=skip to skip and count bad rows)")


def test_skipped_bad_rows_are_logged_as_distinct_rows_over_passes(
    synthetic_dir, tmp_path, caplog):
  source = sorted(glob.glob(os.path.join(synthetic_dir, "train-*.tsv")))[0]
  with open(source) as f:
    rows = f.read().splitlines()[:100]
  small = str(tmp_path / "small.tsv")
  with open(small, "w") as f:
    f.write("\n".join(rows) + "\n")
  bad = _with_bad_rows(small, str(tmp_path / "bad.tsv"),
                       {5: "x", 50: rows[49] + "\textra", 77: "3" + rows[76][1:]})
  # 97 good rows, 64 a step: 20 steps read the file about 13 times.
  config = tiny_config(synthetic_dir, data__train_files=bad,
                       data__on_bad_row="skip", train__steps=20,
                       train__checkpoint_every=20)
  caplog.set_level("WARNING")
  train_lib.train(config, str(tmp_path / "run"), mode="train",
                  interactive=False)
  summaries = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith("Training data: ")]
  assert len(summaries) == 1, [r.getMessage() for r in caplog.records]
  found = re.search(r"skipped 3 distinct bad rows \((\d+) over (\d+) passes\): "
                    r"column_count=2, label=1; first: \S*bad.tsv:5: bad row",
                    summaries[0])
  assert found, summaries[0]
  total, passes = int(found[1]), int(found[2])
  assert passes >= 13
  assert 3 * (passes - 1) < total <= 3 * passes


def test_eval_truth_of_other_eval_files_is_a_config_error_before_building(
    synthetic_dir, tmp_path):
  # The quickstart mistake: new eval files, the synthetic data's truth file.
  first_file = sorted(glob.glob(os.path.join(synthetic_dir, "eval-*.tsv")))[0]
  config = tiny_config(synthetic_dir, data__eval_files=first_file)
  with mock.patch.object(train_lib, "build",
                         side_effect=AssertionError("model built")):
    with pytest.raises(config_lib.ConfigError,
                       match=r"config keys 'data.eval_files' and "
                             r"'data.eval_truth' do not match: the eval split "
                             r"has 500 rows, .*eval_truth.txt' has 1000 "
                             r"values.*--config.data.eval_truth=''"):
      train_lib.train(config, str(tmp_path / "run"), interactive=False)
  assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------
# Validation, epochs and early stopping (issue 15)


def _validation_config(synthetic_dir, **changes):
  """Trains on the first synthetic training file, validates on the second."""
  base = {
      "data__train_files": os.path.join(synthetic_dir,
                                        "train-00000-of-00002.tsv"),
      "data__validation_files": os.path.join(synthetic_dir,
                                             "train-00001-of-00002.tsv"),
      "train__checkpoint_every": 10, "train__eval_every": 10,
  }
  base.update(changes)
  return tiny_config(synthetic_dir, **base)


def _validation_labels(synthetic_dir) -> np.ndarray:
  path = os.path.join(synthetic_dir, "train-00001-of-00002.tsv")
  with open(path) as f:
    return np.array([float(line.split("\t", 1)[0]) for line in f])


def _event_steps(directory: str) -> dict[str, list[int]]:
  steps: dict[str, list[int]] = {}
  for path in sorted(glob.glob(os.path.join(directory, "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(int(event.step))
  return steps


def test_validation_every_eval_every_steps_to_json_and_tensorboard(
    synthetic_dir, tmp_path):
  from recsys_smelu import metrics as metrics_lib
  model_dir = tmp_path / "run"
  result = train_lib.train(_validation_config(synthetic_dir, train__steps=20),
                           str(model_dir), interactive=False)
  records = json.loads((model_dir / "validation.json").read_text())
  assert [r["step"] for r in records] == [10, 20]
  base_rate = _validation_labels(synthetic_dir).mean()
  for r in records:
    assert set(r) == {"step", "logloss", "auc", "ne"}
    assert 0.3 < r["logloss"] < 1.0 and 0.0 < r["auc"] < 1.0
    assert r["ne"] == pytest.approx(
        r["logloss"] / metrics_lib.base_rate_entropy(base_rate), rel=1e-12)
  steps = _event_steps(str(model_dir / "validation"))
  for tag in ("validation/logloss", "validation/auc", "validation/ne"):
    assert steps[tag] == [10, 20], tag
  # No early stopping: the last step is evaluated, with today's keys only.
  assert result.step == 20
  assert "last_step" not in result.eval_metrics
  # The best validation checkpoint is still kept apart.
  best = min(records, key=lambda r: r["logloss"])["step"]
  assert tf.train.latest_checkpoint(str(model_dir / "best")).endswith(
      f"ckpt-{best}")


def test_validation_at_step_equals_scoring_that_checkpoint(synthetic_dir,
                                                           tmp_path):
  """validation.json's log loss at a step is that checkpoint's exact score."""
  from recsys_smelu import data as data_lib
  from recsys_smelu import metrics as metrics_lib
  config = _validation_config(synthetic_dir, train__steps=20)
  model_dir = str(tmp_path / "run")
  train_lib.train(config, model_dir, mode="train", interactive=False)
  records = json.loads(open(os.path.join(model_dir, "validation.json")).read())
  model, checkpoint = train_lib.build(config_lib.validate(config),
                                      tf.distribute.get_strategy(), 20)
  checkpoint.restore(os.path.join(model_dir, "checkpoints", "ckpt-10")
                     ).expect_partial()
  scored = train_lib.predict(model, data_lib.build_dataset(
      config, "validation", 256))
  assert records[0]["step"] == 10
  assert records[0]["logloss"] == pytest.approx(
      metrics_lib.log_loss(scored["labels"], scored["probabilities"]),
      rel=1e-6)
  assert records[0]["auc"] == pytest.approx(
      metrics_lib.roc_auc(scored["labels"], scored["probabilities"]), abs=1e-6)


def test_epochs_resolve_steps_before_the_model_is_built(synthetic_dir,
                                                        tmp_path, monkeypatch):
  built = []
  original_build = train_lib.build

  def build(config, strategy, total=None):
    built.append(total)
    return original_build(config, strategy, total)

  monkeypatch.setattr(train_lib, "build", build)
  # 1500 training rows, 64 a batch: ceil(1.5 * 1500 / 64) = 36 steps.
  config = _validation_config(synthetic_dir, train__steps=0, train__epochs=1.5,
                              train__eval_every=0, train__decay="linear")
  result = train_lib.train(config, str(tmp_path / "run"), interactive=False)
  assert built == [36]
  assert result.total_steps == 36 and result.step == 36
  assert result.eval_metrics["train_steps"] == 36
  # The schedule spans the resolved length: linear decay ends at 0.
  from recsys_smelu import compat
  assert compat.current_learning_rate(result.model.optimizer) == pytest.approx(
      0.0, abs=1e-9)


def test_default_run_writes_no_validation_outputs(synthetic_dir, tmp_path):
  result = train_lib.train(tiny_config(synthetic_dir, train__steps=10),
                           str(tmp_path / "run"), interactive=False)
  assert not (tmp_path / "run" / "validation.json").exists()
  assert not (tmp_path / "run" / "best").exists()
  assert not (tmp_path / "run" / "validation").exists()
  assert set(result.eval_metrics) == {
      "auc", "logloss", "calibration", "mean_prediction", "mean_label",
      "num_examples", "bayes_logloss", "excess_logloss", "step",
      "skipped_bad_rows"}


# Adam at 0.05 overfits 1500 rows within a few hundred steps.
_OVERFITTING = {"train__learning_rate": 0.05, "train__steps": 300,
                "train__early_stopping_patience": 2}


@pytest.mark.slow
def test_early_stopping_evaluates_and_exports_the_best_checkpoint(
    synthetic_dir, tmp_path):
  model_dir = tmp_path / "run"
  config = _validation_config(synthetic_dir, train__export=True, **_OVERFITTING)
  result = train_lib.train(config, str(model_dir), interactive=False)
  records = json.loads((model_dir / "validation.json").read_text())
  losses = [r["logloss"] for r in records]
  best = records[int(np.argmin(losses))]
  metrics = json.loads((model_dir / "eval_metrics.json").read_text())
  assert metrics["stopped_early"] is True
  assert metrics["step"] == best["step"] == result.step
  assert metrics["last_step"] == records[-1]["step"] == result.last_step
  assert metrics["last_step"] == best["step"] + 2 * 10  # patience 2
  assert metrics["last_step"] < 300
  assert metrics["best_validation_logloss"] == best["logloss"]
  assert result.checkpoint.endswith(f"best/ckpt-{best['step']}")
  assert sorted(os.listdir(model_dir / "export")) == [str(best["step"])]
  # Re-evaluating (mode=eval) scores the best checkpoint again, not the last.
  again = train_lib.train(config, str(model_dir), mode="eval",
                          interactive=False)
  assert again.eval_metrics["step"] == best["step"]
  assert again.eval_metrics["logloss"] == pytest.approx(metrics["logloss"])
  # A finished run that stopped early trains no further on a re-run.
  rerun = train_lib.train(config, str(model_dir), mode="train",
                          interactive=False)
  assert rerun.last_step == metrics["last_step"]
  assert json.loads((model_dir / "validation.json").read_text()) == records


@pytest.mark.slow
def test_resume_completes_validation_state_cut_by_a_kill(synthetic_dir,
                                                         tmp_path):
  """A kill after the rolling checkpoint of an evaluation step, before its
  validation record (or before the best checkpoint): resume scores that step
  and saves the best checkpoint, as an uninterrupted run would have."""
  config = _validation_config(synthetic_dir, train__steps=20,
                              train__early_stopping_patience=5)
  model_dir = tmp_path / "run"
  train_lib.train(config, str(model_dir), mode="train", interactive=False)
  records = json.loads((model_dir / "validation.json").read_text())
  assert [r["step"] for r in records] == [10, 20]
  # Cut: record of step 20 and the best checkpoint gone.
  (model_dir / "validation.json").write_text(json.dumps(records[:1]))
  for path in glob.glob(str(model_dir / "best" / "*")):
    os.remove(path)
  resumed = train_lib.train(config_lib.override(config, {"train.steps": 30}),
                            str(model_dir), mode="train", interactive=False)
  after = json.loads((model_dir / "validation.json").read_text())
  assert [r["step"] for r in after] == [10, 20, 30]
  for before, now in zip(records, after):
    assert now["step"] == before["step"]
    for key in ("logloss", "auc", "ne"):
      assert now[key] == pytest.approx(before[key], rel=1e-9), key
  best = min(after, key=lambda r: r["logloss"])
  assert resumed.step == best["step"]
  assert tf.train.latest_checkpoint(str(model_dir / "best")).endswith(
      f"ckpt-{best['step']}")


@pytest.mark.parametrize("changes,match", [
    ({"train__steps": 100, "train__epochs": 2.0},
     r"'train.steps' and 'train.epochs': exactly one must be > 0"),
    ({"train__steps": 0, "train__epochs": 0.0},
     r"'train.steps' and 'train.epochs': exactly one must be > 0"),
    ({"train__eval_every": 15},
     r"'train.eval_every' must be a multiple of 'train.checkpoint_every' "
     r"\(15 vs 10\)"),
    ({"train__eval_every": 0, "train__early_stopping_patience": 2},
     r"'train.early_stopping_patience' needs validation: set "
     r"'train.eval_every'"),
    ({"data__validation_files": "", "train__early_stopping_patience": 2},
     r"'train.early_stopping_patience' needs validation data"),
    ({"data__validation_files": ""},
     r"'train.eval_every' needs validation data"),
    ({"data__train_rows": "0:99999"}, r"data.train_rows"),
])
def test_bad_length_and_validation_keys_fail_before_building(
    synthetic_dir, tmp_path, changes, match):
  config = _validation_config(synthetic_dir, **changes)
  with mock.patch.object(train_lib, "build",
                         side_effect=AssertionError("model built")):
    with pytest.raises(config_lib.ConfigError, match=match):
      train_lib.train(config, str(tmp_path / "run"), interactive=False)
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sigkill_with_early_stopping_then_resume_matches_uninterrupted(
    synthetic_dir, tmp_path):
  """Killed mid-run (SIGKILL, wherever it lands around the checkpoint of
  step 60), resumed: the same validation.json, best step, stop step,
  predictions and best checkpoint as an uninterrupted run. At this learning
  rate validation log loss is lowest at step 40 and training stops at 100."""
  config = _validation_config(
      synthetic_dir, determinism=True, train__steps=600,
      train__checkpoint_every=20, train__eval_every=20, train__log_every=20,
      train__early_stopping_patience=3, train__learning_rate=0.01)
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  killed_dir = tmp_path / "killed"
  args = [sys.executable, "-m", "recsys_smelu.train", f"--config={config_file}",
          f"--model_dir={killed_dir}"]
  proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not glob.glob(f"{killed_dir}/checkpoints/ckpt-60.index"):
    assert proc.poll() is None, "training ended before it could be killed"
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed_dir / "eval_metrics.json").exists(), "killed too late"
  result = train_cli(config_file, str(killed_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  whole_dir = tmp_path / "whole"
  result = train_cli(config_file, str(whole_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  whole = json.loads((whole_dir / "eval_metrics.json").read_text())
  assert whole["stopped_early"] and whole["step"] < whole["last_step"] < 600
  for name in ("validation.json", "eval_metrics.json"):
    assert json.loads((killed_dir / name).read_text()) == json.loads(
        (whole_dir / name).read_text()), name
  killed_predictions = np.load(killed_dir / "predictions.npz")
  whole_predictions = np.load(whole_dir / "predictions.npz")
  assert np.array_equal(killed_predictions["probabilities"],
                        whole_predictions["probabilities"])

  def best_arrays(model_dir):
    path = tf.train.latest_checkpoint(str(model_dir / "best"))
    assert path.endswith(f"ckpt-{whole['step']}")
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if "OBJECT_GRAPH" not in name}

  assert_identical(best_arrays(killed_dir), best_arrays(whole_dir))


# Tabular files (data.format='csv'): schema.json written, reused on resume.


def _avazu_config(tmp_path, **extra):
  from conftest import TINY  # pylint: disable=g-import-not-at-top
  from tabular_samples import avazu_config_changes  # pylint: disable=g-import-not-at-top
  from tabular_samples import write_avazu  # pylint: disable=g-import-not-at-top
  train = write_avazu(str(tmp_path / "data" / "train.csv"), 1200, 0)
  evaluation = write_avazu(str(tmp_path / "data" / "eval.csv"), 300, 1)
  changes = dict(TINY)
  changes.update(avazu_config_changes(train, evaluation))
  changes.update({"data.vocabulary_columns": "site_category",
                  "data.vocab_min_count": 2})
  changes.update(extra)
  return config_lib.override(config_lib.default_config(), changes)


def test_csv_training_writes_schema_json_and_resume_reuses_it(tmp_path):
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "run")
  config = _avazu_config(tmp_path, **{"train.steps": 10})
  first = train_lib.train(config, model_dir, interactive=False)
  schema_path = os.path.join(model_dir, "schema.json")
  with open(schema_path) as f:
    written = json.load(f)
  assert written["label_column"] == "click"
  assert written["ignore_columns"] == ["id"]
  assert [c["name"] for c in written["categorical"]][:2] == ["hour", "C1"]
  vocabulary = {c["name"]: c["vocabulary"] for c in written["categorical"]}
  assert sorted(vocabulary["site_category"]) == [f"cat{i}" for i in range(6)]
  assert config_lib.load(model_dir).data.schema_file == schema_path
  assert first.eval_metrics["num_examples"] == 300
  assert 0.0 < first.eval_metrics["logloss"] < 1.0

  # Resume: the training file changes, the run keeps its schema (statistics
  # and vocabularies of the files it was built from).
  from tabular_samples import write_avazu  # pylint: disable=g-import-not-at-top
  write_avazu(config.data.train_files, 1200, 5)
  second = train_lib.train(config_lib.override(config, {"train.steps": 20}),
                           model_dir, interactive=False)
  assert second.step == 20
  with open(schema_path) as f:
    assert json.load(f) == written
  # Changed roles against the run's schema: an error naming the key.
  with pytest.raises(data_lib.DataError, match="'data.num_buckets' is 55"):
    train_lib.train(config_lib.override(config, {"data.num_buckets": 55}),
                    model_dir, mode="eval", interactive=False)


def test_csv_training_on_row_ranges_with_a_validation_tail(tmp_path):
  """Eval rows, train rows and the validation tail of one csv file: eval
  scores exactly rows 1000: in order, validation exactly rows 800:1000."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from recsys_smelu import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  config = _avazu_config(tmp_path, **{
      "data.eval_files": "", "data.train_rows": ":1000",
      "data.eval_rows": "1000:", "data.validation_fraction": 0.2,
      "train.eval_every": 10})
  result = train_lib.train(config, str(model_dir), interactive=False)
  labels = pd.read_csv(config.data.train_files)["click"].to_numpy(np.float64)
  assert result.eval_metrics["num_examples"] == 200
  with np.load(str(model_dir / "predictions.npz")) as saved:
    np.testing.assert_array_equal(saved["labels"], labels[1000:])
  records = json.loads((model_dir / "validation.json").read_text())
  assert [r["step"] for r in records] == [10, 20]
  entropy = metrics_lib.base_rate_entropy(labels[800:1000].mean())
  for r in records:
    assert r["ne"] == pytest.approx(r["logloss"] / entropy, rel=1e-12)


# ----------------------------------------------------------------------------
# pandas DataFrames (train.train_dataframes).


def test_dataframe_training_equals_the_csv_run_and_resume_checks_the_frame(
    tmp_path):
  """With determinism, a DataFrame trains bit-identically to the csv of its
  rows; resuming with another DataFrame is an error naming the split."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  config = _avazu_config(tmp_path, **{"train.steps": 10, "determinism": True,
                                      "data.vocabulary_columns": ""})
  csv_run = train_lib.train(config, str(tmp_path / "csv"), interactive=False)
  train_df = pd.read_csv(config.data.train_files)
  eval_df = pd.read_csv(config.data.eval_files)
  assert train_df["hour"].dtype == np.int64  # typed as pandas reads it
  model_dir = str(tmp_path / "frames")
  frame_run = train_lib.train_dataframes(config, model_dir, train_df,
                                         eval_df, interactive=False)
  with np.load(str(tmp_path / "csv" / "predictions.npz")) as a, np.load(
      os.path.join(model_dir, "predictions.npz")) as b:
    np.testing.assert_array_equal(a["probabilities"], b["probabilities"])
  assert frame_run.eval_metrics["auc"] == csv_run.eval_metrics["auc"]
  with open(os.path.join(model_dir, "schema.json")) as f:
    assert json.load(f)["columns"] == list(train_df.columns)
  saved = config_lib.load(model_dir)
  assert saved.data.format == "csv"
  assert saved.data.train_files == os.path.join(model_dir, "dataframes",
                                                "train.csv")

  more = config_lib.override(config, {"train.steps": 20})
  resumed = train_lib.train_dataframes(more, model_dir, train_df, eval_df,
                                       interactive=False)
  assert resumed.step == 20
  changed = train_df.copy()
  changed.loc[3, "site_id"] = "other"
  with pytest.raises(data_lib.DataError,
                     match="train_df is not the DataFrame this run was "
                     "started with .*same 1200 rows but other content"):
    train_lib.train_dataframes(more, model_dir, changed, eval_df,
                               interactive=False)
  with pytest.raises(data_lib.DataError, match="1199 rows, the run was "
                     "started with 1200"):
    train_lib.train_dataframes(more, model_dir, train_df.iloc[1:], eval_df,
                               interactive=False)


def test_dataframe_column_without_a_role_and_bad_labels_are_errors(tmp_path):
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  config = _avazu_config(tmp_path)
  train_df = pd.read_csv(config.data.train_files)
  with pytest.raises(data_lib.DataError,
                     match="train_df: header column 'extra' is in no role"):
    train_lib.train_dataframes(config, str(tmp_path / "a"),
                               train_df.assign(extra=1), train_df)
  with pytest.raises(data_lib.DataError, match="train_df: label column "
                     "'click' is 2.0 at row 0, expected 0 or 1"):
    train_lib.train_dataframes(
        config, str(tmp_path / "b"),
        train_df.assign(click=train_df["click"].astype(float) + 2), train_df)


@pytest.mark.slow
def test_dataframes_train_under_mirrored_strategy(tmp_path):
  config = _avazu_config(tmp_path)
  code = f"""
import recsys_smelu, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import pandas as pd
from recsys_smelu import config as config_lib, train
config = config_lib.from_json({config_lib.to_json(config)!r})
strategy = train.make_strategy("mirrored")
result = train.train_dataframes(
    config, {str(tmp_path / 'run')!r}, pd.read_csv(config.data.train_files),
    pd.read_csv(config.data.eval_files), strategy=strategy)
print("REPLICAS", strategy.num_replicas_in_sync, "STEP", result.step,
      "N", result.eval_metrics["num_examples"])
"""
  result = run_python(["-c", code])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "REPLICAS 2 STEP 20 N 300" in result.stdout
