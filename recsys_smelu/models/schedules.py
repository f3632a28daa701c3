"""Learning-rate schedule shared by the dense and the embedding optimizers.

lr(s) = base * min(1, (s + 1) / warmup) * decay(s), where decay(s) is 1
('none'), 0.5 * (1 + cos(pi * p)) ('cosine') or 1 - p ('linear'), with
p = clip((s - warmup) / (steps - warmup), 0, 1). The trainer passes
``train.warmup_steps``, ``train.steps`` and ``train.decay`` in.
"""

from __future__ import annotations

import math
from typing import Union

import tensorflow as tf

from recsys_smelu import choices


@tf.keras.utils.register_keras_serializable(package="recsys_smelu")
class WarmupDecaySchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up, then constant, cosine or linear decay (module docstring)."""

  def __init__(self, base: float, warmup_steps: int, total_steps: int,
               decay: str):
    if decay not in choices.DECAYS:
      raise ValueError(f"decay must be one of {', '.join(choices.DECAYS)}, "
                       f"got {decay!r}")
    self.base, self.warmup_steps = float(base), int(warmup_steps)
    self.total_steps, self.decay = int(total_steps), decay

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = tf.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
    span = max(self.total_steps - self.warmup_steps, 1)
    progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
    if self.decay == "cosine":
      factor = 0.5 * (1.0 + tf.cos(math.pi * progress))
    elif self.decay == "linear":
      factor = 1.0 - progress
    else:
      factor = 1.0
    return self.base * warmup * factor

  def get_config(self):
    return dict(base=self.base, warmup_steps=self.warmup_steps,
                total_steps=self.total_steps, decay=self.decay)


def learning_rate(base: float, warmup_steps: int, total_steps: int, decay: str
                  ) -> Union[float, WarmupDecaySchedule]:
  """``base`` itself when there is no warm-up and no decay, else the schedule."""
  if warmup_steps == 0 and decay == "none":
    return float(base)
  return WarmupDecaySchedule(base, warmup_steps, total_steps, decay)
