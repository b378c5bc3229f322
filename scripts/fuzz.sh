#!/usr/bin/env bash
# Runs every fuzz target for a while: scripts/fuzz.sh [FUZZTIME]
# FUZZTIME is a duration (10s) or an execution count (1000000x).
# `make test` runs each for a few seconds; `make fuzz` longer. Findings are
# written under the package's testdata/fuzz/ and become regression cases.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
FUZZTIME=${1:-5s}
targets=(
	"./internal/digest FuzzParse"
	"./internal/manifest FuzzManifest"
	"./internal/manifest FuzzPath"
	"./internal/manifest FuzzNames"
	"./web FuzzParseRange"
	"./app FuzzConfig"
	"./app FuzzConfigValues"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== fuzz $name ($pkg) for $FUZZTIME"
	out=$(mktemp)
	if ! go test -timeout=0 -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -parallel="${FUZZ_PARALLEL:-2}" "$pkg" >"$out" 2>&1; then
		cat "$out" # the whole output: why it failed is above its last lines
		rm -f "$out"
		exit 1
	fi
	tail -3 "$out"
	rm -f "$out"
done
