#!/usr/bin/env bash
# Follows docs/OPERATOR.md step by step on this machine, against the real
# Ceph RGW that scripts/s3-up.sh starts, and ends with a verified package.
# The "VM" is a folder: every path of the guide is under $ROOT. The blocks
# the guide marks <!-- guide:NAME --> (install, bucket, config, cron) are
# taken from docs/OPERATOR.md itself, with only the host names, paths and
# keys of this machine substituted, so the guide cannot drift from what
# this script proves.
#
#   scripts/operator-guide.sh            (after `make build` and `make s3-up`)
#
# Environment: ARTIFACTSTORE_BIN (default bin/artifactstore), ROOT (default a
# new temporary folder), and the RGW endpoint and keys from
# ${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}/env.sh. The bucket step
# uses the AWS CLI as the guide does when `aws` is installed, else the same
# requests with curl --aws-sigv4.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
GUIDE=docs/OPERATOR.md
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
fail() { echo "operator guide: $*" >&2; exit 1; }
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; true; }
trap cleanup EXIT

# guide_block NAME: the fenced block after <!-- guide:NAME --> in the guide.
guide_block() {
	local b
	b=$(awk -v m="<!-- guide:$1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' "$GUIDE")
	[[ -n $b ]] || fail "$GUIDE has no <!-- guide:$1 --> block"
	printf '%s\n' "$b"
}
# here: the guide's paths and names, on this machine.
here() {
	sed -e "s#https://rgw.example.internal#$RGW#g" \
		-e "s#/usr/local/#$ROOT/usr/local/#g" \
		-e "s#/etc/#$ROOT/etc/#g" \
		-e "s#/var/lib/artifactstore#$ROOT/var/lib/artifactstore#g" \
		-e "s#--bucket artifacts#--bucket $BUCKET#g" \
		-e "s#bucket: artifacts #bucket: $BUCKET #" \
		-e "s#0.0.0.0:8080#127.0.0.1:$PORT#" \
		-e "s#'<access_key>'#'$RGW_KEY'#" -e "s#'<secret_key>'#'$RGW_SECRET'#"
}
s3req() { # METHOD PATH [BODY]: one signed request to RGW
	local sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 args=()
	if [[ -n ${3:-} ]]; then
		sha=$(printf '%s' "$3" | sha256sum | cut -d' ' -f1)
		args=(-H "Content-MD5: $(printf '%s' "$3" | openssl md5 -binary | base64)" -H "Content-Type: application/xml" --data-binary "$3")
	fi
	curl -fsS -X "$1" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_KEY:$RGW_SECRET" -H "x-amz-content-sha256: $sha" "${args[@]}" "$RGW$2"
}

step "1. Install the binary and the guide (the unit's Documentation=)"
# The guide runs in a checkout after `make build`; here the checkout is a
# copy holding the binary under test.
mkdir -p "$ROOT/src/bin" "$ROOT/src/docs" "$ROOT/usr/local/bin"
cp "$BIN" "$ROOT/src/bin/artifactstore"
cp "$GUIDE" "$ROOT/src/docs/OPERATOR.md"
guide_block install | here | grep -v '^make build' >"$ROOT/install.sh"
(cd "$ROOT/src" && PATH=$ROOT/usr/local/bin:$PATH bash -euo pipefail "$ROOT/install.sh")
AS=$ROOT/usr/local/bin/artifactstore
doc=$(sed -n 's#^Documentation=file://##p' docs/systemd/artifactstore.service)
[[ -f $ROOT$doc ]] || fail "the unit's Documentation=file://$doc was not installed by the guide"
echo "installed $AS and $ROOT$doc"

step "2. Create the bucket on RGW with the new user's keys, and the lifecycle rule"
if command -v aws >/dev/null; then
	guide_block bucket | here >"$ROOT/bucket.sh"
	bash -euo pipefail "$ROOT/bucket.sh"
else
	echo "(no aws CLI here: the same requests with curl --aws-sigv4)"
	s3req PUT "/$BUCKET"
	s3req PUT "/$BUCKET?lifecycle=" '<LifecycleConfiguration><Rule><ID>abort-incomplete-uploads</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>'
fi
s3req GET "/$BUCKET?lifecycle=" | grep -q '<DaysAfterInitiation>1</DaysAfterInitiation>' || fail "the lifecycle rule is not set on the bucket"
echo "bucket $BUCKET has the abort-incomplete-uploads rule"

step "3. Credential files and the config file: root-owned, group artifactstore, mode 0640"
install -d -m 0750 "$ROOT/etc/artifactstore"
printf '%s\n' "$RGW_KEY" >"$ROOT/etc/artifactstore/rgw_access_key"
printf '%s\n' "$RGW_SECRET" >"$ROOT/etc/artifactstore/rgw_secret_key"
chmod 0640 "$ROOT/etc/artifactstore/rgw_access_key" "$ROOT/etc/artifactstore/rgw_secret_key"

step "4. The config file, exactly as the guide gives it (an http endpoint here)"
guide_block config | here >"$ROOT/config.yaml"
install -m 0640 "$ROOT/config.yaml" "$ROOT/etc/artifactstore/config.yaml"
CFG=$ROOT/etc/artifactstore/config.yaml
[[ $(stat -c %a "$CFG") == 640 ]] || fail "config file mode is $(stat -c %a "$CFG")"
grep -q "endpoint_url: $RGW" "$CFG" || fail "the guide's endpoint was not substituted"
"$AS" config check --config "$CFG" | tee "$ROOT/config-check.txt"
if grep -q -- "$RGW_SECRET" "$ROOT/config-check.txt"; then
	fail "config check printed the secret"
fi
grep -q "secret_key_ref: file:$ROOT/etc/artifactstore/rgw_secret_key resolves" "$ROOT/config-check.txt" ||
	fail "config check did not resolve the credential files"

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

step "8. Verify from the guide's /etc/cron.d line, beside the running service"
guide_block cron | here >"$ROOT/etc/cron.d-artifactstore-verify"
line=$(grep -v '^#' "$ROOT/etc/cron.d-artifactstore-verify" | grep .)
read -r -a f <<<"$line"
[[ ${#f[@]} -ge 7 && ${f[5]} == artifactstore && ${f[6]} == /* && -x ${f[6]} ]] ||
	fail "not an /etc/cron.d line with user artifactstore and an absolute command: $line"
# cron would run fields 7.. as user artifactstore, with PATH=/usr/bin:/bin.
env PATH=/usr/bin:/bin "${f[@]:6}"
curl -fsS -H "$AUTH" "$URL/v1/packages/first/1.0.0" | grep -q '"status": "verified"'
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/health") == 401 ]] || fail "/v1/health answered without a token"
curl -fsS -H "$AUTH" "$URL/v1/health" | grep -q '"status": "ok"'

step "9. Back up the database while the service runs"
"$AS" backup --config "$CFG" --out "$ROOT/var/backups/artifactstore/registry-$(date +%F).db"

step "10. Metrics"
curl -fsS "$URL/metrics" >"$ROOT/metrics.txt"
grep '^artifactstore_storage_locations{backend="rgw",status="verified"} 1' "$ROOT/metrics.txt"
grep '^artifactstore_verification_overruns_total{backend="rgw",mode="deep"} ' "$ROOT/metrics.txt"
grep '^artifactstore_verification_last_success_timestamp_seconds{backend="rgw",mode="quick"} ' "$ROOT/metrics.txt"

step "11. Troubleshooting (OPERATOR.md section 13): the object deleted from RGW behind the service's back"
SHA=$(sha256sum "$ROOT/app.tar.gz" | cut -d' ' -f1)
s3req DELETE "/$BUCKET/artifacts/sha256/${SHA:0:2}/${SHA:2:2}/$SHA"
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

step "12. The VM is gone (OPERATOR.md, recover from the backends): a snapshot, one more package, the data directory lost, recover from RGW"
"$AS" backup --config "$CFG" --to-backend rgw
head -c 20000 /dev/urandom >"$ROOT/second.bin"
curl -fsS -H "$AUTH" -F 'manifest={"name":"second","version":"1.0.0","producer":"ops","retention_class":"release","labels":{"after":"snapshot"}}' \
	-F "file=@$ROOT/second.bin;filename=second.bin" "$URL/v1/packages" >/dev/null
kill "$pid"
wait "$pid" || true
pid=
mv "$ROOT/var/lib/artifactstore" "$ROOT/lost-vm-data"
mkdir -p "$ROOT/var/lib/artifactstore"
guide_block recover | here >"$ROOT/recover.sh"
grep -q '^artifactstore recover ' "$ROOT/recover.sh" || fail "the recover block has no recover command"
# systemd would start the service between the lines; here the script does.
grep '^artifactstore recover ' "$ROOT/recover.sh" | PATH=$ROOT/usr/local/bin:$PATH bash -euo pipefail | tee "$ROOT/recover.txt"
grep -q "1 packages from the snapshot, 1 recovered from manifest records, 0 deleted since the snapshot" "$ROOT/recover.txt" ||
	fail "recover did not bring back the snapshot's package and the one published after it"
"$AS" serve --config "$CFG" >>"$ROOT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
grep '^artifactstore \(db check\|verify\) ' "$ROOT/recover.sh" | PATH=$ROOT/usr/local/bin:$PATH bash -euo pipefail
echo "the publish token of step 7 came back with the snapshot:"
curl -fsS -H "$AUTH" -o "$ROOT/fetched-recovered.tar.gz" "$URL/v1/packages/first/1.0.0/files/dist/app.tar.gz"
cmp "$ROOT/app.tar.gz" "$ROOT/fetched-recovered.tar.gz"
curl -fsS -H "$AUTH" -o "$ROOT/second-recovered.bin" "$URL/v1/packages/second/1.0.0/files/second.bin"
cmp "$ROOT/second.bin" "$ROOT/second-recovered.bin"
curl -fsS -H "$AUTH" "$URL/v1/events?after=0&limit=1000" | grep -q '"type": *"v1.package.recovered"'
echo "both packages fetched byte-exact after the recovery"

for secret in "$RGW_SECRET" "$TOKEN"; do
	if grep -q -- "$secret" "$ROOT/serve.log"; then
		fail "the service log contains a secret"
	fi
done
step "done: package first@1.0.0 is stored on RGW and verified, and the store came back from RGW alone"
