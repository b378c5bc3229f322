#!/usr/bin/env bash
# Runs every fuzz target for a while: scripts/fuzz.sh [FUZZTIME]
# FUZZTIME is a duration (10s) or an execution count (1000000x) for every
# target. Without it each target runs its own smoke count below, about five
# seconds of work on this 2-core machine, times FUZZ_SCALE (default 1):
# `make test` runs the smoke, `make fuzz` FUZZ_SCALE=24 (about two minutes
# a target). Findings are written under the package's testdata/fuzz/ and
# become regression cases.
#
# The smoke is a count, not a duration, on purpose: with a duration Go 1.26's
# fuzz coordinator can report its own -fuzztime deadline as a failure
# ("context deadline exceeded", no crasher written; golang/go#75804, fixed in
# Go 1.27). It failed `make test` that way twice on clean clones. A count
# sets no deadline, so the race cannot happen; a duration given as
# FUZZTIME can still meet it (a failure that writes no testdata file).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
FUZZTIME=${1:-}
# package, target, smoke count (sized from each target's speed here: the
# config targets build a whole configuration per input and are ~100x slower)
targets=(
	"./internal/digest FuzzParse 200000x"
	"./internal/manifest FuzzManifest 100000x"
	"./internal/manifest FuzzPath 100000x"
	"./internal/manifest FuzzNames 150000x"
	"./web FuzzParseRange 30000x"
	"./app FuzzConfig 5000x"
	"./app FuzzConfigValues 8000x"
)
for t in "${targets[@]}"; do
	read -r pkg name smoke <<<"$t"
	budget=${FUZZTIME:-$((${smoke%x} * ${FUZZ_SCALE:-1}))x}
	echo "== fuzz $name ($pkg) for $budget"
	out=$(mktemp)
	if ! go test -timeout=0 -run='^$' -fuzz="^${name}\$" -fuzztime="$budget" -parallel="${FUZZ_PARALLEL:-2}" "$pkg" >"$out" 2>&1; then
		cat "$out" # the whole output: why it failed is above its last lines
		rm -f "$out"
		exit 1
	fi
	tail -3 "$out"
	rm -f "$out"
done
