#!/usr/bin/env bash
# The C++ sources are formatted as .clang-format says (100 columns, issue 18 item 5):
# clang-format --dry-run -Werror over src/ include/ tools/ test/ python/src. Prints each file
# clang-format would change with its first differences, and fails when there is any.
#
#   .ci/format_check.sh            (from anywhere inside the repository)
#   CLANG_FORMAT=clang-format-18 .ci/format_check.sh
#
# To fix what it reports: clang-format -i <files> (the lead applied it to the whole tree once).
# Only files git tracks are checked, so build trees and generated sources are never read.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"

clang_format=${CLANG_FORMAT:-clang-format}
if ! command -v "$clang_format" >/dev/null; then
  echo "format_check: $clang_format not found (Debian: apt-get install clang-format)" >&2
  exit 2
fi
version=$("$clang_format" --version | sed -n 's/.*version \([0-9][0-9]*\).*/\1/p')
if [ -z "$version" ] || [ "$version" -lt 14 ]; then
  echo "format_check: $clang_format is version '${version:-unknown}', .clang-format needs 14 or newer" >&2
  exit 2
fi

mapfile -t files < <(git ls-files -- 'src/*.cpp' 'src/*.hpp' 'src/*.h' 'src/*.inl' \
  'include/*.hpp' 'include/*.h' 'tools/*.cpp' 'tools/*.hpp' 'test/*.cpp' 'test/*.hpp' \
  'test/*.c' 'python/src/*.cpp' 'python/src/*.hpp')
if [ "${#files[@]}" -eq 0 ]; then
  echo "format_check: no sources found" >&2
  exit 2
fi

bad=()
for f in "${files[@]}"; do
  if ! "$clang_format" --dry-run -Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done

if [ "${#bad[@]}" -ne 0 ]; then
  for f in "${bad[@]}"; do
    echo "--- $f"
    "$clang_format" "$f" | diff -u "$f" - | sed -n '3,14p' || true
  done
  echo "format_check: ${#bad[@]} of ${#files[@]} files are not formatted as .clang-format says" \
       "(fix: $clang_format -i ${bad[*]:0:3}${bad[3]:+ ...})" >&2
  exit 1
fi
echo "format_check: ${#files[@]} files formatted as .clang-format says"
