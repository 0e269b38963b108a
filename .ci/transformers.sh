#!/usr/bin/env bash
# The Hugging Face transformers integration (kvarn_cl.transformers, issue 20) tested on a real model.
#
#   .ci/transformers.sh VENV    installs torch, transformers and gguf into VENV (which already has
#                               kvarn_cl, as .ci/run's Python step leaves .venv) and runs
#                               python/tests/test_transformers.py on SmolLM2-135M (models/, from
#                               scripts/fetch_model.sh), failing instead of skipping anything.
#   .ci/transformers.sh --download-only
#                               fetches the wheels only, with Debian's pip (.ci/run does this in
#                               the background during the build, so the download overlaps it).
#
# The wheels are pinned by version and sha256 (.ci/transformers-requirements.txt, installed with
# --no-deps: the list is the whole set) and kept in ${KVARN_CL_WHEEL_CACHE:-~/.cache/kvarn_cl/wheels}/hf,
# so a machine that keeps its home folder downloads them once: 2.4 GB, almost all of it CUDA
# libraries that PyPI's only Linux torch links to (no CPU-only torch is on PyPI; Debian 12's is
# 1.13, too old for any transformers with an attention interface). Measured on the 2-core dev VM
# (2026-12-06, shared with other jobs): download 40-116 s (cold cache only), install into a fresh
# venv 99 s, the 11 tests 104-138 s (12 since the default-window test: 121-130 s, same VM,
# 19:14-19:25 UTC): about 4 min with a warm cache, 6 min cold. The venv grows by 4 GB (torch's CUDA
# libraries unpacked).
set -euo pipefail
venv=${1:?usage: .ci/transformers.sh VENV | --download-only}
pip=("$venv/bin/pip")
# The venv is made from /usr/bin/python3 (.ci/run), so its wheels are the ones that one takes.
[ "$venv" = --download-only ] && pip=(/usr/bin/python3 -m pip)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${KVARN_CL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn_cl/wheels}/hf
req=$here/transformers-requirements.txt
mkdir -p "$cache"
start=$SECONDS
# A stamp per requirements file marks a complete download, so a warm cache asks PyPI nothing (pip
# download alone re-resolves every pin: 29 s); the install below checks every wheel's sha256.
stamp=$cache/.complete-$(sha256sum "$req" | cut -c1-16)
if [ ! -f "$stamp" ]; then
  "${pip[@]}" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$req" -d "$cache"
  touch "$stamp"
fi
echo "transformers wheels: $(du -sh "$cache" | cut -f1) in $cache ($((SECONDS - start)) s)"
[ "$venv" = --download-only ] && exit 0
start=$SECONDS
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-index --find-links "$cache" \
  --require-hashes -r "$req"
echo "installed in $((SECONDS - start)) s"
"$venv/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
start=$SECONDS
# One torch thread: torch's OpenMP workers spin while waiting, and on a busy 2-core machine two of
# them made a decode step of the 135M model about 100x slower than one (measured on the dev VM).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
KVARN_CL_REQUIRE_HF=1 "$venv/bin/python" -m pytest -q -ra "$here/../python/tests/test_transformers.py"
echo "transformers tests: $((SECONDS - start)) s"
