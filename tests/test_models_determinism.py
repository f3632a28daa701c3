"""Same seeds + op determinism -> bit-identical trained models.

``tf.config.experimental.enable_op_determinism()`` is process-global, so the
training runs happen in a subprocess (with oneDNN off, whose kernels may
change the last bits). The subprocess trains four fresh models for 30 steps
(DLRM, trainable SmeLU, layer norm, dropout, shuffled input) — A and B with
the same seeds, C with another init seed, D with another dropout seed — and
prints a SHA-256 of each model's weights. The script runs twice, so twins
must also agree across processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

_SCRIPT = r'''
import hashlib, json
import numpy as np
import recsys_smelu
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
from recsys_smelu import config as config_lib, models
from recsys_smelu.data.features import criteo_schema

schema = criteo_schema(num_buckets=50, embedding_dim=4, num_dense=3,
                       num_categorical=4)
rng = np.random.default_rng(0)
n = 1024
features = {
    "dense_features": rng.normal(size=(n, 3)).astype(np.float32),
    "sparse_features": {f"C{i + 1}": rng.integers(0, 50, n).astype(np.int32)
                        for i in range(4)},
}
labels = (rng.random(n) < 0.3).astype(np.float32)

def train(**changes):
  base = {"model.interaction": "dot", "model.embedding_dim": 4,
          "model.bottom_mlp": [16, 4], "model.top_mlp": [16, 1],
          "model.activation": "smelu:beta=1,trainable=true",
          "model.normalization": "layer", "model.dropout": 0.2,
          "train.embedding_optimizer": "adagrad"}
  base.update(changes)
  config = config_lib.override(config_lib.default_config(), base)
  data = tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(
      n, seed=config.seed.data).batch(64, drop_remainder=True).repeat()
  model = models.build_model(config, schema, embedding_optimizer=(
      models.embedding_optimizer(config.train.embedding_optimizer,
                                 config.train.embedding_learning_rate)))
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
  model.fit(data, steps_per_epoch=30, epochs=1, verbose=0)
  digest = hashlib.sha256()
  for v in model.weights:
    # Values and shapes only: the second model's names carry a suffix.
    digest.update(str(v.shape).encode())
    digest.update(np.ascontiguousarray(v.numpy()).tobytes())
  logits = model(features).numpy()
  return digest.hexdigest(), logits

out = {}
logits = {}
for key, changes in [("a", {}), ("b", {}), ("c", {"seed.init": 2}),
                     ("d", {"seed.dropout": 2})]:
  out[key], logits[key] = train(**changes)
out["max_abs_logit_diff_ab"] = float(np.abs(logits["a"] - logits["b"]).max())
out["max_abs_logit_diff_ac"] = float(np.abs(logits["a"] - logits["c"]).max())
out["max_abs_logit_diff_ad"] = float(np.abs(logits["a"] - logits["d"]).max())
print("RESULT " + json.dumps(out))
'''


def _run_twins() -> dict:
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True,
                        text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_same_seeds_give_bit_identical_models_other_seeds_do_not():
  first = _run_twins()
  assert first["a"] == first["b"], first
  assert first["max_abs_logit_diff_ab"] == 0.0
  assert first["c"] != first["a"] and first["max_abs_logit_diff_ac"] > 1e-3
  assert first["d"] != first["a"] and first["max_abs_logit_diff_ad"] > 1e-4
  second = _run_twins()
  assert second == first  # and across processes
