"""Forward+backward speed of SmeLU against ReLU and the smooth baselines.

Prints ONE JSON object:

  {"shape": [8192, 1024], "device": "...", "dtype": "float32",
   "repeats": R, "warmup": W,
   "modes": {"graph": {"relu": {"ms": .., "ratio_to_relu": 1.0, ...}, ...},
             "xla":   {...}, "graph_unfused": {...}},
   "memory": {...}}

Modes: "graph" is ``tf.function`` as users run it (SmeLU then uses the native
CPU ops where they apply, gSmeLU its XLA-fused kernels; see
recsys_smelu.activations);
"graph_unfused" is the same with those kernels switched off (one TF kernel per
elementwise op); "xla" compiles the whole step with ``jit_compile=True``.

Each timed step computes ``y = act(x)`` and ``dx = d(sum(y * dy))/dx`` inside
one traced function and returns both, as a training step would need them.
Timings are the median over ``--repeats`` after ``--warmup`` calls. Activations are timed
round-robin (one call of each per repeat, in a rotating order), so that load
from other processes hits all of them alike and the ratios stay fair.

Peak memory of the backward pass comes from
``tf.config.experimental.get_memory_info`` (GPU only); on CPU TensorFlow
cannot report it, and the JSON says so (``"peak_bytes": null`` plus a
``"reason"``) together with the bytes the forward pass keeps for the backward
pass, counted from the op definitions.

``--keras3`` times ``recsys_smelu.keras3`` instead, on Keras 3's JAX backend
under ``jax.jit`` (no TensorFlow imported): SmeLU, gSmeLU, ReLU, GELU (exact
and tanh), Swish and softplus on ``keras.ops``, each step ``jax.vjp`` of the
activation (y and dx, as above), on JAX's default device (CPU, or the GPU
when jax has one), in ``--dtype`` (float32 or bfloat16). Its JSON has
``"modes": {"jit": {...}}``, the residuals each activation's forward keeps
for the backward (``jax.ad_checkpoint.print_saved_residuals``), and
``"targets"``: SmeLU at most 1.10x ReLU and faster than GELU and Swish.

Run: python scripts/bench_activations.py [--repeats 30] [--shape 8192,1024]
     python scripts/bench_activations.py --keras3 [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_smelu import platform_info  # noqa: E402

# The TF side (tf.keras 2 ops) is imported only when it is benchmarked, so
# that --keras3 runs without TensorFlow.
tf = None
activations = None
ACTIVATIONS: dict = {}
NAMES = ("relu", "smelu", "gsmelu", "gelu", "gelu_tanh", "swish", "softplus")


def _import_tf_side() -> None:
  """Imports TensorFlow with Keras 2 and the TF-side activations."""
  global tf, activations  # pylint: disable=global-statement
  from recsys_smelu import tf_keras2  # pylint: disable=g-import-not-at-top
  tf_keras2.ensure_keras2()  # before tensorflow
  from recsys_smelu import activations as activations_module  # pylint: disable=g-import-not-at-top
  import tensorflow as tf_module  # pylint: disable=g-import-not-at-top
  tf, activations = tf_module, activations_module
  ACTIVATIONS.update({
      "relu": tf.nn.relu,
      "smelu": lambda x: activations.smelu(x, 1.0),
      "gsmelu": lambda x: activations.gsmelu(x, 0.1, 1.0, 1.0, 1.0, 0.0),
      "gelu": lambda x: tf.nn.gelu(x, approximate=False),
      "gelu_tanh": lambda x: tf.nn.gelu(x, approximate=True),
      "swish": tf.nn.silu,
      "softplus": tf.nn.softplus,
  })

# Tensors of the input's size that the forward pass keeps for the backward
# pass (relu: its output; smelu/gsmelu: x only, custom gradient; the others:
# x, plus the intermediates their registered gradients read).
_SAVED_FOR_BACKWARD = {"relu": 1, "smelu": 1, "gsmelu": 1}


def _step_fn(activation, mode: str, x, dy):
  """The traced forward+backward step of ``activation`` for ``mode``."""
  def step(x, dy):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = activation(x)
    return y, tape.gradient(y, x, output_gradients=dy)
  function = tf.function(step, jit_compile=(mode == "xla"))
  # "graph_unfused": SmeLU/gSmeLU traced with plain TF ops, no fused kernels.
  with activations.fused_kernels(mode != "graph_unfused"):
    return function.get_concrete_function(x, dy)


def _device_name() -> str:
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU: {details.get('device_name', gpus[0].name)}"
  return f"CPU: {platform_info.cpu_name()}, {os.cpu_count()} logical cores"


def _run_and_wait(step, x, dy) -> None:
  """One call, waiting until its results exist (reads back one element)."""
  _, dx = step(x, dy)
  dx[(0,) * dx.shape.rank].numpy()


def _time_round_robin(steps: dict, x, dy, repeats: int, warmup: int):
  names = list(steps)
  for _ in range(warmup):
    for name in names:
      _run_and_wait(steps[name], x, dy)
  times = {name: [] for name in names}
  for r in range(repeats):
    shift = r % len(names)
    for name in names[shift:] + names[:shift]:
      start = time.perf_counter()
      _run_and_wait(steps[name], x, dy)
      times[name].append((time.perf_counter() - start) * 1e3)
  return times


def _peak_memory(steps: dict, x, dy, on_gpu: bool) -> dict:
  """Peak allocator bytes during one forward+backward step, per activation."""
  element_bytes = x.dtype.size * x.shape.num_elements()
  out = {"input_bytes": element_bytes}
  if not on_gpu:
    out.update(
        peak_bytes=None,
        reason=("tf.config.experimental.get_memory_info reports GPU/TPU "
                "allocators only; on CPU there is no allocator peak to read"))
    out["saved_for_backward_bytes"] = {
        name: count * element_bytes
        for name, count in _SAVED_FOR_BACKWARD.items()}
    return out
  peaks = {}
  for name, step in steps.items():
    tf.config.experimental.reset_memory_stats("GPU:0")
    base = tf.config.experimental.get_memory_info("GPU:0")["current"]
    _run_and_wait(step, x, dy)
    peaks[name] = tf.config.experimental.get_memory_info("GPU:0")["peak"] - base
  out["peak_bytes_above_inputs"] = peaks
  return out


def _keras3_activations(k3, ops) -> dict:
  return {
      "relu": ops.relu,
      "smelu": lambda x: k3.smelu(x, 1.0),
      "gsmelu": lambda x: k3.gsmelu(x, 0.1, 1.0, 1.0, 1.0, 0.0),
      "gelu": lambda x: ops.gelu(x, approximate=False),
      "gelu_tanh": lambda x: ops.gelu(x, approximate=True),
      "swish": ops.silu,
      "softplus": ops.softplus,
  }


def _keras3_benchmark(args, names: list[str], shape: list[int]) -> dict:
  """Forward+backward of the keras.ops activations under jax.jit."""
  backend = os.environ.setdefault("KERAS_BACKEND", "jax")
  if backend != "jax":
    raise SystemExit(f"--keras3 times under jax.jit: run with KERAS_BACKEND="
                     f"jax or unset, not {backend!r}")
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from keras import ops  # pylint: disable=g-import-not-at-top
  from recsys_smelu import keras3 as k3  # pylint: disable=g-import-not-at-top

  functions = _keras3_activations(k3, ops)
  device = jax.devices()[0]
  key_x, key_dy = jax.random.split(jax.random.key(1))
  x = jax.device_put(2.0 * jax.random.normal(key_x, shape, args.dtype), device)
  dy = jax.device_put(jax.random.normal(key_dy, shape, args.dtype), device)

  def make_step(fn):
    def step(x, dy):
      y, pullback = jax.vjp(fn, x)
      return y, pullback(dy)[0]
    return jax.jit(step)

  steps = {n: make_step(functions[n]) for n in names}

  def run_and_wait(step):
    jax.block_until_ready(step(x, dy))

  for _ in range(args.warmup):
    for name in names:
      run_and_wait(steps[name])
  times = {name: [] for name in names}
  for r in range(args.repeats):
    shift = r % len(names)
    for name in names[shift:] + names[:shift]:
      start = time.perf_counter()
      run_and_wait(steps[name])
      times[name].append((time.perf_counter() - start) * 1e3)

  residuals = {}
  for name in names:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      jax.ad_checkpoint.print_saved_residuals(functions[name], x)
    residuals[name] = [re.sub(r" from \S+\.py:\d+:\d+", "", line)
                       for line in out.getvalue().strip().splitlines()]

  kind = getattr(device, "device_kind", "") or device.platform
  if device.platform == "cpu":
    kind = f"{platform_info.cpu_name()}, {os.cpu_count()} logical cores"
  result = {"keras3": True, "backend": "jax", "jax": jax.__version__,
            "shape": shape, "device": f"{device.platform.upper()}: {kind}",
            "dtype": args.dtype, "repeats": args.repeats,
            "warmup": args.warmup,
            "timing": ("median ms per jitted forward+backward call, "
                       "round-robin"),
            "modes": {"jit": _summarize(times)},
            "saved_residuals": residuals}
  jit = result["modes"]["jit"]
  if {"smelu", "gelu", "swish"} <= set(jit):
    result["targets"] = {
        "smelu_at_most_1.10x_relu": jit["smelu"]["ratio_to_relu"] <= 1.10,
        "smelu_faster_than_gelu": jit["smelu"]["ms"] < jit["gelu"]["ms"],
        "smelu_faster_than_swish": jit["smelu"]["ms"] < jit["swish"]["ms"],
    }
  return result


def _summarize(times: dict) -> dict:
  relu_ms = statistics.median(times["relu"])
  return {
      name: {"ms": round(statistics.median(t), 3),
             "ratio_to_relu": round(statistics.median(t) / relu_ms, 3),
             "p10_ms": round(sorted(t)[len(t) // 10], 3),
             "p90_ms": round(sorted(t)[(len(t) * 9) // 10], 3)}
      for name, t in times.items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--keras3", action="store_true",
                      help="time recsys_smelu.keras3 under jax.jit (Keras 3, "
                      "JAX backend) instead of the TF-side ops")
  parser.add_argument("--dtype", default="float32",
                      choices=["float32", "bfloat16"],
                      help="input dtype (--keras3 only)")
  parser.add_argument("--repeats", type=int, default=30,
                      help="timed calls per activation and mode (median)")
  parser.add_argument("--warmup", type=int, default=3,
                      help="untimed calls per activation and mode first")
  parser.add_argument("--shape", default="8192,1024",
                      help="input shape, comma-separated")
  parser.add_argument("--modes", default="graph,xla,graph_unfused",
                      help="comma-separated subset of graph,xla,graph_unfused")
  parser.add_argument("--only", default="",
                      help="comma-separated subset of activations (relu is "
                      "always included as the baseline)")
  args = parser.parse_args(argv)

  shape = [int(d) for d in args.shape.split(",")]
  names = list(NAMES)
  if args.only:
    wanted = {"relu", *args.only.split(",")}
    unknown = wanted - set(NAMES)
    if unknown:
      parser.error(f"unknown activations {sorted(unknown)}; valid: {names}")
    names = [n for n in names if n in wanted]
  if args.keras3:
    print(json.dumps(_keras3_benchmark(args, names, shape), indent=1))
    return 0
  if args.dtype != "float32":
    parser.error("--dtype applies to --keras3 only")
  _import_tf_side()
  tf.get_logger().setLevel("ERROR")  # one retracing notice per activation
  modes = args.modes.split(",")
  if set(modes) - {"graph", "xla", "graph_unfused"}:
    parser.error(f"--modes must be a subset of graph,xla,graph_unfused, got "
                 f"{args.modes}")

  x = tf.random.stateless_normal(shape, seed=(1, 2), stddev=2.0)
  dy = tf.random.stateless_normal(shape, seed=(3, 4))
  on_gpu = bool(tf.config.list_physical_devices("GPU"))
  result = {"shape": shape, "device": _device_name(), "dtype": "float32",
            "repeats": args.repeats, "warmup": args.warmup,
            "timing": "median ms per forward+backward call, round-robin",
            "modes": {}}
  for mode in modes:
    steps = {n: _step_fn(ACTIVATIONS[n], mode, x, dy) for n in names}
    times = _time_round_robin(steps, x, dy, args.repeats, args.warmup)
    result["modes"][mode] = _summarize(times)
    if mode == "xla" or (mode == modes[-1] and "memory" not in result):
      result["memory"] = _peak_memory(steps, x, dy, on_gpu)
      result["memory"]["mode"] = mode
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
