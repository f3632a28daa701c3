"""recsys-smelu-infer-schema FILE: a config snippet of guessed column roles.

Reads the header and a sample of rows of a CSV/TSV file (plain or gzip, local
or gs://) and prints ``--config.data.*`` flags with the roles guessed by
``tabular.guess_roles`` (numeric columns dense, the rest categorical, a 0/1
column named like a label the label), for the user to check and edit.

  recsys-smelu-infer-schema train.csv.gz [--sample_rows=1000] [--delimiter=;]
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags

_FORMAT = flags.DEFINE_enum(
    "format", "", ["", "csv", "tsv"],
    "File format; empty = from the file name (.tsv/.tab: tsv, else csv).")
_DELIMITER = flags.DEFINE_string(
    "delimiter", "", "Field separator; empty = the format's (',' or tab).")
_SAMPLE_ROWS = flags.DEFINE_integer(
    "sample_rows", 1000, "Rows read after the header to guess the roles.",
    lower_bound=1)


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError("give one file: recsys-smelu-infer-schema FILE")
  from recsys_smelu.data import tabular  # pylint: disable=g-import-not-at-top
  try:
    print(tabular.infer_schema_snippet(
        argv[1], file_format=_FORMAT.value, delimiter=_DELIMITER.value,
        sample_rows=_SAMPLE_ROWS.value))
  except tabular.DataError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def run() -> None:
  """Console script recsys-smelu-infer-schema."""
  app.run(main)


if __name__ == "__main__":
  run()
