#!/usr/bin/env bash
# The README's first command: set up, generate the synthetic data, and run the
# twin evaluation (ReLU vs SmeLU vs GELU, 3 models each), then print the table.
# Re-running reuses the environment, the data and every finished model.
#
#   scripts/quickstart.sh                  # about 10 minutes on 2 CPU cores
#   OUT=/tmp/twin scripts/quickstart.sh    # report somewhere else
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh"
cd "$ROOT"
PY="$VENV/bin/python"
DATA="$ROOT/data/quickstart"
OUT="${OUT:-$ROOT/quickstart_out}"

if [ ! -f "$DATA/truth.json" ]; then
  echo "Generating synthetic Criteo-format data with a known true CTR in $DATA"
  "$PY" -m recsys_smelu.data.synthetic --output_dir="$DATA" \
      --num_train=60000 --num_eval=20000 --seed=0
fi

echo "Training 3 models each of relu, smelu:beta=1 and gelu (see $OUT/runs/*/*/train.log)"
"$PY" -m recsys_smelu.twin --config=configs/quickstart.py --output_dir="$OUT" \
    --variants=relu,smelu:beta=1,gelu --num_models=3 --vary=init,data_order \
    --parallel=2 "$@"
