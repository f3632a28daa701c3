# Sourced by quickstart.sh and test.sh: creates .venv in the repo root if it is
# missing and (re)installs the package when setup.py changed since the last
# install. Idempotent: a second call costs a hash, not a pip run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.recsys_smelu_installed${EXTRAS:+_$EXTRAS}"
WANT="$(sha256sum "$ROOT/setup.py" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "Installing recsys-smelu${EXTRAS:+[$EXTRAS]} into $VENV (first time: about 2 minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  # The native ops (recsys_smelu/native) would build on first use;
  # build it now. Without a C++ compiler the stock TensorFlow ops are used.
  "$VENV/bin/python" -m recsys_smelu.native >/dev/null \
    || echo "Native ops not built (see above); stock TensorFlow ops will be used (slower)." >&2
  echo "$WANT" > "$STAMP"
fi
