"""Config schema: overrides, unknown keys with suggestions, type and choice checks."""

import json

import pytest

from recsys_smelu import config as config_lib


def _valid(**changes):
  c = config_lib.override(config_lib.default_config(), changes)
  return config_lib.validate(c, check_paths=False)


def test_defaults_validate():
  default = config_lib.default_config()
  returned = config_lib.validate(default, check_paths=False)
  assert returned is default  # validate checks, it does not rewrite
  assert returned.to_dict() == config_lib.default_config().to_dict()
  assert returned.model.interaction == "dot"
  assert returned.train.checkpoint_every % returned.train.steps_per_execution == 0


def test_override_unknown_key_suggests_neighbour():
  with pytest.raises(config_lib.ConfigError,
                     match=r"'model.actvation'.*did you mean 'model.activation'"):
    config_lib.override(config_lib.default_config(), {"model.actvation": "smelu"})


def test_validate_rejects_added_key():
  c = config_lib.default_config()
  c.train.lerning_rate = 0.1
  with pytest.raises(config_lib.ConfigError, match="train.lerning_rate"):
    config_lib.validate(c, check_paths=False)


@pytest.mark.parametrize("key,value,match", [
    ("model.interaction", "attention", "model.interaction"),
    ("train.steps", 0, "train.steps"),
    ("model.dropout", 1.0, "model.dropout"),
    ("data.on_bad_row", "ignore", "data.on_bad_row"),
    ("train.embedding_learning_rate", 0.0, "train.embedding_learning_rate"),
    ("train.embedding_optimizer", "rmsprop", "train.embedding_optimizer"),
    ("train.decay", "step", "train.decay"),
    ("model.cross_mode", "zigzag", "model.cross_mode"),
    ("model.normalization", "group", "model.normalization"),
    ("model.mixed_precision", "float8", "model.mixed_precision"),
    ("model.top_mlp", [], "model.top_mlp.*empty"),
    ("model.top_mlp", [8, 2], "model.top_mlp.*end with width 1"),
    ("model.bottom_mlp", [8, -4], "model.bottom_mlp.*positive integer"),
    ("model.top_mlp", [8.5, 1], "model.top_mlp.*positive integer"),
    ("model.top_mlp", [True, 1], "model.top_mlp.*positive integer"),
    ("model.ensemble_size", 0, "model.ensemble_size"),
])
def test_validate_rejects_bad_values(key, value, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    _valid(**{key: value})


@pytest.mark.parametrize("changes,match", [
    ({"model.interaction": "cross", "model.cross_num_layers": 0},
     "model.cross_num_layers"),
    ({"model.interaction": "cross", "model.cross_projection_dim": -1},
     "model.cross_projection_dim"),
    ({"train.steps_per_execution": 3, "train.checkpoint_every": 10},
     r"'train.checkpoint_every' must be a multiple of "
     r"'train.steps_per_execution' \(10 vs 3\)"),
])
def test_validate_checks_keys_together(changes, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    _valid(**changes)


def test_cross_keys_are_checked_only_for_the_cross_interaction():
  _valid(**{"model.interaction": "dot", "model.cross_num_layers": 0})
  _valid(**{"train.steps_per_execution": 5, "train.checkpoint_every": 10})


def test_choice_lists_come_from_the_tf_free_choices_module():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from recsys_smelu import choices  # pylint: disable=g-import-not-at-top
  assert set(choices.BY_KEY) <= set(config_lib.flat_keys())
  for key, allowed in choices.BY_KEY.items():
    section, leaf = key.split(".")
    assert config_lib.default_config()[section][leaf] in allowed, key
    with pytest.raises(config_lib.ConfigError,
                       match=f"{key}.*choose one of {', '.join(allowed)}"):
      _valid(**{key: "not-a-choice"})
  code = ("import sys; import recsys_smelu.choices, recsys_smelu.config; "
          "sys.exit('tensorflow' in sys.modules)")
  assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_wrong_type_names_key():
  c = config_lib.default_config()
  with pytest.raises(config_lib.ConfigError, match="train.steps"):
    config_lib.override(c, {"train.steps": "many"})


def test_missing_data_files_named(tmp_path):
  c = config_lib.override(config_lib.default_config(), {
      "data.train_files": str(tmp_path / "nothing-*.tsv"),
      "data.eval_files": str(tmp_path / "nothing.tsv")})
  with pytest.raises(config_lib.ConfigError, match="nothing-\\*.tsv"):
    config_lib.validate(c)


def test_json_round_trip(tmp_path):
  c = _valid(**{"model.activation": "smelu:beta=0.5", "model.top_mlp": [16, 1]})
  config_lib.save(c, str(tmp_path))
  loaded = config_lib.load(str(tmp_path))
  assert loaded.to_dict() == c.to_dict()
  assert json.loads((tmp_path / "config.json").read_text())["model"][
      "activation"] == "smelu:beta=0.5"


def test_validation_files_must_match(tmp_path):
  train = tmp_path / "train.tsv"
  train.write_text("")
  c = config_lib.override(config_lib.default_config(), {
      "data.train_files": str(train), "data.eval_files": str(train),
      "data.validation_files": str(tmp_path / "val-*.tsv")})
  with pytest.raises(config_lib.ConfigError,
                     match=r"'data.validation_files'.*val-\*.tsv"):
    config_lib.validate(c)


@pytest.mark.parametrize("changes,match", [
    ({"data.validation_fraction": 1.0},
     r"'data.validation_fraction' must be in \(0, 1\), or 0 for none, got 1.0"),
    ({"data.validation_fraction": -0.1}, "'data.validation_fraction'"),
    ({"data.validation_fraction": 1.5}, "'data.validation_fraction'"),
    ({"data.validation_fraction": 0.1, "data.validation_files": "v.tsv"},
     "'data.validation_files' and 'data.validation_fraction' are both set"),
    ({"data.validation_split": "random"},
     "'data.validation_split'.*choose one of tail, hash"),
    ({"data.validation_ratings_per_user": -1},
     "'data.validation_ratings_per_user' must be >= 0"),
    ({"data.validation_ratings_per_user": 2},
     "'data.validation_ratings_per_user' is only for data.format='movielens'"),
    ({"data.format": "movielens", "data.validation_fraction": 0.1},
     "'data.validation_fraction' is 0.1, but data.format='movielens' splits by"
     " user and time.*data.validation_ratings_per_user"),
    ({"data.format": "movielens", "data.validation_files": "v.tsv"},
     "'data.validation_files'.*movielens"),
    ({"data.format": "movielens", "data.train_rows": "0:10"},
     "'data.train_rows'.*movielens"),
    ({"data.train_rows": "8000"}, r"'data.train_rows' is '8000'; expected a "
     r"row range 'start:stop'"),
    ({"data.eval_rows": "a:b"}, "'data.eval_rows' is 'a:b'; expected"),
    ({"data.eval_rows": "0:10:2"}, "'data.eval_rows' is '0:10:2'; expected"),
    ({"data.train_rows": "0-8000"}, "'data.train_rows' is '0-8000'"),
    ({"data.train_rows": "1.5:3"}, "'data.train_rows' is '1.5:3'"),
])
def test_validation_and_row_range_keys_are_checked(changes, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    _valid(**changes)


def test_validation_and_row_range_keys_that_validate():
  _valid(**{"data.validation_fraction": 0.1, "data.validation_split": "hash"})
  _valid(**{"data.format": "movielens", "data.validation_ratings_per_user": 5})
  for text in ("0:8000", ":8000", "8000:", "-2000:", " 1_000 : -1 ", ":", ""):
    _valid(**{"data.train_rows": text, "data.eval_rows": text})


@pytest.mark.parametrize("text,num_rows,expected", [
    ("", 10, (0, 10)), (":", 10, (0, 10)), ("0:8", 10, (0, 8)),
    ("8:", 10, (8, 10)), ("-2:", 10, (8, 10)), (":-3", 10, (0, 7)),
    ("0:10", 10, (0, 10)), ("-10:", 10, (0, 10)),
])
def test_resolve_row_range(text, num_rows, expected):
  assert config_lib.resolve_row_range(text, "data.train_rows",
                                      num_rows) == expected


@pytest.mark.parametrize("text", ["0:11", "11:", "-11:", "5:5", "6:4", ":-10"])
def test_resolve_row_range_refuses_what_a_slice_would_clip(text):
  with pytest.raises(config_lib.ConfigError,
                     match=f"'data.eval_rows' is '{text}'.*10 rows"):
    config_lib.resolve_row_range(text, "data.eval_rows", 10)


def test_eval_files_may_be_empty_with_eval_rows(tmp_path):
  train = tmp_path / "train.tsv"
  train.write_text("")
  base = {"data.train_files": str(train), "data.eval_files": ""}
  with pytest.raises(config_lib.ConfigError,
                     match="'data.eval_files' is empty.*or data.eval_rows"):
    config_lib.validate(config_lib.override(config_lib.default_config(), base))
  config_lib.validate(config_lib.override(config_lib.default_config(), {
      **base, "data.eval_rows": "8000:", "data.train_rows": ":8000"}))
