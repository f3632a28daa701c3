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


SIBLING_LOADERS = [p for p in CONFIG_FILES
                   if "load_config_module" in open(p).read()]


@pytest.mark.parametrize("path", SIBLING_LOADERS, ids=os.path.basename)
def test_copied_config_without_its_sibling_names_the_missing_file(path,
                                                                  tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  copy = tmp_path / os.path.basename(path)
  copy.write_text(open(path).read())
  with pytest.raises(flags.IllegalFlagValueError,
                     match=f"config file {tmp_path}/\\w+\\.py not found "
                     f"\\(loaded by config file {copy}"):
    config_lib.load_config_module(str(copy))


def test_train_cli_with_a_copied_config_prints_one_message(tmp_path):
  from conftest import run_python  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "study_synthetic.py"
  copy.write_text(open(os.path.join(REPO_ROOT, "configs",
                                    "study_synthetic.py")).read())
  result = run_python(["-m", "recsys_smelu.train", f"--config={copy}",
                       f"--model_dir={tmp_path / 'model'}"])
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert (f"config file {tmp_path}/quickstart.py not found (loaded by config "
          f"file {copy}") in result.stderr
