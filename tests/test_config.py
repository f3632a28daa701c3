"""Config schema: overrides, unknown keys with suggestions, type and choice checks."""

import json

import pytest

from recsys_smelu import config as config_lib


def _valid(**changes):
  c = config_lib.override(config_lib.default_config(), changes)
  return config_lib.validate(c, check_paths=False)


def test_defaults_validate():
  _valid()


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
])
def test_validate_rejects_bad_values(key, value, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    _valid(**{key: value})


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
