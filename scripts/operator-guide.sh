#!/usr/bin/env bash
# Follows docs/OPERATOR.md step by step on this machine, against the real
# Ceph RGW that scripts/s3-up.sh starts, and ends with a verified package.
# The "VM" is a folder: every path of the guide is under $ROOT.
#
#   scripts/operator-guide.sh            (after `make build` and `make s3-up`)
#
# Environment: ARTIFACTSTORE_BIN (default bin/artifactstore), ROOT (default a
# new temporary folder), and the RGW endpoint and keys from
# ${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}/env.sh.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
BIN=$(realpath "${ARTIFACTSTORE_BIN:-bin/artifactstore}")
STATE=${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}
if [[ -z ${ARTIFACTSTORE_TEST_S3_CEPH_ENDPOINT:-} ]]; then
	# shellcheck disable=SC1091
	. "$STATE/env.sh"
fi
RGW=$ARTIFACTSTORE_TEST_S3_CEPH_ENDPOINT
RGW_KEY=$ARTIFACTSTORE_TEST_S3_CEPH_ACCESS_KEY
RGW_SECRET=$ARTIFACTSTORE_TEST_S3_CEPH_SECRET_KEY
ROOT=${ROOT:-$(mktemp -d)}
PORT=${PORT:-18080}
URL=http://127.0.0.1:$PORT
BUCKET=artifacts-guide-$(date +%s)-$RANDOM
step() { printf '\n== %s\n' "$*"; }
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; true; }
trap cleanup EXIT

step "1. Install the binary"
install -D -m 0755 "$BIN" "$ROOT/usr/local/bin/artifactstore"
AS=$ROOT/usr/local/bin/artifactstore
"$AS" version

step "2. Create the bucket on RGW (any S3 tool; here curl)"
empty=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
curl -fsS -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_KEY:$RGW_SECRET" \
	-H "x-amz-content-sha256: $empty" "$RGW/$BUCKET"

step "3. Credential files, readable by the service user only"
install -d -m 0750 "$ROOT/etc/artifactstore"
printf '%s\n' "$RGW_KEY" >"$ROOT/etc/artifactstore/rgw_access_key"
printf '%s\n' "$RGW_SECRET" >"$ROOT/etc/artifactstore/rgw_secret_key"
chmod 0600 "$ROOT/etc/artifactstore/rgw_access_key" "$ROOT/etc/artifactstore/rgw_secret_key"

step "4. The config file"
cat >"$ROOT/etc/artifactstore/config.yaml" <<YAML
data_dir: $ROOT/var/lib/artifactstore
server:
  listen: 127.0.0.1:$PORT
log:
  format: json
backends:
  rgw:
    type: s3
    endpoint_url: $RGW
    bucket: $BUCKET
    key_prefix: artifacts
    access_key_ref: file:$ROOT/etc/artifactstore/rgw_access_key
    secret_key_ref: file:$ROOT/etc/artifactstore/rgw_secret_key
    storage_class: STANDARD
    multipart_threshold_bytes: 67108864
    multipart_chunk_bytes: 16777216
routing:
  default: rgw
YAML
CFG=$ROOT/etc/artifactstore/config.yaml
"$AS" config check --config "$CFG" | tee "$ROOT/config-check.txt"
if grep -q -- "$RGW_SECRET" "$ROOT/config-check.txt"; then
	echo "config check printed the secret" >&2
	exit 1
fi

step "5. Self-test the backend"
"$AS" storage check --config "$CFG" --backend rgw

step "6. Start the service (systemd runs: artifactstore serve --config $CFG)"
"$AS" serve --config "$CFG" >"$ROOT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "$URL/readyz"

step "7. A publish token for the CI producer, then publish and fetch a first package"
TOKEN=$("$AS" token create --config "$CFG" --name ci-ops --scope publish --producer ops --expires 720h)
AUTH="Authorization: Bearer $TOKEN"
head -c 3000000 /dev/urandom >"$ROOT/app.tar.gz"
curl -fsS -H "$AUTH" -F 'manifest={"name":"first","version":"1.0.0","producer":"ops","retention_class":"release"}' \
	-F "file=@$ROOT/app.tar.gz;filename=dist/app.tar.gz" "$URL/v1/packages" >/dev/null
curl -fsS -H "$AUTH" -o "$ROOT/fetched.tar.gz" "$URL/v1/packages/first/1.0.0/files/dist/app.tar.gz"
cmp "$ROOT/app.tar.gz" "$ROOT/fetched.tar.gz"
echo "fetched byte-exact"

step "8. Verify from cron, beside the running service"
"$AS" verify --config "$CFG"
curl -fsS -H "$AUTH" "$URL/v1/packages/first/1.0.0" | grep -q '"status": "verified"'
curl -fsS -H "$AUTH" "$URL/v1/health" | grep -q '"status": "ok"'

step "9. Back up the database while the service runs"
"$AS" backup --config "$CFG" --out "$ROOT/var/backups/artifactstore/registry-$(date +%F).db"

step "10. Metrics"
curl -fsS "$URL/metrics" | grep '^artifactstore_storage_locations{backend="rgw",status="verified"} 1'

step "11. Troubleshooting (OPERATOR.md section 13): the object deleted from RGW behind the service's back"
SHA=$(sha256sum "$ROOT/app.tar.gz" | cut -d' ' -f1)
curl -fsS -X DELETE --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_KEY:$RGW_SECRET" \
	-H "x-amz-content-sha256: $empty" "$RGW/$BUCKET/artifacts/sha256/${SHA:0:2}/${SHA:2:2}/$SHA"
code=0
"$AS" verify --config "$CFG" >"$ROOT/verify-failed.txt" || code=$?
cat "$ROOT/verify-failed.txt"
[[ $code == 1 ]] || { echo "verify exited $code after the delete, want 1" >&2; exit 1; }
grep -q "FAILED missing sha256:$SHA on rgw" "$ROOT/verify-failed.txt"
grep -q "what to do: .*republish first@1.0.0" "$ROOT/verify-failed.txt"
curl -fsS -H "$AUTH" "$URL/v1/health" | grep -q '"status": "degraded"'
got=$(curl -sS -o /dev/null -w '%{http_code}' -H "$AUTH" "$URL/v1/packages/first/1.0.0/files/dist/app.tar.gz")
[[ $got == 503 ]] || { echo "GET of the deleted object answered $got, want 503" >&2; exit 1; }
echo "republish with the same command as step 7"
curl -fsS -H "$AUTH" -F 'manifest={"name":"first","version":"1.0.0","producer":"ops","retention_class":"release"}' \
	-F "file=@$ROOT/app.tar.gz;filename=dist/app.tar.gz" "$URL/v1/packages" >/dev/null
"$AS" verify --config "$CFG"
curl -fsS -H "$AUTH" "$URL/v1/events?after=0&limit=1000" | grep -q '"type": *"v1.storage.location_repaired"'
curl -fsS -H "$AUTH" "$URL/v1/health" | grep -q '"status": "ok"'
curl -fsS -H "$AUTH" -o "$ROOT/fetched-again.tar.gz" "$URL/v1/packages/first/1.0.0/files/dist/app.tar.gz"
cmp "$ROOT/app.tar.gz" "$ROOT/fetched-again.tar.gz"
echo "repaired and verified"

for secret in "$RGW_SECRET" "$TOKEN"; do
	if grep -q -- "$secret" "$ROOT/serve.log"; then
		echo "the service log contains a secret" >&2
		exit 1
	fi
done
step "done: package first@1.0.0 is stored on RGW and verified"
