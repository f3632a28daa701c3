"""Static checks of docker/Dockerfile.* (no Docker engine on the test machines).

A small line parser (comments dropped, backslash continuations joined, one
instruction per logical line) reads each Dockerfile; the tests check that it
installs this repository with pip, that every COPY/ADD source exists in the
repository and is not excluded by .dockerignore, that CMD/ENTRYPOINT start a
console script declared in setup.py whose target function exists, that the
steps come in an order that works (CUDA or TPU TensorFlow, the package, the
native build), and that docker/README.md names only scripts and
Dockerfiles that exist. Checks that would only restate a Dockerfile's text
are left out.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex

import pytest

from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER_DIR = os.path.join(REPO_ROOT, "docker")
FLAVOURS = ("cpu", "gpu", "tpu")


class DockerfileError(ValueError):
  """A Dockerfile line the parser cannot read; names file and line."""


def parse_dockerfile(text: str, path: str = "<string>"
                     ) -> list[tuple[int, str, str]]:
  """Returns [(line number, INSTRUCTION, arguments)] of a Dockerfile.

  Comment lines are dropped (also inside continuations, as Docker does), a
  trailing backslash joins the next line, and the instruction is upper-cased.
  """
  instructions = []
  pending, start = "", 0
  for number, raw in enumerate(text.splitlines(), start=1):
    line = raw.strip()
    if not line or line.startswith("#"):
      continue
    if not pending:
      start = number
    if line.endswith("\\"):
      pending += line[:-1].strip() + " "
      continue
    logical = (pending + line).strip()
    pending = ""
    match = re.match(r"([A-Za-z]+)\s+(.*)$", logical)
    if not match:
      raise DockerfileError(f"{path}:{start}: cannot parse {logical!r}")
    instructions.append((start, match.group(1).upper(), match.group(2)))
  if pending:
    raise DockerfileError(f"{path}: ends inside a line continuation")
  return instructions


def command_words(arguments: str) -> list[str]:
  """CMD/ENTRYPOINT arguments: JSON exec form or shell form."""
  if arguments.lstrip().startswith("["):
    words = json.loads(arguments)
    if not all(isinstance(w, str) for w in words):
      raise DockerfileError(f"exec form must list strings: {arguments}")
    return words
  return shlex.split(arguments)


def declared_console_scripts() -> dict[str, str]:
  """{script name: 'module:function'} from setup.py's entry_points."""
  tree = ast.parse(open(os.path.join(REPO_ROOT, "setup.py")).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "entry_points":
      entry_points = ast.literal_eval(node.value)
      scripts = {}
      for line in entry_points.get("console_scripts", []):
        name, target = (part.strip() for part in line.split("=", 1))
        scripts[name] = target
      return scripts
  raise AssertionError("setup.py declares no entry_points")


def dockerignore_patterns() -> list[str]:
  path = os.path.join(REPO_ROOT, ".dockerignore")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def is_ignored(relative_path: str, patterns: list[str]) -> bool:
  """True if .dockerignore drops the path or one of its parent directories."""
  parts = relative_path.strip("/").split("/")
  for depth in range(1, len(parts) + 1):
    prefix = "/".join(parts[:depth])
    for pattern in patterns:
      pattern = pattern.strip("/")
      if fnmatch.fnmatch(prefix, pattern) or (
          pattern.startswith("**/") and fnmatch.fnmatch(parts[depth - 1],
                                                        pattern[3:])):
        return True
  return False


def load(flavour: str) -> tuple[str, list[tuple[int, str, str]]]:
  path = os.path.join(DOCKER_DIR, f"Dockerfile.{flavour}")
  with open(path) as f:
    return path, parse_dockerfile(f.read(), path)


def pip_commands(instructions) -> list[list[str]]:
  """Every `pip install ...` inside RUN lines, split into words."""
  commands = []
  for _, op, arguments in instructions:
    if op != "RUN":
      continue
    for part in re.split(r"&&|;|\|\|", arguments):
      words = shlex.split(part)
      if words[:2] == ["pip", "install"] or words[:4] == [
          "python", "-m", "pip", "install"]:
        commands.append(words)
  return commands


# ---------------------------------------------------------------------------
# The parser itself


def test_parser_joins_continuations_and_skips_comments():
  text = ("# header\nFROM python:3.11-slim\nRUN pip install a \\\n"
          "  # a comment inside\n  && echo done\nCMD [\"x\", \"--help\"]\n")
  assert parse_dockerfile(text) == [
      (2, "FROM", "python:3.11-slim"),
      (3, "RUN", "pip install a && echo done"),
      (6, "CMD", '["x", "--help"]'),
  ]
  assert command_words('["a", "b c"]') == ["a", "b c"]
  assert command_words("a 'b c'") == ["a", "b c"]


def test_parser_rejects_garbage_with_file_and_line():
  with pytest.raises(DockerfileError, match=r"f:2: cannot parse"):
    parse_dockerfile("FROM x\n123 nonsense\n", "f")
  with pytest.raises(DockerfileError, match="continuation"):
    parse_dockerfile("FROM x\nRUN a \\\n", "f")


def test_dockerignore_matching():
  patterns = ["data", ".venv", "**/__pycache__"]
  assert is_ignored("data/quickstart", patterns)
  assert is_ignored("recsys_smelu/__pycache__/x.pyc", patterns)
  assert not is_ignored("recsys_smelu/data", patterns)


# ---------------------------------------------------------------------------
# The three images


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dockerfile_installs_the_repository(flavour):
  path, instructions = load(flavour)
  workdirs = [args for _, op, args in instructions if op == "WORKDIR"]
  repo_installs = [w for w in pip_commands(instructions)
                   if "." in w[w.index("install") + 1:]]
  assert repo_installs, f"{path}: no `pip install .` of the repository"
  # setup.py (and the files it reads) must have been copied into the
  # directory `pip install .` runs in.
  copied = []
  for _, op, arguments in instructions:
    if op in ("COPY", "ADD"):
      copied.extend(shlex.split(arguments)[:-1])
  for needed in ("setup.py", "README.md", "recsys_smelu"):
    assert needed in copied, f"{path}: {needed} is not copied into the image"
  assert workdirs, f"{path}: pip install . needs a WORKDIR holding setup.py"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_copy_sources_exist_and_are_not_dockerignored(flavour):
  path, instructions = load(flavour)
  patterns = dockerignore_patterns()
  found = 0
  for line, op, arguments in instructions:
    if op not in ("COPY", "ADD"):
      continue
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    assert len(words) >= 2, f"{path}:{line}: {op} needs source and destination"
    for source in words[:-1]:
      found += 1
      assert os.path.exists(os.path.join(REPO_ROOT, source)), (
          f"{path}:{line}: {op} source {source!r} does not exist in the repo")
      assert not is_ignored(source, patterns), (
          f"{path}:{line}: {source!r} is excluded by .dockerignore")
  assert found, f"{path}: copies nothing from the repository"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_default_command_is_a_declared_console_script(flavour):
  path, instructions = load(flavour)
  scripts = declared_console_scripts()
  commands = [(line, command_words(args)) for line, op, args in instructions
              if op in ("CMD", "ENTRYPOINT")]
  assert commands, f"{path}: no CMD/ENTRYPOINT"
  line, words = commands[-1]
  target = scripts.get(words[0])
  assert target, (f"{path}:{line}: {words[0]!r} is not a console script in "
                  f"setup.py (declared: {sorted(scripts)})")
  module, function = target.split(":")
  source = os.path.join(REPO_ROOT, *module.split(".")) + ".py"
  with open(source) as f:
    assert re.search(rf"^def {function}\(", f.read(), re.M), (
        f"{words[0]} -> {target}: {source} defines no {function}()")


def test_gpu_image_installs_cuda_tensorflow_before_the_package():
  path, instructions = load("gpu")
  installs = pip_commands(instructions)
  cuda = [i for i, w in enumerate(installs)
          if any(a.startswith("tensorflow[and-cuda]==2.21") for a in w)]
  package = [i for i, w in enumerate(installs) if "." in w]
  assert cuda and package and cuda[0] < package[0], (
      f"{path}: install tensorflow[and-cuda]==2.21.* before `pip install .`")


def test_tpu_image_swaps_cpu_tensorflow_for_tensorflow_tpu():
  path, instructions = load("tpu")
  steps = []
  for _, op, arguments in instructions:
    if op == "RUN":
      steps.extend(shlex.split(p) for p in re.split(r"&&|;", arguments))
  def position(predicate):
    return next((i for i, w in enumerate(steps) if predicate(w)), None)
  package = position(lambda w: w[:2] == ["pip", "install"] and "." in w)
  uninstall = position(lambda w: w[:2] == ["pip", "uninstall"]
                       and "tensorflow" in w)
  tpu = position(lambda w: w[:2] == ["pip", "install"] and any(
      a.startswith("tensorflow-tpu==2.21") for a in w))
  assert None not in (package, uninstall, tpu), (
      f"{path}: needs `pip install .`, `pip uninstall -y tensorflow` and "
      "`pip install tensorflow-tpu==2.21.*`")
  assert package < uninstall < tpu, f"{path}: wrong order of the swap"
  assert "https://storage.googleapis.com/libtpu-tf-releases/index.html" in \
      steps[tpu], f"{path}: tensorflow-tpu comes from the libtpu index"
  # Nothing pip-installed after the swap (it could pull CPU tensorflow back).
  assert not any(w[:2] == ["pip", "install"] for w in steps[tpu + 1:])


def test_readme_mentions_only_declared_console_scripts():
  with open(os.path.join(DOCKER_DIR, "README.md")) as f:
    readme = f.read()
  mentioned = set(re.findall(r"\brecsys-smelu-[a-z]+\b", readme))
  declared = declared_console_scripts()
  assert mentioned and mentioned <= set(declared), mentioned - set(declared)
  dockerfiles = set(re.findall(r"\bdocker/(Dockerfile\.[a-z]+)", readme))
  assert dockerfiles and all(os.path.exists(os.path.join(DOCKER_DIR, name))
                             for name in dockerfiles), dockerfiles


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_native_ops_are_built_after_the_last_tensorflow_install(flavour):
  """The op compiles against the TensorFlow in the image (tensorflow-tpu in the
  TPU image), with g++ installed first, into a cache directory set by ENV."""
  path, instructions = load(flavour)
  steps = []  # (kind, instruction index) in image order
  for index, (_, op, arguments) in enumerate(instructions):
    if op != "RUN":
      continue
    for part in re.split(r"&&|;", arguments):
      words = shlex.split(part)
      if "apt-get" in words and "install" in words and "g++" in words:
        steps.append(("compiler", index))
      elif "pip" in words and "install" in words:
        steps.append(("pip", index))
      elif words[:3] == ["python", "-m", "recsys_smelu.native"]:
        steps.append(("build", index))
  kinds = [kind for kind, _ in steps]
  assert "build" in kinds, f"{path}: the native ops are never built"
  assert "compiler" in kinds[:kinds.index("build")], (
      f"{path}: g++ must be installed before the native ops are built")
  assert "pip" not in kinds[kinds.index("build"):], (
      f"{path}: a pip install after the native build may change TensorFlow")
  envs = " ".join(args for _, op, args in instructions if op == "ENV")
  assert re.search(r"\bRECSYS_SMELU_CACHE_DIR=/\S+", envs), (
      f"{path}: the built op must live in a fixed RECSYS_SMELU_CACHE_DIR")
