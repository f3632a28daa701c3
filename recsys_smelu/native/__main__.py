"""Builds (if needed) and loads the native ops; prints the library path.

``python -m recsys_smelu.native`` — run once after installing, so the
first training run does not pay for the compile. Always compiles again
after a failed build (the failure record makes other processes fall back
without compiling). Exits non-zero with the compiler's message when the
build fails.
"""

import sys

from recsys_smelu import native


def main() -> int:
  try:
    native.remove_stale_files(keep=native.build(retry=True))
    native.load(required=True)
  except native.NativeOpsError as error:
    print(error, file=sys.stderr)
    return 1
  print(native.library_path())
  return 0


if __name__ == "__main__":
  sys.exit(main())
