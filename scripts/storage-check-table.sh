#!/usr/bin/env bash
# Runs `artifactstore storage check` against every S3 test server and prints
# the results as one Markdown table (docs/OPERATOR.md records it).
#
#   make build s3-up && scripts/storage-check-table.sh
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
BIN=$(realpath "${ARTIFACTSTORE_BIN:-bin/artifactstore}")
STATE=${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}
# shellcheck disable=SC1091
[[ -n ${ARTIFACTSTORE_TEST_S3_SERVERS:-} ]] || . "$STATE/env.sh"
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
empty=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
IFS=, read -r -a servers <<<"$ARTIFACTSTORE_TEST_S3_SERVERS"
for s in "${servers[@]}"; do
	up=${s^^}
	ep_var=ARTIFACTSTORE_TEST_S3_${up}_ENDPOINT key_var=ARTIFACTSTORE_TEST_S3_${up}_ACCESS_KEY secret_var=ARTIFACTSTORE_TEST_S3_${up}_SECRET_KEY
	bucket=check-$s-$(date +%s)-$RANDOM
	curl -fsS -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "${!key_var}:${!secret_var}" \
		-H "x-amz-content-sha256: $empty" "${!ep_var}/$bucket" >/dev/null
	cat >"$tmp/$s.yaml" <<YAML
data_dir: $tmp/data-$s
backends:
  $s:
    type: s3
    endpoint_url: ${!ep_var}
    bucket: $bucket
    access_key_ref: env:$key_var
    secret_key_ref: env:$secret_var
routing:
  default: $s
YAML
	"$BIN" storage check --config "$tmp/$s.yaml" --backend "$s" --json >"$tmp/$s.json" || true
	curl -fsS -X DELETE --aws-sigv4 "aws:amz:us-east-1:s3" --user "${!key_var}:${!secret_var}" \
		-H "x-amz-content-sha256: $empty" "${!ep_var}/$bucket" >/dev/null || echo "note: bucket $bucket on $s not removed (not empty?)" >&2
done
python3 - "$tmp" "${servers[@]}" <<'PY'
import json, sys
tmp, servers = sys.argv[1], sys.argv[2:]
res = {s: json.load(open(f"{tmp}/{s}.json")) for s in servers}
steps = [st["name"] for st in res[servers[0]]["steps"]]
print("| step | " + " | ".join(servers) + " |")
print("|---|" + "---|" * len(servers))
for i, name in enumerate(steps):
    cells = []
    for s in servers:
        st = res[s]["steps"][i]
        cells.append(("PASS" if st["ok"] else "FAIL") + " %.1f ms" % (st["duration_ns"] / 1e6))
    print(f"| {name} | " + " | ".join(cells) + " |")
print("| **overall** | " + " | ".join("**PASS**" if res[s]["ok"] else "**FAIL**" for s in servers) + " |")
PY
