"""Twin evaluator: variant parsing, seeds, end-to-end runs, resume, failures."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import native
from recsys_smelu import twin

from conftest import run_python, tiny_config, write_config_file


@pytest.mark.parametrize("text,expected", [
    ("relu,smelu,gelu", ["relu", "smelu", "gelu"]),
    ("relu,smelu:beta=1,trainable=true,gelu",
     ["relu", "smelu:beta=1,trainable=true", "gelu"]),
    ("gsmelu:g_neg=0.1,g_pos=1,alpha=1,beta=1;ensemble:n=2",
     ["gsmelu:g_neg=0.1,g_pos=1,alpha=1,beta=1", "ensemble:n=2"]),
    (" relu , swish ", ["relu", "swish"]),
])
def test_split_variant_specs(text, expected):
  assert twin.split_variant_specs(text) == expected


def test_parse_variant_kinds():
  smelu = twin.parse_variant("smelu:beta=0.5")
  assert smelu.changes == {"model.activation": "smelu:beta=0.5"}
  assert smelu.name == "smelu_beta0.5"
  ensemble = twin.parse_variant("ensemble:n=3")
  assert ensemble.changes == {"model.ensemble_size": 3}
  named = twin.parse_variant("deep", {"deep": {"model.top_mlp": [8, 8, 1]}})
  assert named.changes == {"model.top_mlp": [8, 8, 1]}


@pytest.mark.parametrize("spec", ["relux", "smelu:beta=-1", "ensemble:n=1",
                                  "ensemble:size=2"])
def test_parse_variant_errors_name_the_spec(spec):
  with pytest.raises(ValueError, match="variant"):
    twin.parse_variant(spec)


def test_model_seeds_vary_only_what_is_asked():
  config = config_lib.default_config()
  assert twin.model_seeds(config, 0, ["init"]) == twin.model_seeds(config, 0,
                                                                   ["none"])
  s1 = twin.model_seeds(config, 1, ["init"])
  assert s1["init"] != config.seed.init
  assert (s1["data_order"], s1["dropout"]) == (config.seed.data,
                                               config.seed.dropout)
  s2 = twin.model_seeds(config, 2, ["init", "data_order"])
  assert s2["init"] != s1["init"] and s2["data_order"] != config.seed.data
  assert twin.model_seeds(config, 1, ["none"]) == twin.model_seeds(config, 0,
                                                                   ["none"])


def test_bad_vary_and_num_models(synthetic_dir, tmp_path):
  config = tiny_config(synthetic_dir)
  variants = [twin.parse_variant("relu")]
  with pytest.raises(ValueError, match="vary"):
    twin.evaluate_variants(config, str(tmp_path), variants, vary=["weights"])
  with pytest.raises(ValueError, match="num_models"):
    twin.evaluate_variants(config, str(tmp_path), variants, num_models=1)


def _twin_cli(config_file, output_dir, *extra):
  return run_python(["-m", "recsys_smelu.twin", f"--config={config_file}",
                     f"--output_dir={output_dir}", *extra], timeout=600)


@pytest.mark.slow
def test_nothing_varied_gives_zero_pd_and_full_report(synthetic_dir, tmp_path):
  config_file = write_config_file(str(tmp_path / "config.py"),
                                  tiny_config(synthetic_dir))
  out = tmp_path / "out"
  result = _twin_cli(config_file, out, "--variants=relu,smelu:beta=1",
                     "--num_models=2", "--vary=none")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "relu" in result.stdout and "smelu" in result.stdout
  results = json.loads((out / "results.json").read_text())
  assert results["varied"] == ["none"]
  names = [v["name"] for v in results["variants"]]
  assert names == ["relu", "smelu_beta1"]
  for variant in results["variants"]:
    assert variant["pd"]["relative"] == 0.0, variant["pd"]
    assert variant["pd"]["absolute"] == 0.0
    for model in variant["models"]:
      for key in ("auc", "logloss", "calibration", "run_dir", "saved_model",
                  "predictions", "seeds"):
        assert key in model, key
      assert os.path.exists(out / model["predictions"])
      assert os.path.exists(out / model["saved_model"] / "saved_model.pb")
  for name in ("results.csv", "report.md", "pd_vs_logloss.png"):
    assert (out / name).exists(), name
  assert results["environment"]["determinism"] is True
  assert results["environment"]["determinism_from"] == "--determinism (default)"
  assert "| determinism_from | --determinism (default) |" in (
      out / "report.md").read_text()
  # A finished run keeps the checkpoint its metrics came from (the last, of
  # two), the SavedModel, the predictions and small files only.
  run_dir = out / "runs" / "relu" / "0"
  step = json.loads((run_dir / "eval_metrics.json").read_text())["step"]
  files = _files_under(run_dir)
  assert {f for f in files if f.startswith("checkpoints/")} == {
      "checkpoints/checkpoint", f"checkpoints/ckpt-{step}.index",
      f"checkpoints/ckpt-{step}.data-00000-of-00001"}
  exports = {f.split("/")[1] for f in files if f.startswith("export/")}
  assert exports == {str(step)}
  others = {f for f in files if not f.startswith(("checkpoints/", "export/"))}
  assert {f for f in others if not f.startswith("train/")} == {
      "config.json", "eval_metrics.json", "predictions.npz", "run_config.py",
      "train.log", twin.DONE_FILE}
  # ReLU and SmeLU models differ from each other even with equal seeds.
  relu = np.load(out / results["variants"][0]["models"][0]["predictions"])
  smelu = np.load(out / results["variants"][1]["models"][0]["predictions"])
  assert not np.array_equal(relu["probabilities"], smelu["probabilities"])

  # Re-running skips finished runs: nothing retrained, same results.
  done = out / "runs" / "relu" / "0" / twin.DONE_FILE
  mtime = done.stat().st_mtime
  result = _twin_cli(config_file, out, "--variants=relu,smelu:beta=1",
                     "--num_models=2", "--vary=none")
  assert result.returncode == 0, result.stderr[-3000:]
  assert done.stat().st_mtime == mtime
  assert "0 of 4 runs to train" in result.stderr


@pytest.mark.slow
def test_varied_init_gives_nonzero_pd(synthetic_dir, tmp_path):
  config = tiny_config(synthetic_dir)
  results, failures = twin.evaluate_variants(
      config, str(tmp_path / "out"), [twin.parse_variant("relu")],
      num_models=2, vary=["init"])
  assert not failures
  pd = results["variants"][0]["pd"]
  assert pd["relative"] > 0.0 and pd["num_pairs"] == 1
  seeds = [m["seeds"]["init"] for m in results["variants"][0]["models"]]
  assert seeds[0] != seeds[1]


@pytest.mark.slow
def test_failed_run_is_reported_and_others_go_on(synthetic_dir, tmp_path):
  config = tiny_config(synthetic_dir)
  broken = twin.Variant("broken", "broken", {"model.top_mlp": [16, 2]})
  results, failures = twin.evaluate_variants(
      config, str(tmp_path / "out"), [twin.parse_variant("relu"), broken],
      num_models=2, vary=["init"])
  assert len(failures) == 2
  for run_dir, error in failures.items():
    assert "broken" in run_dir and "train.log" in error
  assert [v["name"] for v in results["variants"]] == ["relu"]
  assert (tmp_path / "out" / "report.md").exists()


# ----------------------------------------------------------------------------
# --variant='NAME:section.key=value;...'


def test_parse_config_variant_types_values_by_the_default():
  variant = twin.parse_config_variant(
      "wide_l2: train.steps=50; train.learning_rate=3e-3;model.dropout=0;"
      "model.bottom_mlp=32,4;model.top_mlp=[16, 8, 1];determinism=true;"
      "model.activation=smelu:beta=1,trainable=true;data.group_feature=;")
  assert variant.name == "wide_l2"
  assert variant.changes == {
      "train.steps": 50, "train.learning_rate": 0.003, "model.dropout": 0.0,
      "model.bottom_mlp": [32, 4], "model.top_mlp": [16, 8, 1],
      "determinism": True, "model.activation": "smelu:beta=1,trainable=true",
      "data.group_feature": ""}
  assert [type(variant.changes[k]) for k in ("train.steps", "model.dropout",
                                             "determinism")] == [int, float,
                                                                 bool]
  assert variant.spec.startswith("train.steps=50;")
  assert twin.parse_config_variant("off:determinism=False").changes == {
      "determinism": False}
  # The result overrides a config like any other variant.
  config = twin.run_config(config_lib.default_config(), variant, 1, ["init"])
  assert config.model.bottom_mlp == [32, 4] and config.train.steps == 50


def test_parse_config_variant_types_follow_the_given_config():
  config = config_lib.override(config_lib.default_config(),
                               {"model.top_mlp": [8, 1]})
  assert twin.parse_config_variant("a:model.top_mlp=4,1", config).changes == {
      "model.top_mlp": [4, 1]}


@pytest.mark.parametrize("text,message", [
    ("typo:model.actvation=relu",
     "--variant 'typo:model.actvation=relu': unknown config key "
     "'model.actvation'; did you mean 'model.activation'\\?"),
    ("steps:train.steps=1e3",
     "config key 'train.steps' takes an int \\(currently 1000\\), got '1e3'"),
    ("lr:train.learning_rate=fast", "'train.learning_rate' takes a float"),
    ("det:determinism=maybe", "'determinism' takes a bool"),
    ("mlp:model.bottom_mlp=64,x", "'model.bottom_mlp' takes a list"),
    ("train.steps=5", "expected NAME:section.key=value;section.key=value"),
    ("bad/name:train.steps=5", "NAME made of letters"),
    ("empty:", "sets no config key"),
    ("noeq:train.steps", "'train.steps' is not section.key=value"),
    ("twice:train.steps=5;train.steps=6", "'train.steps' is set twice"),
])
def test_parse_config_variant_errors_name_the_key(text, message):
  with pytest.raises(ValueError, match=message):
    twin.parse_config_variant(text)


def test_variants_from_flags_keeps_the_meaning_of_variants():
  named = {"deep": {"model.top_mlp": [8, 8, 1]}}
  text = "relu,smelu:beta=1,trainable=true;ensemble:n=2"
  assert twin.variants_from_flags(text, [], named) == [
      twin.parse_variant(s, named) for s in twin.split_variant_specs(text)]
  # Neither flag: the config file's get_variants().
  assert [v.name for v in twin.variants_from_flags("", [], named)] == ["deep"]
  # --variant after --variants; alone without --variants.
  both = twin.variants_from_flags("relu", ["fast:train.steps=5"], named)
  assert [(v.name, v.changes) for v in both] == [
      ("relu", {"model.activation": "relu"}), ("fast", {"train.steps": 5})]
  alone = twin.variants_from_flags("", ["fast:train.steps=5"], named)
  assert [v.name for v in alone] == ["fast"]
  with pytest.raises(ValueError, match="give --variants or --variant"):
    twin.variants_from_flags("", [], {})
  with pytest.raises(ValueError, match="'relu' given twice"):
    twin.variants_from_flags("relu", ["relu:train.steps=5"], named)


def test_cli_unknown_variant_key_fails_before_any_run(synthetic_dir, tmp_path):
  config_file = write_config_file(str(tmp_path / "config.py"),
                                  tiny_config(synthetic_dir))
  out = tmp_path / "out"
  result = _twin_cli(config_file, out, "--variants=relu",
                     "--variant=l2:train.steps=5;model.dense_l3=1e-5")
  assert result.returncode != 0
  assert ("unknown config key 'model.dense_l3'; did you mean"
          in result.stderr), result.stderr[-2000:]
  assert not out.exists(), "nothing trained or written"


def test_report_mode_summary_is_schema_2(tmp_path):
  # What --mode=report merges: finished runs' predictions -> schema-2 results.
  rng = np.random.default_rng(0)
  labels = (rng.random(200) < 0.3).astype(np.int64)
  base = config_lib.default_config()
  runs = []
  for spec, noise in (("relu", 0.3), ("smelu:beta=1", 0.05)):
    variant = twin.parse_variant(spec)
    for i in range(3):
      run_dir = tmp_path / "runs" / variant.name / str(i)
      run_dir.mkdir(parents=True)
      logit = np.where(labels == 1, 0.5, -1.0) + rng.normal(0, noise, 200)
      np.savez(run_dir / "predictions.npz", labels=labels,
               probabilities=1 / (1 + np.exp(-logit)))
      run = twin.Run(variant, i, str(run_dir),
                     twin.run_config(base, variant, i, ["init"]),
                     twin.model_seeds(base, i, ["init"]))
      (run_dir / twin.DONE_FILE).write_text(json.dumps(
          {"config": run.config.to_dict(), "seconds": 1.0}))
      runs.append(run)
  results, _ = twin.summarize(runs, str(tmp_path), ["init"], top_k=3)
  assert results["schema_version"] == 2 and results["reference"] == "relu"
  comparison = results["variants"][1]["vs_reference"]
  assert set(comparison) == {"pd", "logloss", "auc", "ne"}
  assert comparison["pd"]["verdict"] == "smaller"
  assert comparison["logloss"]["indices"] == [0, 1, 2]


def test_explicit_config_determinism_wins_over_the_twin_default():
  config = config_lib.override(config_lib.default_config(),
                               {"determinism": False})
  on, source = twin.apply_determinism_flag(config, True, False, {})
  assert on.determinism is True and source == "--determinism (default)"
  off, source = twin.apply_determinism_flag(config, False, True, {})
  assert off.determinism is False and source == "--determinism"
  kept, source = twin.apply_determinism_flag(config, True, False,
                                             {"determinism": False})
  assert kept.determinism is False and source == "--config.determinism"


def _fake_trainer(monkeypatch, num_examples=200):
  """Replaces the train subprocess by one that writes a finished run's files
  (two checkpoints, a SavedModel, predictions) into its --model_dir."""
  real_run = subprocess.run
  calls = []  # (model_dir, its files when training starts)

  def fake_run(command, **kwargs):
    if command[1:3] != ["-m", "recsys_smelu.train"]:
      return real_run(command, **kwargs)
    model_dir = next(a.split("=", 1)[1] for a in command
                     if a.startswith("--model_dir="))
    rng = np.random.default_rng(len(model_dir))
    calls.append((model_dir, sorted(os.listdir(model_dir))))
    os.makedirs(os.path.join(model_dir, "checkpoints"), exist_ok=True)
    for step in (10, 20):
      for suffix in (".index", ".data-00000-of-00001"):
        with open(os.path.join(model_dir, "checkpoints",
                               f"ckpt-{step}{suffix}"), "w") as f:
          f.write("x" * 100)
    os.makedirs(os.path.join(model_dir, "export", "20"))
    with open(os.path.join(model_dir, "export", "20", "saved_model.pb"),
              "w") as f:
      f.write("pb")
    with open(os.path.join(model_dir, "eval_metrics.json"), "w") as f:
      json.dump({"step": 20}, f)
    np.savez(os.path.join(model_dir, "predictions.npz"),
             labels=np.arange(num_examples) % 2 * 1.0,
             probabilities=rng.uniform(0.1, 0.9, num_examples))
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(twin.subprocess, "run", fake_run)
  monkeypatch.setattr(native, "prepare", lambda: None)
  return calls


def test_unfinished_run_resumes_with_its_checkpoints_then_is_skipped(
    synthetic_dir, tmp_path, monkeypatch):
  calls = _fake_trainer(monkeypatch)
  config = tiny_config(synthetic_dir, data__eval_truth="")
  out = tmp_path / "out"
  unfinished = out / "runs" / "relu" / "1"
  (unfinished / "checkpoints").mkdir(parents=True)
  (unfinished / "checkpoints" / "ckpt-10.index").write_text("x")
  args = (config, str(out), [twin.parse_variant("relu")])
  _, failures = twin.evaluate_variants(*args, num_models=2, vary=["init"])
  assert not failures
  assert [(os.path.basename(d), files) for d, files in calls] == [
      ("0", ["run_config.py", "train.log"]),
      ("1", ["checkpoints", "run_config.py", "train.log"])]
  assert sorted(os.listdir(unfinished / "checkpoints")) == [
      "checkpoint", "ckpt-20.data-00000-of-00001", "ckpt-20.index"]
  _, failures = twin.evaluate_variants(*args, num_models=2, vary=["init"])
  assert not failures and len(calls) == 2  # finished: not trained again


def test_remote_output_dir_is_written_locally_and_copied(
    synthetic_dir, tmp_path, monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _fake_trainer(monkeypatch)
  monkeypatch.chdir(tmp_path)
  config = tiny_config(synthetic_dir, data__eval_truth="")
  remote = "ram://bucket/twin"
  variants = [twin.parse_variant("relu"), twin.parse_variant("gelu")]
  results, failures = twin.evaluate_variants(
      config, remote, variants, num_models=2, vary=["init"],
      local_dir=str(tmp_path / "host1"))
  assert not failures and not os.path.exists(tmp_path / "ram:")
  for name in ("results.json", "report.md", "results.csv",
               "runs/relu/0/predictions.npz", "runs/gelu/1/run_done.json",
               "runs/gelu/1/checkpoints/ckpt-20.index",
               "runs/gelu/1/export/20/saved_model.pb"):
    assert tf.io.gfile.exists(f"{remote}/{name}"), name
  # Pruned before the copy: the other checkpoint never reaches the remote.
  assert not tf.io.gfile.exists(f"{remote}/runs/relu/0/checkpoints/"
                                "ckpt-10.index")
  with tf.io.gfile.GFile(f"{remote}/results.json") as f:
    assert json.load(f)["variants"] == json.loads(json.dumps(
        results["variants"]))

  # Another host reports from the remote alone: nothing is retrained.
  monkeypatch.setattr(twin, "_train_subprocess", None)  # must not be called
  again, failures = twin.evaluate_variants(
      config, remote, variants, num_models=2, vary=["init"], mode="report",
      local_dir=str(tmp_path / "host2"))
  assert not failures
  assert [v["pd"] for v in again["variants"]] == [
      v["pd"] for v in results["variants"]]


def test_native_ops_are_built_once_before_the_runs(monkeypatch, tmp_path):
  events = []
  monkeypatch.setattr(native, "prepare", lambda: events.append("prepare"))

  def fake_train(run):
    events.append(run.index)
    return run, "not trained (test)", 0.0

  monkeypatch.setattr(twin, "_train_subprocess", fake_train)
  config = config_lib.default_config()
  runs = [twin.Run(twin.parse_variant("relu"), i, str(tmp_path / str(i)),
                   config, {}) for i in range(3)]
  failures = twin.train_runs(runs, parallel=2)
  assert events[0] == "prepare" and sorted(events[1:]) == [0, 1, 2]
  assert len(failures) == 3


def _files_under(directory) -> set[str]:
  return {os.path.relpath(os.path.join(root, name), directory)
          for root, _, names in os.walk(directory) for name in names}


def test_prune_keeps_the_evaluated_checkpoint_and_newest_export(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path / "run"
  weights = tf.Variable([1.0, 2.0])
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(w=weights),
                                       str(run_dir / "checkpoints"),
                                       max_to_keep=3)
  for step in (10, 20, 30):
    weights.assign_add([1.0, 1.0])
    manager.save(checkpoint_number=step)
  for version in ("20", "30"):
    (run_dir / "export" / version / "variables").mkdir(parents=True)
    (run_dir / "export" / version / "saved_model.pb").write_bytes(b"pb")
  (run_dir / "eval_metrics.json").write_text(json.dumps({"step": 30}))
  (run_dir / "predictions.npz").write_bytes(b"npz")

  deleted = twin.prune_run_dir(str(run_dir))
  assert _files_under(run_dir) == {
      "eval_metrics.json", "predictions.npz", "export/30/saved_model.pb",
      "checkpoints/checkpoint", "checkpoints/ckpt-30.index",
      "checkpoints/ckpt-30.data-00000-of-00001"}
  assert len(deleted) == 5  # ckpt-10 and -20 (index, data), export/20
  # The checkpoint state lists the kept one alone; it restores.
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(w=weights),
                                       str(run_dir / "checkpoints"),
                                       max_to_keep=3)
  assert manager.checkpoints == [str(run_dir / "checkpoints" / "ckpt-30")]
  weights.assign([0.0, 0.0])
  tf.train.Checkpoint(w=weights).restore(manager.latest_checkpoint)
  assert weights.numpy().tolist() == [4.0, 5.0]
  assert twin.prune_run_dir(str(run_dir)) == []  # idempotent

  # The step's checkpoint missing: nothing deleted.
  (run_dir / "eval_metrics.json").write_text(json.dumps({"step": 40}))
  (run_dir / "export" / "20").mkdir()
  assert twin.prune_run_dir(str(run_dir)) == []
  assert (run_dir / "export" / "20").exists()


# ----------------------------------------------------------------------------
# Training length chosen on validation by model 0 (issue 15)


def _early_stopping_config(synthetic_dir, **changes):
  base = {
      "data__train_files": os.path.join(synthetic_dir,
                                        "train-00000-of-00002.tsv"),
      "data__validation_files": os.path.join(synthetic_dir,
                                             "train-00001-of-00002.tsv"),
      "train__steps": 200, "train__checkpoint_every": 10,
      "train__eval_every": 10, "train__early_stopping_patience": 2,
  }
  base.update(changes)
  return tiny_config(synthetic_dir, **base)


def _fake_early_stopping_trainer(monkeypatch, best_step=30):
  """A train subprocess that writes a finished run: model 0 (early
  stopping on) 'stops' at ``best_step + 20`` with its best checkpoint at
  ``best_step``; a run with train.stop_at_step trains exactly that far."""
  real_run = subprocess.run
  calls = []  # (model_dir, its config)

  def fake_run(command, **kwargs):
    if command[1:3] != ["-m", "recsys_smelu.train"]:
      return real_run(command, **kwargs)
    arg = lambda name: next(a.split("=", 1)[1] for a in command
                            if a.startswith(f"--{name}="))
    model_dir = arg("model_dir")
    config = config_lib.load_config_module(arg("config")).get_config()
    calls.append((model_dir, config))
    t = config.train
    metrics = {"step": t.stop_at_step or t.steps}
    if t.early_stopping_patience:
      metrics = {"step": best_step, "last_step": best_step + 20,
                 "stopped_early": True, "best_validation_logloss": 0.5}
    directory = os.path.join(model_dir, "best" if t.early_stopping_patience
                             else "checkpoints")
    os.makedirs(directory, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
      with open(os.path.join(directory, f"ckpt-{metrics['step']}{suffix}"),
                "w") as f:
        f.write("x")
    with open(os.path.join(model_dir, "eval_metrics.json"), "w") as f:
      json.dump(metrics, f)
    np.savez(os.path.join(model_dir, "predictions.npz"),
             labels=np.arange(100) % 2 * 1.0,
             probabilities=np.random.default_rng(len(calls)).uniform(
                 0.1, 0.9, 100))
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(twin.subprocess, "run", fake_run)
  monkeypatch.setattr(native, "prepare", lambda: None)
  return calls


def test_twins_train_the_length_model_0_chose_by_early_stopping(
    synthetic_dir, tmp_path, monkeypatch):
  calls = _fake_early_stopping_trainer(monkeypatch, best_step=30)
  config = _early_stopping_config(synthetic_dir, data__eval_truth="")
  variants = [twin.parse_variant("relu"), twin.parse_config_variant(
      "fixed:train.early_stopping_patience=0;train.steps=40")]
  out = tmp_path / "out"
  results, failures = twin.evaluate_variants(
      config, str(out), variants, num_models=3, vary=["init"], parallel=3)
  assert not failures
  relu = [(os.path.basename(d), c) for d, c in calls if "/relu/" in d]
  # Model 0 first, with early stopping; then its twins, stopped at its best
  # step without early stopping, under the same schedule length.
  assert relu[0][0] == "0" and relu[0][1].train.early_stopping_patience == 2
  assert sorted(i for i, _ in relu[1:]) == ["1", "2"]
  for _, c in relu[1:]:
    assert c.train.early_stopping_patience == 0
    assert c.train.stop_at_step == 30 and c.train.steps == 200
    assert c.train.learning_rate == relu[0][1].train.learning_rate
  by_name = {v["name"]: v for v in results["variants"]}
  assert by_name["relu"]["train_steps"] == 30
  assert by_name["relu"]["length_from"] == \
      "early stopping on validation (model 0)"
  assert by_name["fixed"]["train_steps"] == 40
  assert by_name["fixed"]["length_from"] == "config"
  saved = json.loads((out / "results.json").read_text())
  assert [v["train_steps"] for v in saved["variants"]] == [30, 40]
  report = (out / "report.md").read_text()
  assert ("- Training length: relu 30 steps (early stopping on validation "
          "(model 0)); fixed 40 steps (config)") in report
  # Pruned to the best checkpoint of model 0, the step's one of the twins.
  assert sorted(os.listdir(out / "runs" / "relu" / "0" / "best")) == [
      "ckpt-30.data-00000-of-00001", "ckpt-30.index"]
  assert not (out / "runs" / "relu" / "0" / "checkpoints").exists()
  # A re-run (and --mode=report) finds every run finished.
  results, failures = twin.evaluate_variants(
      config, str(out), variants, num_models=3, vary=["init"], mode="report")
  assert not failures and len(results["variants"]) == 2
  twin.evaluate_variants(config, str(out), variants, num_models=3,
                         vary=["init"])
  assert len(calls) == 6


def test_twins_wait_for_a_failed_model_0(synthetic_dir, tmp_path,
                                         monkeypatch):
  monkeypatch.setattr(twin, "_train_subprocess",
                      lambda run: (run, "exit status 1", 0.0))
  monkeypatch.setattr(native, "prepare", lambda: None)
  config = _early_stopping_config(synthetic_dir)
  runs_failed = twin.evaluate_variants(
      config, str(tmp_path / "out"), [twin.parse_variant("relu")],
      num_models=2, vary=["init"], mode="train")[1]
  run_0, run_1 = (str(tmp_path / "out" / "runs" / "relu" / i) for i in "01")
  assert runs_failed[run_0] == "exit status 1"
  assert runs_failed[run_1].startswith(
      "waits for the training length of model 0")


def test_prune_keeps_the_best_checkpoint_of_an_early_stopped_run(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path / "run"
  weights = tf.Variable([1.0])
  checkpoint = tf.train.Checkpoint(w=weights)
  rolling = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"),
                                       max_to_keep=3)
  best = tf.train.CheckpointManager(checkpoint, str(run_dir / "best"),
                                    max_to_keep=1)
  for step in (10, 20, 30, 40):
    weights.assign_add([1.0])
    rolling.save(checkpoint_number=step)
    if step == 20:
      best.save(checkpoint_number=step)
  (run_dir / "eval_metrics.json").write_text(json.dumps(
      {"step": 20, "last_step": 40, "stopped_early": True}))
  twin.prune_run_dir(str(run_dir))
  assert _files_under(run_dir) == {
      "eval_metrics.json", "best/checkpoint", "best/ckpt-20.index",
      "best/ckpt-20.data-00000-of-00001"}
  weights.assign([0.0])
  checkpoint.restore(tf.train.latest_checkpoint(str(run_dir / "best")))
  assert weights.numpy().tolist() == [3.0]
  assert twin.prune_run_dir(str(run_dir)) == []  # idempotent
  # Validation without early stopping: the rolling checkpoint is the one.
  other = tmp_path / "other"
  rolling = tf.train.CheckpointManager(checkpoint, str(other / "checkpoints"),
                                       max_to_keep=3)
  best = tf.train.CheckpointManager(checkpoint, str(other / "best"),
                                    max_to_keep=1)
  rolling.save(checkpoint_number=10)
  best.save(checkpoint_number=10)
  rolling.save(checkpoint_number=20)
  (other / "eval_metrics.json").write_text(json.dumps({"step": 20}))
  twin.prune_run_dir(str(other))
  assert _files_under(other) == {
      "eval_metrics.json", "checkpoints/checkpoint", "checkpoints/ckpt-20.index",
      "checkpoints/ckpt-20.data-00000-of-00001"}


@pytest.mark.slow
def test_early_stopped_twins_with_nothing_varied_are_identical(synthetic_dir,
                                                               tmp_path):
  """Model 0 stops early; model 1, trained to model 0's best step without
  early stopping, is the same model: PD exactly 0."""
  config = _early_stopping_config(synthetic_dir, train__learning_rate=0.05)
  config_file = write_config_file(str(tmp_path / "config.py"), config)
  out = tmp_path / "out"
  result = _twin_cli(config_file, out, "--variants=relu", "--num_models=2",
                     "--vary=none")
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads((out / "results.json").read_text())
  (variant,) = results["variants"]
  assert variant["pd"]["relative"] == 0.0
  metrics = [json.loads((out / "runs" / "relu" / i / "eval_metrics.json"
                         ).read_text()) for i in "01"]
  assert metrics[0]["stopped_early"] is True
  assert metrics[1]["step"] == metrics[0]["step"] == variant["train_steps"]
  assert metrics[0]["last_step"] > metrics[0]["step"]
  assert "last_step" not in metrics[1]
  assert f"relu {variant['train_steps']} steps" in (out / "report.md"
                                                    ).read_text()


@pytest.mark.slow
def test_twins_on_avazu_shaped_csv_files(tmp_path):
  """The twin evaluator on csv files by column roles: each run writes and
  keeps its schema.json and a SavedModel serving the named columns."""
  from conftest import TINY  # pylint: disable=g-import-not-at-top
  from tabular_samples import avazu_config_changes  # pylint: disable=g-import-not-at-top
  from tabular_samples import CATEGORICAL  # pylint: disable=g-import-not-at-top
  from tabular_samples import write_avazu  # pylint: disable=g-import-not-at-top
  train = write_avazu(str(tmp_path / "train.csv"), 1000, 0)
  evaluation = write_avazu(str(tmp_path / "eval.csv"), 200, 1)
  changes = dict(TINY)
  changes.update(avazu_config_changes(train, evaluation))
  changes["train.steps"] = 10
  config = config_lib.override(config_lib.default_config(), changes)
  out = tmp_path / "out"
  results, failures = twin.evaluate_variants(
      config, str(out), [twin.parse_variant("relu")], num_models=2,
      vary=["init"])
  assert not failures, failures
  variant = results["variants"][0]
  assert variant["pd"]["relative"] > 0.0 and variant["pd"]["num_pairs"] == 1
  for model in variant["models"]:
    run_dir = out / model["run_dir"]
    schema = json.loads((run_dir / "schema.json").read_text())
    assert schema["categorical_columns"] == list(CATEGORICAL)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    loaded = tf.saved_model.load(str(out / model["saved_model"]))
    specs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert set(specs) == set(CATEGORICAL)
    predictions = np.load(out / model["predictions"])["probabilities"]
    assert predictions.shape == (200,)


@pytest.mark.slow
def test_twins_on_dataframes_write_them_once(tmp_path):
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from conftest import TINY  # pylint: disable=g-import-not-at-top
  from recsys_smelu import report  # pylint: disable=g-import-not-at-top
  from recsys_smelu.data import pipeline  # pylint: disable=g-import-not-at-top
  from tabular_samples import avazu_config_changes, avazu_rows  # pylint: disable=g-import-not-at-top,g-multiple-import
  header, rows = avazu_rows(800, 0)
  train_df = pd.DataFrame(rows, columns=header)
  header, rows = avazu_rows(200, 1)
  eval_df = pd.DataFrame(rows, columns=header)
  changes = dict(TINY)
  changes.update(avazu_config_changes("", ""))
  changes["train.steps"] = 10
  config = config_lib.override(config_lib.default_config(), changes)
  out = tmp_path / "out"
  results, failures = twin.evaluate_variants(
      config, str(out), [twin.parse_variant("relu")], num_models=2,
      vary=["init"], train_df=train_df, eval_df=eval_df)
  assert not failures, failures
  assert sorted(os.listdir(out / "dataframes")) == [
      "dataframes.json", "eval.csv", "train.csv"]
  table = report.results_table(results)
  assert isinstance(table, pd.DataFrame) and list(table["variant"]) == [
      "relu"]
  first = results["variants"][0]["models"][0]
  assert np.load(out / first["predictions"])["probabilities"].shape == (200,)
  with pytest.raises(pipeline.DataError, match="eval_df is not the "
                     "DataFrame"):
    twin.evaluate_variants(config, str(out), [twin.parse_variant("relu")],
                           num_models=2, vary=["init"], train_df=train_df,
                           eval_df=eval_df.iloc[:100])
