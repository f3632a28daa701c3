#!/usr/bin/env bash
# Re-runs the real-data studies of docs/reproducibility.md and regenerates
# their tables: the Criteo Kaggle sample and MovieLens 100K, each with twins
# sharing their initialization (--vary=data_order) and with the init varied
# too (--vary=init,data_order), 5 models per variant, the variants of
# STUDY_VARIANTS in configs/study_criteo_sample.py (logreg included). Not part of CI (it
# trains a few hundred models); the CI tests run each code path on tiny data.
#
#   scripts/run_studies.sh                   # all four studies
#   STUDIES="criteo_sample_shared_init" scripts/run_studies.sh
#   OUT=/tmp/studies NUM_MODELS=5 PARALLEL=2 scripts/run_studies.sh
#
# Needs ../shared/data/{criteo-kaggle-sample,movielens-100k} beside the
# checkout (see configs/criteo_sample.py and configs/movielens.py).
# Re-running reuses every finished model (the twin evaluator skips them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh"
cd "$ROOT"
PY="$VENV/bin/python"
OUT="${OUT:-$ROOT/studies_out}"
NUM_MODELS="${NUM_MODELS:-5}"
PARALLEL="${PARALLEL:-2}"
STUDIES="${STUDIES:-criteo_sample_shared_init criteo_sample_varied_init movielens_shared_init movielens_varied_init}"
VARIANTS="$("$PY" -c 'import runpy; print(",".join(runpy.run_path("configs/study_criteo_sample.py")["STUDY_VARIANTS"]))')"

tables=()
for study in $STUDIES; do
  case "$study" in
    criteo_sample_*) config=configs/study_criteo_sample.py; extra=() ;;
    movielens_*) config=configs/study_movielens.py; extra=(--top_k=3) ;;
    *) echo "error: unknown study '$study'" >&2; exit 2 ;;
  esac
  case "$study" in
    *_shared_init) vary=data_order ;;
    *_varied_init) vary=init,data_order ;;
  esac
  dir="$OUT/$study"
  # logreg's L2 and rate are chosen on validation once per data set, with
  # model 0's seeds, which both conditions share: reuse the choice.
  first="$OUT/${study%_*_init}_shared_init/runs/logreg/selection.json"
  if [[ "$study" == *_varied_init && -f "$first" && ! -f "$dir/runs/logreg/selection.json" ]]; then
    mkdir -p "$dir/runs/logreg" && cp "$first" "$dir/runs/logreg/"
  fi
  echo "== $study: $config, --vary=$vary, $NUM_MODELS models per variant -> $dir"
  "$PY" -m recsys_smelu.twin --config="$config" --output_dir="$dir" \
      --variants="$VARIANTS" --num_models="$NUM_MODELS" --vary="$vary" \
      --parallel="$PARALLEL" "${extra[@]}"
  tables+=("$study=$dir/results.json")
done
"$PY" scripts/study_tables.py --doc=docs/reproducibility.md "${tables[@]}"
