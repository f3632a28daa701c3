"""scikit-learn's converged logistic regression on a config's features.

The reference that the twin evaluator's ``logreg`` variant (Adagrad, early
stopping) is held to: ``LogisticRegression`` (L2, lbfgs to convergence) on
the identical one-hot bucket ids and transformed dense features, C chosen
on the validation split, the eval split scored once at that C
(``recsys_smelu.logreg.sklearn_reference``). Prints one JSON object.

  python scripts/sklearn_logreg.py --config=configs/study_criteo_sample.py \\
      [--config.data.train_rows=5400:7200] [--c_grid=0.01,0.1,1]
"""

from __future__ import annotations

import json
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu import logreg

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py); override any key "
    "with --config.section.key=value.", lock_config=True)
flags.DEFINE_list("c_grid", [str(c) for c in logreg.SKLEARN_C_GRID],
                  "C values searched on the validation split.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    result = logreg.sklearn_reference(f.config,
                                      [float(c) for c in f.c_grid])
  except (config_lib.ConfigError, data_lib.DataError, ValueError,
          FileNotFoundError) as e:
    raise SystemExit(f"error: {e}") from None
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  config_lib.check_command_line_overrides(sys.argv)
  app.run(main)
