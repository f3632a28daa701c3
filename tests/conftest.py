"""Shared fixtures: one tiny synthetic Criteo-format data set per test session,
and tiny configs (a few seconds of training) that point at it."""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2
from recsys_smelu import config as config_lib
from recsys_smelu.data import features

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small enough that a model trains in seconds, large enough to learn from.
TINY = {
    "data.num_buckets": 100,
    "data.shuffle_buffer": 512,
    "model.embedding_dim": 4,
    "model.bottom_mlp": [16, 4],
    "model.top_mlp": [16, 1],
    "train.batch_size": 64,
    "train.eval_batch_size": 256,
    "train.steps": 20,
    "train.checkpoint_every": 10,
    "train.log_every": 5,
    "train.learning_rate": 3e-3,
}


# Criteo-format rows small enough to read: label, I1, I2, C1, C2, C3.
SMALL_CRITEO_SCHEMA = features.criteo_schema(num_buckets=1000, embedding_dim=4,
                                             num_dense=2, num_categorical=3)


def tsv_row(*fields) -> str:
  return "\t".join(str(v) for v in fields)


def small_criteo_rows(n: int, start: int = 0) -> list[str]:
  """Valid rows of ``SMALL_CRITEO_SCHEMA``: I2 missing every third row, C2
  always empty."""
  return [tsv_row(k % 2, k, "" if k % 3 == 0 else -k, f"{k:08x}", "",
                  f"v{k % 5}") for k in range(start, start + n)]


def require_native_compiler() -> None:
  """Skips the calling test when no C++ compiler can build the native ops."""
  compiler = shlex.split(os.environ.get("CXX", "c++"))[0]
  if shutil.which(compiler) is None:
    pytest.skip(f"no C++ compiler {compiler!r} to build the native ops "
                "(recsys_smelu.native)")


def write_lines(path: str, lines, *, newline_at_end: bool = True,
                crlf: bool = False) -> str:
  """Writes ``lines`` to ``path`` (gzip when it ends in .gz); returns it."""
  end = "\r\n" if crlf else "\n"
  text = end.join(lines) + (end if newline_at_end else "")
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(text.encode())
  return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> str:
  from recsys_smelu.data import synthetic  # pylint: disable=g-import-not-at-top
  out = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.generate(out, num_train=3000, num_eval=1000, seed=0, num_files=2)
  return out


def tiny_config(data_dir: str, **changes):
  """A validated tiny config on ``data_dir``; ``changes`` use dotted keys
  with '__' for '.', e.g. ``train__steps=40``."""
  base = dict(TINY)
  base.update({
      "data.train_files": os.path.join(data_dir, "train-*.tsv"),
      "data.eval_files": os.path.join(data_dir, "eval-*.tsv"),
      "data.eval_truth": os.path.join(data_dir, "eval_truth.txt"),
  })
  base.update({k.replace("__", "."): v for k, v in changes.items()})
  return config_lib.override(config_lib.default_config(), base)


def write_config_file(path: str, config) -> str:
  return config_lib.write_config_file(config, path)


def run_python(args: list[str], env: dict | None = None, timeout: int = 300,
               **kwargs) -> subprocess.CompletedProcess:
  """Runs ``python args...`` from the repo root with the test's interpreter."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout, **kwargs)


def graph_op_types(concrete_function) -> set[str]:
  """Op types in a traced function and in every function it calls."""
  graph_def = concrete_function.graph.as_graph_def()
  return {n.op for n in graph_def.node} | {
      n.op for f in graph_def.library.function for n in f.node_def}


# `python -c RUN_SCRIPT_WITHOUT_TENSORFLOW SCRIPT ARGS...` runs SCRIPT as __main__
# with tensorflow and tf_keras unimportable (the Keras 3 / JAX paths need neither).
RUN_SCRIPT_WITHOUT_TENSORFLOW = (
    "import importlib.abc, runpy, sys\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "  def find_spec(self, name, path=None, target=None):\n"
    "    if name.split('.')[0] in ('tensorflow', 'tf_keras'):\n"
    "      raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")
