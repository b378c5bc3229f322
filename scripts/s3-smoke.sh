#!/usr/bin/env bash
# Prove each S3 test server works: create a bucket, put an object, get it back
# (byte-compare), list it, delete object and bucket. Uses only curl's own
# SigV4 signing (curl >= 7.75).
#
#   scripts/s3-smoke.sh [versitygw|minio|ceph ...]
#
# Servers, endpoints and keys come from the environment if
# ARTIFACTSTORE_TEST_S3_SERVERS is set, else from $STATE/env.sh written by
# scripts/s3-up.sh. Default: every server listed there.
set -euo pipefail

# shellcheck source=scripts/s3-common.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/s3-common.sh"

if [[ -z ${ARTIFACTSTORE_TEST_S3_SERVERS:-} ]]; then
	[[ -r $S3_STATE/env.sh ]] || {
		log "ERROR: no $S3_STATE/env.sh; run scripts/s3-up.sh first"
		exit 1
	}
	# shellcheck disable=SC1091
	. "$S3_STATE/env.sh"
fi

if (($#)); then
	servers=("$@")
else
	IFS=, read -r -a servers <<<"${ARTIFACTSTORE_TEST_S3_SERVERS:-}"
fi
((${#servers[@]})) || {
	log "ERROR: no servers to check"
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
: >"$tmp/empty"
head -c 300000 /dev/urandom >"$tmp/object" # bigger than one TCP window
sha() { sha256sum "$1" | awk '{print $1}'; }

# s3 METHOD URL [curl args...]: one signed request; the body (if any) is
# given with -T FILE by the caller, and its SHA-256 in $body_sha. Prints
# the HTTP status; the response body goes to $tmp/resp.
# RGW rejects curl's SigV4 unless x-amz-content-sha256 is sent explicitly;
# the real hash works for all three servers.
s3() {
	local method=$1 url=$2
	shift 2
	curl -sS -o "$tmp/resp" -w '%{http_code}' --max-time 30 -X "$method" \
		--aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$key:$secret" \
		-H "x-amz-content-sha256: $body_sha" "$@" "$url"
}

# expect WHAT WANT GOT: fail the current server with the response body.
expect() {
	if [[ $3 != "$2" ]]; then
		log "  $1: HTTP $3, wanted $2: $(head -c 500 "$tmp/resp" 2>/dev/null)"
		return 1
	fi
}

check() { # NAME
	local name=$1 upper=${1^^} ep key secret bucket code t0
	local empty_sha object_sha
	ep_var=ARTIFACTSTORE_TEST_S3_${upper}_ENDPOINT
	key_var=ARTIFACTSTORE_TEST_S3_${upper}_ACCESS_KEY
	secret_var=ARTIFACTSTORE_TEST_S3_${upper}_SECRET_KEY
	ep=${!ep_var:-}
	key=${!key_var:-}
	secret=${!secret_var:-}
	[[ -n $ep && -n $key && -n $secret ]] || {
		log "  $name: no endpoint/keys in the environment"
		return 1
	}
	bucket=smoke-$name-$(date +%s)-$RANDOM
	empty_sha=$(sha "$tmp/empty")
	object_sha=$(sha "$tmp/object")
	t0=$(date +%s%N)

	body_sha=$empty_sha
	code=$(s3 PUT "$ep/$bucket" -T "$tmp/empty") && expect "create bucket" 200 "$code" || return 1

	body_sha=$object_sha
	code=$(s3 PUT "$ep/$bucket/dir/hello.bin" -T "$tmp/object") && expect "put object" 200 "$code" || return 1

	body_sha=$empty_sha
	code=$(s3 GET "$ep/$bucket/dir/hello.bin") && expect "get object" 200 "$code" || return 1
	cmp -s "$tmp/resp" "$tmp/object" || {
		log "  get object: content differs from what was put"
		return 1
	}
	code=$(s3 GET "$ep/$bucket?list-type=2&prefix=dir%2F") && expect "list objects" 200 "$code" || return 1
	grep -q '<Key>dir/hello.bin</Key>' "$tmp/resp" || {
		log "  list objects: key missing: $(head -c 500 "$tmp/resp")"
		return 1
	}

	# Wrong secret must be refused.
	code=$(secret=wrong-secret-0000 s3 GET "$ep/$bucket/dir/hello.bin") && expect "wrong secret" 403 "$code" || return 1

	code=$(s3 DELETE "$ep/$bucket/dir/hello.bin") && expect "delete object" 204 "$code" || return 1
	code=$(s3 DELETE "$ep/$bucket") && expect "delete bucket" 204 "$code" || return 1
	log "  $name ok ($ep, $((($(date +%s%N) - t0) / 1000000)) ms)"
}

failed=()
for s in "${servers[@]}"; do
	log "smoke: $s"
	check "$s" || failed+=("$s")
done
if ((${#failed[@]})); then
	log "smoke FAILED: ${failed[*]}"
	exit 1
fi
log "smoke passed: ${servers[*]}"
