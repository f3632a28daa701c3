"""Every shipped config file loads, validates, and its named variants apply."""

import glob
import os

import pytest

from recsys_smelu import config as config_lib

from conftest import REPO_ROOT

CONFIG_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "*.py")))


def test_configs_exist():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  for required in ("quickstart.py", "criteo_dlrm.py", "criteo_dcn.py",
                   "movielens.py", "tpu_criteo_dlrm.py"):
    assert required in names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_file_validates(path):
  module = config_lib.load_config_module(path)
  config = module.get_config()
  # Data paths point at data users download or generate; keys and values
  # are what is checked here.
  config_lib.validate(config, check_paths=False)
  for name, changes in getattr(module, "get_variants", dict)().items():
    config_lib.validate(config_lib.override(config, changes), check_paths=False)


def test_config_argument_sets_activation():
  module = config_lib.load_config_module(
      os.path.join(REPO_ROOT, "configs", "quickstart.py"))
  assert module.get_config("smelu:beta=0.5").model.activation == "smelu:beta=0.5"
