#!/usr/bin/env bash
# Checks that CRIU's own `crit` decodes every image crpipe wrote: an outside check of
# wire compatibility. crpipe never ships or builds CRIU; point CRIT at a crit you have.
# Usage: CRIT=/path/to/crit scripts/check_crit.sh IMAGE_DIR
set -euo pipefail
dir=${1:?usage: CRIT=/path/to/crit $0 IMAGE_DIR}
crit=${CRIT:-crit}
command -v "$crit" >/dev/null || { echo "no crit: set CRIT" >&2; exit 2; }
fail=0
for f in "$dir"/*.img; do
  case "$(basename "$f")" in pages-*) continue ;; esac  # raw page data: crit has nothing to decode
  if out=$("$crit" show "$f" 2>&1 >/dev/null); then
    echo "ok   $(basename "$f")"
  else
    echo "FAIL $(basename "$f"): ${out##*$'\n'}"
    fail=1
  fi
done
exit $fail
