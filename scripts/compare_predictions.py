"""Checks that two twin-evaluation outputs hold the same predictions, bit for bit.

A refactor that must not change results is checked by running the quickstart
before and after it on the same machine and comparing the two output dirs::

  OUT=/tmp/before scripts/quickstart.sh      # at the old commit
  OUT=/tmp/after scripts/quickstart.sh       # at the new commit
  python scripts/compare_predictions.py /tmp/before /tmp/after

Every ``runs/<variant>/<i>/predictions.npz`` found under either dir is
compared array by array: same names, dtypes, shapes and raw bytes. (The
``.npz`` files themselves are zip archives that carry a write time, so the
files differ even when every array is identical.) ``--data DIR_A DIR_B``
also compares the generated data files byte for byte.

Prints one JSON object; exits 1 when anything differs or a run is missing
on one side, 0 when every run matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np

PREDICTIONS_GLOB = "runs/*/*/predictions.npz"


def _runs(root: pathlib.Path) -> dict[str, pathlib.Path]:
  return {str(p.parent.relative_to(root)): p
          for p in sorted(root.glob(PREDICTIONS_GLOB))}


def compare_npz(path_a: pathlib.Path, path_b: pathlib.Path) -> list[str]:
  """Differences between two .npz files' arrays; [] when bit-identical."""
  problems = []
  with np.load(path_a) as a, np.load(path_b) as b:
    if sorted(a.files) != sorted(b.files):
      return [f"arrays {sorted(a.files)} vs {sorted(b.files)}"]
    for name in sorted(a.files):
      x, y = a[name], b[name]
      if x.dtype != y.dtype or x.shape != y.shape:
        problems.append(f"{name}: {x.dtype}{list(x.shape)} vs "
                        f"{y.dtype}{list(y.shape)}")
      elif x.tobytes() != y.tobytes():
        itemsize = x.dtype.itemsize
        differ = int(np.any(
            np.ascontiguousarray(x).view(np.uint8).reshape(-1, itemsize)
            != np.ascontiguousarray(y).view(np.uint8).reshape(-1, itemsize),
            axis=1).sum())
        detail = ""
        if np.issubdtype(x.dtype, np.number):
          detail = f", max |diff| {float(np.max(np.abs(x - y))):.3g}"
        problems.append(f"{name}: bytes differ in {differ} of {x.size} values"
                        f"{detail}")
  return problems


def _sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def compare_data(dir_a: pathlib.Path, dir_b: pathlib.Path) -> dict[str, str]:
  """{file: problem} for data files that differ or exist on one side only."""
  names_a = {p.name for p in dir_a.iterdir() if p.is_file()}
  names_b = {p.name for p in dir_b.iterdir() if p.is_file()}
  problems = {n: "missing in second" for n in names_a - names_b}
  problems.update({n: "missing in first" for n in names_b - names_a})
  for name in sorted(names_a & names_b):
    if name == "truth.json":  # summary statistics, not data (see its README)
      continue
    if _sha256(dir_a / name) != _sha256(dir_b / name):
      problems[name] = "bytes differ"
  return problems


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("before", type=pathlib.Path)
  parser.add_argument("after", type=pathlib.Path)
  parser.add_argument("--data", nargs=2, type=pathlib.Path,
                      metavar=("DATA_BEFORE", "DATA_AFTER"))
  args = parser.parse_args(argv)
  runs_a, runs_b = _runs(args.before), _runs(args.after)
  result = {"runs_compared": 0, "identical": [], "different": {},
            "missing": sorted(set(runs_a) ^ set(runs_b))}
  for run in sorted(set(runs_a) & set(runs_b)):
    result["runs_compared"] += 1
    problems = compare_npz(runs_a[run], runs_b[run])
    if problems:
      result["different"][run] = problems
    else:
      result["identical"].append(run)
  if args.data:
    result["data_different"] = compare_data(*args.data)
  ok = (result["runs_compared"] > 0 and not result["different"]
        and not result["missing"] and not result.get("data_different"))
  result["all_identical"] = ok
  print(json.dumps(result, indent=2))
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
