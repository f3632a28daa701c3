"""What machine a measurement ran on, for reports and benchmark JSON."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
  """The CPU model ("AMD EPYC ...") from /proc/cpuinfo, else platform's guess."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cpu_description() -> str:
  """e.g. "CPU: AMD EPYC 7B13 (2 cores)"."""
  return f"CPU: {cpu_name()} ({os.cpu_count()} cores)"
