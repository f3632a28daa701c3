"""recsys_smelu.compat: each private TF/Keras/TFRS shim does what its caller
relies on, and no other module of the package reaches for a private API."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

import tensorflow as tf  # pylint: disable=wrong-import-position
import tensorflow_recommenders as tfrs  # pylint: disable=wrong-import-position

from recsys_smelu import compat  # pylint: disable=wrong-import-position
from recsys_smelu.models import schedules  # pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPAT = ROOT / "recsys_smelu" / "compat.py"


# ----------------------------------------------------------------------------
# Keras optimizers


@pytest.mark.parametrize("step", [0, 7, 60, 100])
def test_current_learning_rate_is_the_schedule_at_the_current_step(step):
  schedule = schedules.WarmupDecaySchedule(0.5, warmup_steps=10,
                                           total_steps=100, decay="cosine")
  optimizer = tf.keras.optimizers.Adam(learning_rate=schedule)
  optimizer.iterations.assign(step)
  expected = float(schedule(step))
  assert compat.current_learning_rate(optimizer) == pytest.approx(expected)
  wrapped = tf.keras.mixed_precision.LossScaleOptimizer(
      tf.keras.optimizers.Adam(learning_rate=schedule))
  wrapped.inner_optimizer.iterations.assign(step)
  assert compat.current_learning_rate(wrapped) == pytest.approx(expected)


def test_current_learning_rate_follows_a_constant_and_its_updates():
  optimizer = tf.keras.optimizers.SGD(learning_rate=0.25)
  assert compat.current_learning_rate(optimizer) == pytest.approx(0.25)
  optimizer.learning_rate = 0.125
  assert compat.current_learning_rate(optimizer) == pytest.approx(0.125)


def test_refresh_current_learning_rate_sets_the_public_value():
  schedule = tf.keras.optimizers.schedules.ExponentialDecay(0.8, 1, 0.5)
  optimizer = tf.keras.optimizers.Adagrad(learning_rate=schedule)
  for step in (0, 3):
    optimizer.iterations.assign(step)
    compat.refresh_current_learning_rate(optimizer)
    assert float(optimizer.learning_rate) == pytest.approx(0.8 * 0.5 ** step)


def test_adagrad_accumulator_is_the_slot_keras_updates():
  a = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
  b = tf.Variable([5.0, 6.0, 7.0])
  optimizer = tf.keras.optimizers.Adagrad(learning_rate=0.1,
                                          initial_accumulator_value=0.1)
  grad_a = tf.constant([[0.5, -1.0], [0.0, 2.0]])
  grad_b = tf.constant([3.0, 0.0, -0.25])
  optimizer.apply_gradients([(grad_a, a), (grad_b, b)])
  acc_a = compat.adagrad_accumulator(optimizer, a)
  acc_b = compat.adagrad_accumulator(optimizer, b)
  np.testing.assert_allclose(acc_a.numpy(), 0.1 + grad_a.numpy() ** 2)
  np.testing.assert_allclose(acc_b.numpy(), 0.1 + grad_b.numpy() ** 2)
  assert {id(acc_a), id(acc_b)} <= {id(v) for v in optimizer.variables}


# ----------------------------------------------------------------------------
# Keras layers, models and callbacks


def test_set_layer_name_names_the_layer_and_its_variables():
  layer = tf.keras.layers.Dense(2)
  compat.set_layer_name(layer, "renamed")
  layer(tf.ones([1, 3]))
  assert layer.name == "renamed"
  assert layer.kernel.name.startswith("renamed/")


def test_set_dtype_policy_computes_in_the_policy_with_float32_weights():
  layer = tf.keras.layers.Dense(2)
  compat.set_dtype_policy(layer, tf.keras.mixed_precision.Policy(
      "mixed_bfloat16"))
  assert layer(tf.ones([1, 3])).dtype == tf.bfloat16
  assert layer.kernel.dtype == tf.float32


def test_direct_sublayers_lists_children_not_grandchildren():

  class Inner(tf.keras.layers.Layer):

    def __init__(self):
      super().__init__(name="inner")
      self.leaf = tf.keras.layers.Dense(1, name="leaf")

  class Outer(tf.keras.layers.Layer):

    def __init__(self):
      super().__init__(name="outer")
      self.first = tf.keras.layers.Dense(1, name="first")
      self.inner = Inner()

  assert [l.name for l in compat.direct_sublayers(Outer())] == ["first",
                                                               "inner"]


def _tiny_model():
  model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
  model.compile(optimizer="sgd", loss="mse")
  return model


def test_model_distribution_strategy_none_on_default_else_the_strategy():
  assert compat.model_distribution_strategy(_tiny_model()) is None
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    mirrored = _tiny_model()
    assert compat.model_distribution_strategy(mirrored) is strategy
  assert compat.model_distribution_strategy(mirrored) is strategy


@pytest.mark.parametrize("as_tensors", [False, True])
def test_receive_logs_as_tensors_hands_the_callback_tensors(as_tensors):

  class Recorder(tf.keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      if as_tensors:
        compat.receive_logs_as_tensors(self)
      self.losses = []

    def on_train_batch_end(self, batch, logs=None):
      self.losses.append(logs["loss"])

  recorder = Recorder()
  data = tf.data.Dataset.from_tensors((tf.ones([4, 2]), tf.ones([4, 1])))
  _tiny_model().fit(data, epochs=1, verbose=0, callbacks=[recorder])
  assert recorder.losses
  assert all(tf.is_tensor(l) == as_tensors for l in recorder.losses)


# ----------------------------------------------------------------------------
# TensorFlow Recommenders layers


def test_cross_dense_layers_full_rank_are_the_layers_cross_applies():
  cross = tfrs.layers.feature_interaction.Cross()
  x0 = tf.constant(np.random.default_rng(0).normal(size=(3, 4)), tf.float32)
  x = tf.constant(np.random.default_rng(1).normal(size=(3, 4)), tf.float32)
  cross(x0, x)
  layers = compat.cross_dense_layers(cross)
  assert list(layers) == ["w"]
  w = layers["w"]
  assert {id(v) for v in w.trainable_variables} == {
      id(v) for v in cross.trainable_variables}
  expected = x0 * (x @ w.kernel + w.bias) + x  # x0 * (W x + b) + x
  np.testing.assert_allclose(cross(x0, x), expected, rtol=1e-5, atol=1e-6)


def test_cross_dense_layers_low_rank_are_u_then_v():
  cross = tfrs.layers.feature_interaction.Cross(projection_dim=2)
  x0 = tf.constant(np.random.default_rng(2).normal(size=(3, 4)), tf.float32)
  cross(x0)
  layers = compat.cross_dense_layers(cross)
  assert sorted(layers) == ["u", "v"]
  u, v = layers["u"], layers["v"]
  assert u.kernel.shape == (4, 2) and v.kernel.shape == (2, 4)
  expected = x0 * ((x0 @ u.kernel) @ v.kernel + v.bias) + x0
  np.testing.assert_allclose(cross(x0), expected, rtol=1e-5, atol=1e-6)


def test_tpu_embedding_feature_is_none_off_tpu_where_tables_are_variables():
  table = tf.tpu.experimental.embedding.TableConfig(vocabulary_size=5, dim=2,
                                                    name="t")
  layer = tfrs.layers.embedding.TPUEmbedding(
      feature_config={"f": tf.tpu.experimental.embedding.FeatureConfig(
          table=table)},
      optimizer=tf.tpu.experimental.embedding.SGD(0.1))
  assert compat.tpu_embedding_feature(layer) is None
  layer({"f": tf.constant([0, 3])})
  assert [v.shape for v in layer.trainable_variables] == [(5, 2)]


# ----------------------------------------------------------------------------
# TensorFlow internals


def test_local_resource_variable_skips_the_variable_creator_stack():
  seen = []

  def creator(next_creator, **kwargs):
    seen.append(kwargs.get("name"))
    return next_creator(**kwargs)

  with tf.variable_creator_scope(creator):
    tf.Variable(1.0, name="through_creators")
    local = compat.local_resource_variable(tf.constant(["a", "b"]),
                                           name="local", dtype=tf.string)
  assert seen == ["through_creators"]
  assert local.dtype == tf.string and not local.trainable
  assert local.numpy().tolist() == [b"a", b"b"]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_control_flow_util_tells_an_xla_graph(jit_compile):
  seen = []

  @tf.function(jit_compile=jit_compile)
  def step(x):
    seen.append(compat.control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()))
    return x + 1

  step(tf.constant(1.0))
  assert seen == [jit_compile]


# ----------------------------------------------------------------------------
# No private access outside recsys_smelu/compat.py

# Never flagged: the public API of namedtuples.
_PUBLIC_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make",
                      "_field_defaults"}
# Modules that are TensorFlow's, Keras' or TFRS's internals.
_PRIVATE_MODULES = ("tensorflow.python", "tf_keras.src", "keras.src",
                    "tensorflow_recommenders.layers.embedding.tpu_embedding_layer")
# TFRS attributes we must not read (we keep our own copies).
_KNOWN_PRIVATE = {"_skip_gather", "_self_interaction"}
_ATTRIBUTE_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


def _is_private(name: str) -> bool:
  return (name.startswith("_") and not name.startswith("__")
          and name not in _PUBLIC_UNDERSCORE)


def _attribute_uses(tree):
  """(node, object, name) for ``x._name`` and ``getattr(x, "_name")``."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and _is_private(node.attr):
      yield node, node.value, node.attr
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
          and node.func.id in _ATTRIBUTE_CALLS and len(node.args) >= 2
          and isinstance(node.args[1], ast.Constant)
          and isinstance(node.args[1].value, str)
          and _is_private(node.args[1].value)):
      yield node, node.args[0], node.args[1].value


def own_private_names(trees) -> set[str]:
  """Private names the package defines itself: ``def _f``, ``class _C``,
  module-level ``_X = ...`` and ``self._x = ...`` / ``cls._x = ...``."""
  names = set()
  for tree in trees:
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                           ast.ClassDef)):
        names.add(node.name)
      targets = []
      if isinstance(node, ast.Assign):
        targets = node.targets
      elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
      for target in targets:
        for t in ast.walk(target):
          if isinstance(t, ast.Name):
            names.add(t.id)
          elif (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                and t.value.id in ("self", "cls")):
            names.add(t.attr)
  return {n for n in names if _is_private(n)}


def shimmed_private_names(compat_tree) -> set[str]:
  """The private attributes compat.py reaches for: never allowed elsewhere."""
  return {name for _, _, name in _attribute_uses(compat_tree)}


def find_private_access(source: str, filename: str, own: set[str],
                        forbidden: set[str]) -> list[str]:
  """``file:line: what`` for each private TF/Keras/TFRS use in ``source``.

  Flags imports of TF's, Keras' and TFRS's internal modules, and every
  ``x._name`` / ``getattr(x, "_name")`` whose name is shimmed in compat.py
  (``forbidden``) or is not one the package defines itself (``own``).
  """
  tree = ast.parse(source, filename)
  problems = []
  for node in ast.walk(tree):
    modules = []
    if isinstance(node, ast.Import):
      modules = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    for module in modules:
      if module.startswith(_PRIVATE_MODULES):
        problems.append(f"{filename}:{node.lineno}: import of {module}")
        break
  for node, _, name in _attribute_uses(tree):
    if name in forbidden or name not in own:
      problems.append(f"{filename}:{node.lineno}: private attribute {name}")
  return problems


def _package_sources() -> dict[str, str]:
  files = sorted((ROOT / "recsys_smelu").rglob("*.py")) + sorted(
      (ROOT / "scripts").glob("*.py"))
  return {str(p.relative_to(ROOT)): p.read_text() for p in files
          if p != COMPAT}


def test_no_private_access_outside_compat():
  sources = _package_sources()
  assert "recsys_smelu/models/ctr.py" in sources and "scripts/bench_train.py" \
      in sources
  own = own_private_names(ast.parse(s) for s in sources.values())
  forbidden = shimmed_private_names(ast.parse(COMPAT.read_text())) | (
      _KNOWN_PRIVATE)
  assert {"_learning_rate", "_accumulators", "_index_dict", "_var_key",
          "_dense", "_distribution_strategy"} <= forbidden
  problems = [p for name, source in sources.items()
              for p in find_private_access(source, name, own, forbidden)]
  assert not problems, ("private TF/Keras/TFRS API outside recsys_smelu/"
                        "compat.py (add a tested shim there):\n"
                        + "\n".join(problems))


_BAD = '''
from tensorflow.python.ops import control_flow_util
import tensorflow.python.framework.ops
from tf_keras.src.engine import base_layer

class Fused(tf.keras.optimizers.Adagrad):
  def apply(self, v):
    self._compute_current_learning_rate()
    return self._accumulators[self._index_dict[self._var_key(v)]]

class Dot(tfrs.layers.feature_interaction.DotInteraction):
  def call(self, x):
    self._skip_gather = False
    return self._skip_gather

rate = optimizer._learning_rate
strategy = getattr(model, "_distribution_strategy", None)
layer._name = "x"
'''

_GOOD = '''
import tensorflow as tf
_UNSET = ""

def _helper():
  return _UNSET

class Counter:
  def __init__(self):
    self._total = 0
  def _record(self):
    self._total += 1
    return self._total, other._record(), mod._helper(), config_lib._UNSET

point = point._replace(x=1)
name = type(value).__name__
'''


def _scan_snippet(source):
  own = own_private_names([ast.parse(source)])
  return find_private_access(source, "snippet.py", own,
                             {"_name", "_learning_rate",
                              "_distribution_strategy"} | _KNOWN_PRIVATE)


def test_scanner_flags_each_private_use_in_a_bad_snippet():
  problems = _scan_snippet(_BAD)
  lines = {int(p.split(":")[1]) for p in problems}
  assert lines == {2, 3, 4, 8, 9, 13, 14, 16, 17, 18}, problems
  text = "\n".join(problems)
  for name in ("tensorflow.python.ops", "tensorflow.python.framework.ops",
               "tf_keras.src.engine", "_compute_current_learning_rate",
               "_accumulators", "_index_dict", "_var_key", "_skip_gather",
               "_learning_rate", "_distribution_strategy", "_name"):
    assert name in text, name


def test_scanner_allows_the_package_own_private_names():
  assert _scan_snippet(_GOOD) == []
