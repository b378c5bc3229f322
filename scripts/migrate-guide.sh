#!/usr/bin/env bash
# Runs docs/OPERATOR.md section 16 ("Moving the store from the local disk
# to Ceph RGW") on this machine against the real Ceph RGW that
# scripts/s3-up.sh starts: a service on the local disk with packages,
# readers and a publisher that keep going the whole time, the RGW backend
# added by config (one restart), `storage migrate --dry-run`, then
# `storage migrate --from local --to rgw --delete-source`, and the checks
# the guide names. It fails if a read or a publish failed (the clients
# retry connection refusals during the restart, as artifactstore
# push/pull do) or if anything is left on the local disk.
#
#   scripts/migrate-guide.sh     (after `make build` and `make s3-up`)
#
# Environment: ARTIFACTSTORE_BIN (default bin/artifactstore), ROOT (default
# a new temporary folder), PACKAGES (default 200).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
BIN=$(realpath "${ARTIFACTSTORE_BIN:-bin/artifactstore}")
STATE=${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}
if [[ -z ${ARTIFACTSTORE_TEST_S3_CEPH_ENDPOINT:-} ]]; then
	# shellcheck disable=SC1091
	. "$STATE/env.sh"
fi
RGW=$ARTIFACTSTORE_TEST_S3_CEPH_ENDPOINT
export RGW_KEY=$ARTIFACTSTORE_TEST_S3_CEPH_ACCESS_KEY RGW_SECRET=$ARTIFACTSTORE_TEST_S3_CEPH_SECRET_KEY
ROOT=${ROOT:-$(mktemp -d)}
PACKAGES=${PACKAGES:-200}
PORT=${PORT:-18090}
URL=http://127.0.0.1:$PORT
BUCKET=artifacts-migrate-$(date +%s)-$RANDOM
CFG=$ROOT/config.yaml
step() { printf '\n== %s\n' "$*"; }
fail() { echo "migrate guide: $*" >&2; exit 1; }
pid= clients=()
cleanup() {
	for c in "${clients[@]}"; do kill "$c" 2>/dev/null || true; done
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	true
}
trap cleanup EXIT
serve() {
	"$BIN" serve --config "$CFG" >>"$ROOT/serve.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		curl -fsS "$URL/readyz" >/dev/null 2>&1 && return
		sleep 0.1
	done
	fail "the service did not become ready: $(tail -5 "$ROOT/serve.log")"
}
config() { # config BACKENDS ROUTING
	cat >"$CFG" <<YAML
data_dir: $ROOT/data
server:
  listen: 127.0.0.1:$PORT
backends:
  local:
    type: local
    path: $ROOT/objects
$1routing:
$2
YAML
}

step "0. A store on the local disk, with $PACKAGES packages"
config "" "  default: local"
serve
TOKEN=$("$BIN" token create --config "$CFG" --name ci --scope publish --producer ops)
AUTH="Authorization: Bearer $TOKEN"
for i in $(seq "$PACKAGES"); do
	head -c 2000 /dev/urandom >"$ROOT/pkg.bin"
	curl -fsS -H "$AUTH" -F "manifest={\"name\":\"app\",\"version\":\"1.$i\",\"producer\":\"ops\",\"retention_class\":\"release\"}" \
		-F "file=@$ROOT/pkg.bin;filename=app.bin" "$URL/v1/packages" >/dev/null
done
"$BIN" storage ls --config "$CFG" | head -3

step "Clients that keep reading and publishing through everything below"
: >"$ROOT/client-errors"
( # reader: any version, byte count checked
	n=0
	while :; do
		v=$(( RANDOM % PACKAGES + 1 ))
		size=$(curl -fsS --retry 20 --retry-connrefused --retry-delay 0 -H "$AUTH" "$URL/v1/packages/app/1.$v/files/app.bin" | wc -c) || echo "read 1.$v failed" >>"$ROOT/client-errors"
		[[ ${size:-0} == 2000 ]] || echo "read 1.$v: $size bytes" >>"$ROOT/client-errors"
		n=$((n + 1)); echo "$n" >"$ROOT/reads"
	done
) &
clients+=($!)
( # publisher: new versions, to wherever the routing says
	n=0
	while :; do
		n=$((n + 1))
		head -c 2000 /dev/urandom >"$ROOT/live.bin"
		curl -fsS --retry 20 --retry-connrefused --retry-delay 0 -H "$AUTH" -F "manifest={\"name\":\"live\",\"version\":\"$n\",\"producer\":\"ops\",\"retention_class\":\"release\"}" \
			-F "file=@$ROOT/live.bin;filename=live.bin" "$URL/v1/packages" >/dev/null || echo "publish live@$n failed" >>"$ROOT/client-errors"
		echo "$n" >"$ROOT/publishes"
		sleep 0.05
	done
) &
clients+=($!)
sleep 1

step "1. The bucket on RGW (section 2)"
if command -v aws >/dev/null; then
	AWS_ACCESS_KEY_ID=$RGW_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET aws --endpoint-url "$RGW" --region us-east-1 s3api create-bucket --bucket "$BUCKET" >/dev/null
else
	curl -fsS -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_KEY:$RGW_SECRET" \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$RGW/$BUCKET"
fi

step "2. Add the RGW backend, route new packages to it, check, restart"
config "  rgw:
    type: s3
    endpoint_url: $RGW
    bucket: $BUCKET
    access_key_ref: env:RGW_KEY
    secret_key_ref: env:RGW_SECRET
" "  default: rgw"
"$BIN" config check --config "$CFG" >/dev/null
"$BIN" storage check --config "$CFG" --backend rgw | tail -1
kill "$pid"; wait "$pid" || true
serve
echo "restarted; new packages now go to rgw"

step "3. What would move"
"$BIN" storage migrate --config "$CFG" --from local --to rgw --dry-run | tail -1

step "4. Move it, removing each local copy once its RGW copy is verified"
start=$(date +%s.%N)
"$BIN" storage migrate --config "$CFG" --from local --to rgw --delete-source
echo "took $(echo "$(date +%s.%N) - $start" | bc) s"
sleep 1
for c in "${clients[@]}"; do kill "$c"; done
clients=()

step "5. Check"
"$BIN" storage ls --config "$CFG"
# Content objects at once; the manifest records (internal/recovery) follow
# through the record outbox within moments.
for _ in $(seq 50); do
	left=$(find "$ROOT/objects" -type f | wc -l)
	[[ $left == 0 ]] && break
	sleep 0.2
done
echo "files left on the local disk: $left"
[[ $left == 0 ]] || fail "$left files left on the local disk: $(find "$ROOT/objects" -type f | head -3)"
"$BIN" verify --config "$CFG" --backend rgw | tail -1
"$BIN" db check --config "$CFG" | tail -1
echo "reads: $(cat "$ROOT/reads"), publishes: $(cat "$ROOT/publishes"), failed: $(wc -l <"$ROOT/client-errors")"
[[ ! -s $ROOT/client-errors ]] || fail "client errors: $(head "$ROOT/client-errors")"
echo "migrate guide: done"
