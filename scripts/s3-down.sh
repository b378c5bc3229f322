#!/usr/bin/env bash
# Stop the S3 test servers started by scripts/s3-up.sh and remove their state
# folder (${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}).
#
# Only the processes named by pid files in that folder are signalled (TERM,
# then KILL after ${S3_STOP_GRACE:-15} s), and only if they still carry the
# state folder in their command line; never anything found by name. The
# installed binaries (in ${ARTIFACTSTORE_TOOLS_DIR:-/var/cache/artifactstore-tools})
# are kept, so the next s3-up.sh is a warm start.
set -euo pipefail

# shellcheck source=scripts/s3-common.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/s3-common.sh"

if [[ ! -d $S3_STATE ]]; then
	log "nothing to stop: $S3_STATE does not exist"
	exit 0
fi
if [[ ! -e $S3_MARKER ]]; then
	log "ERROR: $S3_STATE was not made by s3-up.sh (no $(basename "$S3_MARKER")); not touching it"
	exit 1
fi

shopt -s nullglob
pidfiles=("$S3_PIDS"/*.pid)
# Gateways first, then the Ceph OSD before its monitor (all get TERM at once;
# the order only affects which log lines they manage to write).
ordered=()
for name in ceph-rgw minio versitygw ceph-osd ceph-mon; do
	[[ -e $S3_PIDS/$name.pid ]] && ordered+=("$S3_PIDS/$name.pid")
done
for f in "${pidfiles[@]}"; do
	[[ " ${ordered[*]-} " == *" $f "* ]] || ordered+=("$f")
done

if ((${#ordered[@]})); then
	stop_pidfiles "${ordered[@]}"
fi

# Anything still listening on our ports now is not ours; say so, but it is
# not an error of this script.
for p in "$VERSITYGW_PORT" "$MINIO_PORT" "$MINIO_CONSOLE_PORT" \
	"$CEPH_MON_V2_PORT" "$CEPH_MON_V1_PORT" "$CEPH_RGW_PORT"; do
	port_open "$p" && log "warning: 127.0.0.1:$p is still in use (not by a process of ours)"
done

rm -rf -- "$S3_STATE"
log "stopped; removed $S3_STATE"
