#!/bin/sh
# SPDX-License-Identifier: MIT
# Check that every C source and header of the tree is formatted as
# .clang-format says (clang-format 14, Debian's `clang-format`); prints the
# files that are not and exits 1. With --fix, formats them in place.
set -eu
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null 2>&1 || {
	echo "check-format: $cf not found (apt-get install clang-format)" >&2
	exit 1
}
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src test bench include -name '*.[ch]')
if [ "${1:-}" = --fix ]; then
	# shellcheck disable=SC2086 # a list of files
	"$cf" -i $files
	exit 0
fi
bad=0
for f in $files; do
	if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f (tools/check-format.sh --fix)"
		bad=$((bad + 1))
	fi
done
if [ $bad -ne 0 ]; then
	echo "check-format: $bad file(s) differ from .clang-format"
	exit 1
fi
echo "check-format: $(echo "$files" | wc -w) files formatted"
