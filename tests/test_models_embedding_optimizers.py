"""FusedEmbeddingAdagrad: Keras Adagrad's results through one native op on
CPU, and plain Keras Adagrad wherever the native op does not apply."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_smelu import native
from recsys_smelu.models import embedding_optimizers
import tensorflow as tf

from conftest import graph_op_types, require_native_compiler
from test_models_ctr import SCHEMA, make_config, random_batches, trainable_model
from recsys_smelu import models

SHAPES = [(40, 4), (300, 8)]


@pytest.fixture
def native_unavailable(monkeypatch):
  """``native.load`` finds no library, as on a host without a compiler."""
  monkeypatch.setattr(native, "_load_library",
                      lambda: (None, "NativeOpsError: no compiler (test)"))
  monkeypatch.setenv(native.ENV_SWITCH, "auto")


@pytest.fixture(autouse=True)
def native_ops_required(request, monkeypatch):
  """Native ops required (skipped without a compiler), except in tests that
  use ``native_unavailable``: those run everywhere."""
  if "native_unavailable" not in request.fixturenames:
    require_native_compiler()
    monkeypatch.setenv(native.ENV_SWITCH, "1")


def _tables(seed=0):
  rng = np.random.default_rng(seed)
  return [tf.Variable(rng.normal(size=s).astype(np.float32), name=f"t{i}")
          for i, s in enumerate(SHAPES)]


def _lookup_step(optimizer, tables, ids):
  """One embedding step as the model takes it: lookups, IndexedSlices grads."""
  with tf.GradientTape() as tape:
    loss = tf.add_n([tf.reduce_sum(tf.nn.embedding_lookup(t, i) ** 2 * (k + 1))
                     for k, (t, i) in enumerate(zip(tables, ids))])
  grads = tape.gradient(loss, tables)
  assert all(isinstance(g, tf.IndexedSlices) for g in grads)
  optimizer.apply_gradients(zip(grads, tables))


def _graph_ops(optimizer, tables, ids) -> set[str]:
  step = tf.function(lambda: _lookup_step(optimizer, tables, ids))
  return graph_op_types(step.get_concrete_function())


def _batches(steps=4, batch=32, seed=1):
  rng = np.random.default_rng(seed)
  # Few distinct rows per batch: many duplicate ids to sum.
  return [[tf.constant(rng.integers(0, min(s[0], 25), batch), tf.int64)
           for s in SHAPES] for _ in range(steps)]


@pytest.mark.parametrize("schedule", [False, True])
def test_matches_keras_adagrad_and_uses_one_native_op(schedule):
  lr = (tf.keras.optimizers.schedules.ExponentialDecay(0.3, 1, 0.5)
        if schedule else 0.3)
  fused = embedding_optimizers.FusedEmbeddingAdagrad(
      learning_rate=lr, initial_accumulator_value=0.1)
  keras = tf.keras.optimizers.Adagrad(learning_rate=lr,
                                      initial_accumulator_value=0.1)
  fused_tables, keras_tables = _tables(), _tables()
  step_fused = tf.function(lambda ids: _lookup_step(fused, fused_tables, ids))
  step_keras = tf.function(lambda ids: _lookup_step(keras, keras_tables, ids))
  for ids in _batches():
    step_fused(ids)
    step_keras(ids)
  assert int(fused.iterations) == int(keras.iterations) == 4
  for a, b in zip(fused_tables + fused.variables,
                  keras_tables + keras.variables):
    # Keras' graph divides by sqrt through rsqrt (Grappler): float32 rounding.
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7,
                               err_msg=a.name)
  assert not np.allclose(fused_tables[0].numpy(), _tables()[0].numpy())
  assert "EmbeddingAdagradUpdate" in _graph_ops(fused, fused_tables,
                                                _batches(1)[0])
  assert "EmbeddingAdagradUpdate" not in _graph_ops(keras, keras_tables,
                                                    _batches(1)[0])


_FALLBACK_CASES = ["fused_false", "native_off", "clipnorm", "dense_gradient",
                   "mirrored_strategy"]


@pytest.mark.parametrize("case", _FALLBACK_CASES)
def test_falls_back_to_keras_adagrad(case, monkeypatch):
  _check_falls_back(case, monkeypatch)


@pytest.mark.parametrize("case", ["fused"] + _FALLBACK_CASES)
def test_falls_back_without_native_ops(case, monkeypatch, native_unavailable):
  del native_unavailable
  _check_falls_back(case, monkeypatch)
  assert native.load() is None


def _check_falls_back(case, monkeypatch):
  kwargs = {"clipnorm": 1.0} if case == "clipnorm" else {}
  ids = _batches(1)[0]
  if case == "native_off":
    monkeypatch.setenv(native.ENV_SWITCH, "0")
  if case == "mirrored_strategy":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
      tables = _tables()
      optimizer = embedding_optimizers.FusedEmbeddingAdagrad(0.1)
    step = tf.function(lambda: strategy.run(
        lambda: _lookup_step(optimizer, tables, ids)))
    assert "EmbeddingAdagradUpdate" not in graph_op_types(
        step.get_concrete_function())
    step()
    return
  optimizer = embedding_optimizers.FusedEmbeddingAdagrad(
      0.1, fused=case != "fused_false", **kwargs)
  tables = _tables()
  if case == "dense_gradient":
    grads = [tf.ones_like(t) for t in tables]
    assert not optimizer.fused_update_applies(list(zip(grads, tables)))
    optimizer.apply_gradients(zip(grads, tables))
    assert int(optimizer.iterations) == 1
    return
  assert "EmbeddingAdagradUpdate" not in _graph_ops(optimizer, tables, ids)
  before = tables[0].numpy()
  _lookup_step(optimizer, tables, ids)
  assert not np.array_equal(before, tables[0].numpy())


def test_checkpoints_are_keras_adagrad_checkpoints(tmp_path):
  fused = embedding_optimizers.FusedEmbeddingAdagrad(0.2)
  tables = _tables()
  for ids in _batches(2):
    _lookup_step(fused, tables, ids)
  path = tf.train.Checkpoint(tables=tables, optimizer=fused).save(
      str(tmp_path / "ckpt"))
  keras = tf.keras.optimizers.Adagrad(0.2)
  restored_tables = _tables(seed=5)
  keras.build(restored_tables)
  tf.train.Checkpoint(tables=restored_tables, optimizer=keras).restore(
      path).assert_consumed()
  for a, b in zip(fused.variables, keras.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert int(keras.iterations) == 2


def test_model_trains_its_tables_with_the_native_op_except_under_xla():
  features, labels, _ = random_batches(SCHEMA, n=32)
  model = trainable_model(make_config())
  assert isinstance(model.embedding_optimizer,
                    embedding_optimizers.FusedEmbeddingAdagrad)
  model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
  model(features)
  train_function = model.make_train_function()
  dataset = iter(tf.data.Dataset.from_tensors((features, labels)).repeat())
  assert "EmbeddingAdagradUpdate" in graph_op_types(
      train_function.get_concrete_function(dataset))
  model.compile(optimizer=tf.keras.optimizers.SGD(0.1), jit_compile=True)
  train_function = model.make_train_function(force=True)
  assert "EmbeddingAdagradUpdate" not in graph_op_types(
      train_function.get_concrete_function(dataset))
  model.fit(dataset, steps_per_epoch=2, verbose=0)  # compiles: stock ops only


def test_tables_with_int32_and_int64_ids_in_one_step():
  fused = embedding_optimizers.FusedEmbeddingAdagrad(0.3)
  keras = tf.keras.optimizers.Adagrad(0.3)
  fused_tables, keras_tables = _tables(), _tables()
  ids = _batches(1)[0]
  mixed = [tf.cast(ids[0], tf.int32), ids[1]]
  assert "EmbeddingAdagradUpdate" in _graph_ops(fused, fused_tables, mixed)
  _lookup_step(fused, fused_tables, mixed)
  _lookup_step(keras, keras_tables, mixed)
  for a, b in zip(fused_tables, keras_tables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7)
