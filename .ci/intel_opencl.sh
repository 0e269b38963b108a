#!/usr/bin/env bash
# Intel's OpenCL CPU runtime from its PyPI wheels, as a second OpenCL stack beside PoCL (issue 17).
#
#   .ci/intel_opencl.sh DIR    fetches the wheels, unpacks their libraries into DIR and writes
#                              DIR/env.sh; `. DIR/env.sh` then makes Intel's runtime the only
#                              OpenCL platform of that shell (KVARN_CL_PLATFORM=Intel).
#   .ci/intel_opencl.sh --download-only
#                              fetches and checks the wheels only (.ci/run does this in the
#                              background during the build, so the download overlaps it).
#
# The wheels are pinned by version and sha256 (pip download --require-hashes, --no-deps: the three
# are the whole runtime). They are kept in ${KVARN_CL_WHEEL_CACHE:-~/.cache/kvarn_cl/wheels}, so a
# machine that keeps its home folder between CI runs fetches them once (270 MB).
#
# The runtime is registered for the processes that source env.sh only: OCL_ICD_VENDORS names a
# folder holding one ICD file (libintelocl.so), so Debian's ICD loader sees Intel's platform and
# not PoCL's, and the rest of CI is untouched. LD_LIBRARY_PATH points at the three lib folders for
# libintelocl.so's own dependencies (TBB, the compiler runtime); the intel-opencl-rt wheel also
# ships a libOpenCL.so (an ICD loader of its own), which is deleted after unpacking so that the
# library keeps using the Debian loader it was linked against.
set -euo pipefail
dest=${1:?usage: .ci/intel_opencl.sh DIR | --download-only}
cache=${KVARN_CL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn_cl/wheels}
mkdir -p "$cache"

# tbb 2023.2.0 is the tbb==2023.* the runtime was tried with.
req="$cache/requirements.txt"
cat > "$req" <<'EOF'
intel-opencl-rt==2026.2.0 --hash=sha256:6b6215a420598b4999ee01caca6d5cbe106aa4155c46c52377619c5aafce9f67
intel-cmplr-lib-rt==2026.2.0 --hash=sha256:9f713083073a820d2496a6da8e8d4f3482aba6640f74521d25ea48dcebe72748
tbb==2023.2.0 --hash=sha256:7d80615b6e970f11671fa05b6eaa9483ac864fbfe525ac280271a78b37870b7c
EOF
wheels=(intel_opencl_rt-2026.2.0-py2.py3-none-manylinux_2_28_x86_64.whl
        intel_cmplr_lib_rt-2026.2.0-py2.py3-none-manylinux_2_28_x86_64.whl
        tbb-2023.2.0-py2.py3-none-manylinux_2_28_x86_64.whl)
have=1
for w in "${wheels[@]}"; do [ -f "$cache/$w" ] || have=0; done
if [ "$have" = 1 ]; then
  echo "Intel OpenCL wheels: cached in $cache"
else
  python3 -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
    -r "$req" -d "$cache"
fi
# A cached wheel is checked too: a damaged file fails here, not as a crash inside the runtime.
(cd "$cache" && sha256sum -c --quiet <<EOF
6b6215a420598b4999ee01caca6d5cbe106aa4155c46c52377619c5aafce9f67  ${wheels[0]}
9f713083073a820d2496a6da8e8d4f3482aba6640f74521d25ea48dcebe72748  ${wheels[1]}
7d80615b6e970f11671fa05b6eaa9483ac864fbfe525ac280271a78b37870b7c  ${wheels[2]}
EOF
)
[ "$dest" = --download-only ] && exit 0
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# Only the libraries (and the runtime's .rtl builtin libraries beside them) are needed.
python3 - "$dest" "${wheels[@]/#/$cache/}" <<'EOF'
import sys, zipfile
dest = sys.argv[1]
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if "/data/lib/" in name:
                z.extract(name, dest)
EOF
libs=""
for d in "$dest"/*.data/data/lib; do libs="${libs:+$libs:}$d"; done
rm -f "$dest"/intel_opencl_rt-*.data/data/lib/libOpenCL.so*
ocl=$(ls "$dest"/intel_opencl_rt-*.data/data/lib/libintelocl.so)
mkdir -p "$dest/vendors"
echo "$ocl" > "$dest/vendors/intel-cpu.icd"
cat > "$dest/env.sh" <<EOF
export OCL_ICD_VENDORS=$dest/vendors
export LD_LIBRARY_PATH=$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export KVARN_CL_PLATFORM=Intel
EOF
echo "Intel OpenCL runtime in $dest (. $dest/env.sh)"
