"""CTRModel under tf.distribute.MirroredStrategy (two logical CPUs).

Logical devices must be configured before TensorFlow initializes its
devices, so this runs in a subprocess. The loss is averaged over the global
batch, so a two-replica model and a one-device model fed the same batches
take the same steps (up to float summation order).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

_SCRIPT = r'''
import json
import sys
import numpy as np
import recsys_smelu
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from recsys_smelu import config as config_lib, models
from recsys_smelu.data.features import criteo_schema

schema = criteo_schema(num_buckets=50, embedding_dim=4, num_dense=3,
                       num_categorical=4)
rng = np.random.default_rng(0)
n = 512
features = {
    "dense_features": rng.normal(size=(n, 3)).astype(np.float32),
    "sparse_features": {f"C{i + 1}": rng.integers(0, 50, n).astype(np.int32)
                        for i in range(4)},
}
labels = (rng.random(n) < 0.3).astype(np.float32)
config = config_lib.override(config_lib.default_config(), {
    "model.embedding_dim": 4, "model.bottom_mlp": [8, 4],
    "model.top_mlp": [8, 1], "model.activation": "smelu:trainable=true",
    "train.embedding_optimizer": "sgd", "train.embedding_learning_rate": 0.1,
    **json.loads(sys.argv[1])})

def train(strategy):
  data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)
  with strategy.scope():
    model = models.build_model(config, schema, embedding_optimizer=(
        models.embedding_optimizer(config.train.embedding_optimizer,
                                   config.train.embedding_learning_rate)))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
  history = model.fit(data, epochs=2, verbose=0).history
  result = model.evaluate(data, return_dict=True, verbose=0)
  return (model(features).numpy(), history["loss"], history["total_loss"],
          result)

one, one_loss, one_total, one_eval = train(
    tf.distribute.OneDeviceStrategy("/cpu:0"))
two, two_loss, two_total, two_eval = train(
    tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print("RESULT " + json.dumps({
    "max_abs_logit_diff": float(np.abs(one - two).max()),
    "loss_one": one_loss, "loss_two": two_loss,
    "total_one": one_total, "total_two": two_total,
    "eval_one": one_eval, "eval_two": two_eval}))
'''


@pytest.mark.slow
@pytest.mark.parametrize("changes", [
    {},
    # The penalties are scaled like the global-batch loss: same steps too.
    {"model.wide": True, "model.embedding_l2": 0.05, "model.dense_l2": 0.01},
], ids=["plain", "wide_l2"])
def test_mirrored_two_replicas_match_one_device(changes):
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(changes)],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  result = json.loads(line[len("RESULT "):])
  assert result["max_abs_logit_diff"] < 1e-4, result
  for a, b in zip(result["loss_one"] + result["total_one"],
                  result["loss_two"] + result["total_two"]):
    assert a == pytest.approx(b, rel=1e-4), result
  if changes:
    assert result["total_one"][0] > result["loss_one"][0] + 1e-3, result
  for key in ("loss", "log_loss", "auc", "mean_prediction", "mean_label"):
    assert result["eval_one"][key] == pytest.approx(
        result["eval_two"][key], rel=1e-4, abs=1e-6), key
