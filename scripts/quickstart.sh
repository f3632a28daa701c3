#!/usr/bin/env bash
# The README's first command: set up, generate the synthetic data, and run the
# twin evaluation (ReLU vs SmeLU vs GELU, 3 models each, twins sharing their
# initialization and differing in data order), then print the table.
# Re-running reuses the environment, the data and every finished model.
#
#   scripts/quickstart.sh                  # run time: docs/benchmarks.md
#   OUT=/tmp/twin scripts/quickstart.sh    # report somewhere else
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh"
cd "$ROOT"
PY="$VENV/bin/python"
DATA="$ROOT/data/quickstart"
OUT="${OUT:-$ROOT/quickstart_out}"
NUM_TRAIN=300000
NUM_EVAL=20000

# (Re)generate when missing or made with other sizes by an older quickstart.
if ! grep -q "\"num_train\": $NUM_TRAIN," "$DATA/truth.json" 2>/dev/null; then
  echo "Generating synthetic Criteo-format data with a known true CTR in $DATA"
  "$PY" -m recsys_smelu.data.synthetic --output_dir="$DATA" \
      --num_train=$NUM_TRAIN --num_eval=$NUM_EVAL --seed=0
fi

echo "Training 3 models each of relu, smelu:beta=1 and gelu (see $OUT/runs/*/*/train.log)"
"$PY" -m recsys_smelu.twin --config=configs/quickstart.py --output_dir="$OUT" \
    --variants=relu,smelu:beta=1,gelu --num_models=3 --vary=data_order \
    --parallel=2 "$@"
