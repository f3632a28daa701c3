"""Generated Avazu-shaped click logs for the tabular tests (Avazu itself is
not shipped): a header, an ``id`` column, the ``click`` label, ``hour``
(YYMMDDHH), categorical columns, optionally dense columns, with a click rate
that depends on a few columns so a model has something to learn."""

from __future__ import annotations

import csv
import os

import numpy as np

CATEGORICAL = ("hour", "C1", "banner_pos", "site_id", "site_category",
               "app_id", "device_ip", "device_model")
DENSE = ("price", "dwell")


def avazu_rows(num_rows: int, seed: int = 0, with_dense: bool = False,
               start_id: int = 0) -> tuple[list[str], list[list[str]]]:
  """(header, rows as strings) of an Avazu-shaped log."""
  rng = np.random.default_rng(seed)
  header = ["id", "click", *CATEGORICAL] + (list(DENSE) if with_dense else [])
  rows = []
  for i in range(num_rows):
    site = int(rng.integers(0, 40))
    app = int(rng.integers(0, 25))
    banner = int(rng.integers(0, 3))
    values = {
        "hour": str(14102100 + int(rng.integers(0, 24))),
        "C1": str(1005 + int(rng.integers(0, 3))),
        "banner_pos": str(banner),
        "site_id": f"{site * 7919 % 65536:08x}",
        "site_category": f"cat{site % 6}",
        "app_id": f"app{app:03d}" if rng.random() > 0.05 else "",
        "device_ip": f"{int(rng.integers(0, 2**31)):08x}",
        "device_model": f"m{int(rng.integers(0, 60))}",
    }
    logit = -1.5 + 1.2 * (site % 3 == 0) - 0.8 * banner + 0.6 * (app % 4 == 1)
    price = float(rng.normal(2.0, 3.0))
    if with_dense:
      logit += 0.3 * price
    click = int(rng.random() < 1.0 / (1.0 + np.exp(-logit)))
    row = [str(start_id + i), str(click)] + [values[c] for c in CATEGORICAL]
    if with_dense:
      row += [f"{price:.3f}" if rng.random() > 0.1 else "",
              str(int(rng.integers(-5, 200)))]
    rows.append(row)
  return header, rows


def write_avazu(path: str, num_rows: int, seed: int = 0, *,
                with_dense: bool = False, delimiter: str = ",",
                start_id: int = 0) -> str:
  """Writes an Avazu-shaped file with a header; returns ``path``."""
  header, rows = avazu_rows(num_rows, seed, with_dense, start_id)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
  return path


def avazu_config_changes(train_files: str, eval_files: str, *,
                         with_dense: bool = False, file_format: str = "csv",
                         **extra) -> dict:
  """The data.* keys that read ``write_avazu`` files."""
  changes = {
      "data.format": file_format,
      "data.header": True,
      "data.train_files": train_files,
      "data.eval_files": eval_files,
      "data.eval_truth": "",
      "data.label_column": "click",
      "data.ignore_columns": "id",
      "data.categorical_columns": ",".join(CATEGORICAL),
      "data.dense_columns": ",".join(DENSE) if with_dense else "",
      "data.num_buckets_per_column": "device_ip=50000",
  }
  changes.update(extra)
  return changes
