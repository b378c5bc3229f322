#!/usr/bin/env bash
# Install (if missing) and start real S3 servers on 127.0.0.1 for the tests.
#
#   scripts/s3-up.sh [versitygw|minio|ceph ...]     (default: all three)
#   . "${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}/env.sh"
#
#   versitygw  127.0.0.1:7070   go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
#   minio      127.0.0.1:9000   go install github.com/minio/minio@latest (AGPL: outside process only)
#              (console 9001)
#   ceph       127.0.0.1:7480   Debian's radosgw 16.2 on a one-mon, one-memstore-OSD cluster
#              (mon 3300/6789, OSD 6800-6807)
#
# Go binaries are cached in ${ARTIFACTSTORE_TOOLS_DIR:-/var/cache/artifactstore-tools}/bin.
# All state (data, logs, pid files, Ceph run dir, env.sh) is in
# ${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}; scripts/s3-down.sh stops
# the servers and removes it.
#
# Idempotent: a server whose pid file names a live process that answers is left
# alone. Exits non-zero, with the tail of the server's log, if any requested
# server fails to install or start. Needs root only for apt-get (Ceph).
set -euo pipefail

# shellcheck source=scripts/s3-common.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/s3-common.sh"

VERSITYGW_MODULE=github.com/versity/versitygw/cmd/versitygw
VERSITYGW_VERSION=v1.8.0
MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=${ARTIFACTSTORE_MINIO_VERSION:-latest}
# Fallback if @latest stops building: the newest commit we verified (MinIO has
# no semver tags, so `go list -m -versions` lists nothing; this is the
# pseudo-version that @latest resolved to when these scripts were written).
MINIO_KNOWN_GOOD=v0.0.0-20260212201848-7aac2a2c5b7c

CEPH_DIR=$S3_STATE/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
CEPH_RGW_NAME=client.rgw.artifactstore
# memstore keeps every object in the OSD's RAM; this is its capacity. Tests
# upload tens of MiB repeatedly and RGW's garbage collector frees deleted data
# only after a few seconds, so leave headroom (the machine has 24 GiB).
CEPH_MEMSTORE_BYTES=${ARTIFACTSTORE_CEPH_MEMSTORE_BYTES:-4294967296}
[[ $CEPH_MEMSTORE_BYTES =~ ^[0-9]+$ ]] ||
	{ log "ERROR: ARTIFACTSTORE_CEPH_MEMSTORE_BYTES must be a number of bytes"; exit 1; }
CEPH_BINARIES=(ceph ceph-mon ceph-osd monmaptool radosgw radosgw-admin uuidgen curl)

# ---------------------------------------------------------------- helpers --

die() {
	log "ERROR: $*"
	exit 1
}

# fail NAME LOGFILE MESSAGE: report a server failure with its log tail.
fail() {
	local name=$1 logf=$2
	shift 2
	log "ERROR: $name: $*"
	if [[ -s $logf ]]; then
		# Ceph ends a crash with a long dump of settings, so show the
		# lines that name an error as well as the tail.
		log "---- lines of $logf that look like errors (first 20) ----"
		grep -iE 'error|fail|abort|denied|unable|cannot|refused|panic|fatal' -- "$logf" |
			head -n 20 >&2 || true
		log "---- last 30 lines of $logf ----"
		tail -n 30 -- "$logf" >&2 || true
		log "---- end of $logf ----"
	fi
	return 1
}

# start_daemon NAME LOGFILE CMD...: start CMD in a session of its own (setsid),
# so it outlives this script and any job control around it, with stdin from
# /dev/null and output appended to LOGFILE. Its pid goes to $S3_PIDS/NAME.pid:
# the small bash wrapper writes its own pid and then execs CMD, so the pid
# recorded is exactly the daemon's.
start_daemon() {
	local name=$1 logf=$2 pidf=$S3_PIDS/$1.pid
	shift 2
	rm -f -- "$pidf"
	# shellcheck disable=SC2016 # $$ and $@ are for the inner bash
	setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
		</dev/null >>"$logf" 2>&1 &
	for _ in $(seq 50); do
		[[ -s $pidf ]] && return 0
		sleep 0.1
	done
	fail "$name" "$logf" "no pid file after starting: $*"
}

http_answers() { [[ $(http_code "$1") != 000 ]]; } # any HTTP status at all
http_is() { [[ $(http_code "$2") == "$1" ]]; }      # CODE URL

# wait_for NAME PIDFILE LOGFILE TIMEOUT CHECK...: poll CHECK until it
# succeeds; fail early if the daemon died, or after TIMEOUT seconds.
wait_for() {
	local name=$1 pidf=$2 logf=$3 timeout=$4
	shift 4
	local deadline=$((SECONDS + timeout))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		pid_of "$pidf" >/dev/null || {
			fail "$name" "$logf" "process exited before it was ready (waiting for: $*)"
			return 1
		}
		((SECONDS < deadline)) || {
			fail "$name" "$logf" "not ready after ${timeout}s (waiting for: $*)"
			return 1
		}
		sleep 0.1
	done
}

# need_port_free NAME LOGFILE PORT...: fail clearly when someone else (not a
# server of ours: callers stop their own first) already listens on a port.
need_port_free() {
	local name=$1 logf=$2 p
	shift 2
	for p in "$@"; do
		if port_open "$p"; then
			fail "$name" "$logf" "127.0.0.1:$p is already in use by a process not started from $S3_STATE"
			return 1
		fi
	done
}

go_install() { # MODULE@VERSION: build a static binary into the tools bin
	command -v go >/dev/null || {
		log "go not found (looked on PATH and in /usr/local/go/bin)"
		return 1
	}
	mkdir -p "$S3_TOOLS_BIN"
	# Run outside any module so the project's go.mod plays no part.
	# GOTOOLCHAIN=local: never download a Go toolchain. CGO off: no C
	# compiler needed and a self-contained binary.
	(cd / && GOBIN=$S3_TOOLS_BIN GOTOOLCHAIN=local CGO_ENABLED=0 go install "$1")
}

# installed_module_version BINARY: the module version a Go binary was built from.
installed_module_version() {
	go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3; exit}'
}

# ------------------------------------------------------------- install --

install_versitygw() {
	local bin=$S3_TOOLS_BIN/versitygw
	if [[ -x $bin ]] && [[ $(installed_module_version "$bin") == "$VERSITYGW_VERSION" ]]; then
		return 0
	fi
	log "installing versitygw $VERSITYGW_VERSION into $S3_TOOLS_BIN (takes a few minutes when cold)"
	go_install "$VERSITYGW_MODULE@$VERSITYGW_VERSION"
}

install_minio() {
	[[ -x $S3_TOOLS_BIN/minio ]] && return 0
	log "installing minio@$MINIO_VERSION into $S3_TOOLS_BIN (takes a few minutes when cold)"
	go_install "$MINIO_MODULE@$MINIO_VERSION" && return 0
	[[ $MINIO_VERSION != "$MINIO_KNOWN_GOOD" ]] || return 1
	log "minio@$MINIO_VERSION failed to install; trying the known-good $MINIO_KNOWN_GOOD"
	go_install "$MINIO_MODULE@$MINIO_KNOWN_GOOD"
}

install_ceph() {
	local b missing=()
	for b in "${CEPH_BINARIES[@]}"; do
		command -v "$b" >/dev/null || missing+=("$b")
	done
	((${#missing[@]} == 0)) && return 0
	((EUID == 0)) || {
		log "missing ${missing[*]}; installing them needs root (apt-get)"
		return 1
	}
	log "installing Ceph (radosgw, ceph-mon, ceph-osd) with apt-get; missing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 \
		radosgw ceph-mon ceph-osd curl uuid-runtime
}

# ------------------------------------------------------------ versitygw --

versitygw_running() {
	pid_of "$S3_PIDS/versitygw.pid" >/dev/null &&
		http_answers "http://127.0.0.1:$VERSITYGW_PORT/"
}

start_versitygw() {
	local dir=$S3_STATE/versitygw logf=$S3_STATE/logs/versitygw.log
	versitygw_running && {
		log "versitygw already running on 127.0.0.1:$VERSITYGW_PORT"
		return 0
	}
	stop_pidfiles "$S3_PIDS/versitygw.pid" # a leftover that does not answer
	need_port_free versitygw "$logf" "$VERSITYGW_PORT" || return 1
	# The posix backend keeps object metadata in user extended attributes;
	# ext4 and tmpfs (and so /tmp here) support them.
	mkdir -p "$dir/data"
	start_daemon versitygw "$logf" env \
		ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$S3_SECRET_KEY" \
		"$S3_TOOLS_BIN/versitygw" --port "127.0.0.1:$VERSITYGW_PORT" posix "$dir/data" ||
		return 1
	# Any HTTP answer (an anonymous request gets 403) means it is serving.
	wait_for versitygw "$S3_PIDS/versitygw.pid" "$logf" 30 \
		http_answers "http://127.0.0.1:$VERSITYGW_PORT/"
}

# ---------------------------------------------------------------- minio --

minio_running() {
	pid_of "$S3_PIDS/minio.pid" >/dev/null &&
		http_is 200 "http://127.0.0.1:$MINIO_PORT/minio/health/ready"
}

start_minio() {
	local dir=$S3_STATE/minio logf=$S3_STATE/logs/minio.log
	minio_running && {
		log "minio already running on 127.0.0.1:$MINIO_PORT"
		return 0
	}
	stop_pidfiles "$S3_PIDS/minio.pid"
	need_port_free minio "$logf" "$MINIO_PORT" "$MINIO_CONSOLE_PORT" || return 1
	mkdir -p "$dir/data"
	start_daemon minio "$logf" env \
		MINIO_ROOT_USER="$S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$S3_SECRET_KEY" \
		MINIO_BROWSER=off MINIO_UPDATE=off \
		"$S3_TOOLS_BIN/minio" server --quiet \
		--address "127.0.0.1:$MINIO_PORT" \
		--console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
		"$dir/data" || return 1
	wait_for minio "$S3_PIDS/minio.pid" "$logf" 60 \
		http_is 200 "http://127.0.0.1:$MINIO_PORT/minio/health/ready"
}

# ----------------------------------------------------------------- ceph --

ceph_pidfiles=("$S3_PIDS/ceph-rgw.pid" "$S3_PIDS/ceph-osd.pid" "$S3_PIDS/ceph-mon.pid")

ceph_running() {
	local f
	for f in "${ceph_pidfiles[@]}"; do
		pid_of "$f" >/dev/null || return 1
	done
	http_answers "http://127.0.0.1:$CEPH_RGW_PORT/"
}

ceph_cli() { timeout 30 ceph -c "$CEPH_CONF" --connect-timeout 10 "$@"; }

# ceph_osd_up_in ID: `ceph osd dump` shows e.g. "osd.0 up   in  weight 1 ...".
ceph_osd_up_in() { ceph_cli osd dump | grep -Eq "^osd\.$1 up +in "; }

write_ceph_conf() {
	local fsid=$1
	# $cluster, $name and $id are Ceph's own config metavariables.
	cat >"$CEPH_CONF" <<EOF
# Written by scripts/s3-up.sh: a throw-away, single-node, loopback-only Ceph
# cluster (one mon, one memstore OSD, no mgr) that exists only for tests.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$CEPH_MON_V2_PORT,v1:127.0.0.1:$CEPH_MON_V1_PORT]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false

# Loopback only, so no cephx: no keyrings to create or distribute.
auth cluster required = none
auth service required = none
auth client required = none

# One OSD: every pool has one replica, few PGs, and CRUSH must place
# replicas across OSDs (type 0) rather than hosts. Without a mgr the PG
# autoscaler cannot run, so switch it off.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon allow pool delete = true

# Keep every file the daemons write under the state folder.
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$cluster-\$name.asok
log file = $CEPH_DIR/log/\$cluster-\$name.log
# The CLI and radosgw-admin look for a keyring; there is none (no cephx).
keyring = /dev/null

[mon]
mon data = $CEPH_DIR/mon/\$cluster-\$id
# Every pool RGW creates at start is a paxos round; with the default 1 s
# propose interval start-up takes 8-10 s instead of ~2 s.
paxos propose interval = 0.05
# Do not let a nearly full disk stop the monitor of a throw-away cluster.
mon data avail crit = 1
mon data avail warn = 2

[osd]
osd data = $CEPH_DIR/osd/\$cluster-\$id
# RAM-backed object store: no block device or filesystem needed.
osd objectstore = memstore
memstore device bytes = $CEPH_MEMSTORE_BYTES

[client]
# Without cephx, radosgw still insists on "secure" messenger mode for its
# monitor connection (which needs cephx) and hangs forever at start.
ms mon client mode = crc

[$CEPH_RGW_NAME]
rgw data = $CEPH_DIR/rgw
# tcp_nodelay: without it every small response waits ~40 ms (Nagle).
rgw frontends = beast endpoint=127.0.0.1:$CEPH_RGW_PORT tcp_nodelay=1
# Free deleted objects within seconds, not hours: the OSD keeps them in RAM
# and would grow ~120 MB per test run.
rgw gc obj min wait = 5
rgw gc processor period = 5
rgw gc processor max time = 5
EOF
}

start_ceph() {
	local logf=$S3_STATE/logs/ceph.log # bootstrap log (daemons' own logs in ceph/log)
	local monlog=$CEPH_DIR/log/ceph-mon.a.log osdlog rgwlog
	if ceph_running; then
		log "ceph (radosgw) already running on 127.0.0.1:$CEPH_RGW_PORT"
		return 0
	fi
	# The cluster lives in RAM, so a half-running one cannot be repaired:
	# stop whatever is left of it and bootstrap from scratch.
	stop_pidfiles "${ceph_pidfiles[@]}"
	rm -rf -- "$CEPH_DIR"
	need_port_free ceph "$logf" "$CEPH_MON_V2_PORT" "$CEPH_MON_V1_PORT" "$CEPH_RGW_PORT" || return 1
	mkdir -p "$CEPH_DIR"/{run,log,mon,osd,rgw}
	: >"$logf"

	local fsid
	fsid=$(uuidgen)
	write_ceph_conf "$fsid"

	# Monitor.
	monmaptool --create --fsid "$fsid" \
		--addv a "[v2:127.0.0.1:$CEPH_MON_V2_PORT,v1:127.0.0.1:$CEPH_MON_V1_PORT]" \
		"$CEPH_DIR/monmap" >>"$logf" 2>&1 || {
		fail ceph "$logf" "monmaptool --create failed"
		return 1
	}
	ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" >>"$logf" 2>&1 || {
		fail ceph "$logf" "ceph-mon --mkfs failed"
		return 1
	}
	start_daemon ceph-mon "$logf" ceph-mon -f -c "$CEPH_CONF" -i a || return 1
	wait_for ceph-mon "$S3_PIDS/ceph-mon.pid" "$monlog" 60 ceph_cli mon stat || return 1

	# One OSD on memstore.
	local uuid id
	uuid=$(uuidgen)
	id=$(ceph_cli osd new "$uuid" 2>>"$logf") || {
		fail ceph "$logf" "ceph osd new failed"
		return 1
	}
	osdlog=$CEPH_DIR/log/ceph-osd.$id.log
	mkdir -p "$CEPH_DIR/osd/ceph-$id" # --mkfs does not create it
	ceph-osd -c "$CEPH_CONF" -i "$id" --mkfs --osd-uuid "$uuid" >>"$logf" 2>&1 || {
		fail ceph "$osdlog" "ceph-osd --mkfs failed (see also $logf)"
		return 1
	}
	start_daemon ceph-osd "$logf" ceph-osd -f -c "$CEPH_CONF" -i "$id" || return 1
	wait_for ceph-osd "$S3_PIDS/ceph-osd.pid" "$osdlog" 60 ceph_osd_up_in "$id" || return 1

	# RADOS Gateway. At first start it creates its pools, which takes a
	# few seconds; it answers HTTP only after that.
	rgwlog=$CEPH_DIR/log/ceph-$CEPH_RGW_NAME.log
	start_daemon ceph-rgw "$logf" radosgw -f -c "$CEPH_CONF" -n "$CEPH_RGW_NAME" || return 1
	wait_for ceph-rgw "$S3_PIDS/ceph-rgw.pid" "$rgwlog" 120 \
		http_answers "http://127.0.0.1:$CEPH_RGW_PORT/" || return 1

	# The S3 user the tests sign with.
	# (as client.admin: reusing the gateway's name would clash with its
	# admin socket)
	timeout 60 radosgw-admin -c "$CEPH_CONF" user create \
		--uid=artifactstoretest --display-name="artifactstore tests" \
		--access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" \
		--max-buckets=100000 >>"$logf" 2>&1 || {
		fail ceph "$logf" "radosgw-admin user create failed"
		return 1
	}
}

# -------------------------------------------------------------- env.sh --

# Write $S3_STATE/env.sh for every server of ours that is running now (those
# just started and any left running by an earlier call).
write_env() {
	local name upper port running=() tmp=$S3_STATE/env.sh.tmp
	{
		echo "# Written by scripts/s3-up.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Source it:"
		echo "#   . $S3_STATE/env.sh"
		for name in "${S3_ALL_SERVERS[@]}"; do
			"${name}_running" || continue
			running+=("$name")
			upper=${name^^}
			case $name in
			versitygw) port=$VERSITYGW_PORT ;;
			minio) port=$MINIO_PORT ;;
			ceph) port=$CEPH_RGW_PORT ;;
			esac
			echo "export ARTIFACTSTORE_TEST_S3_${upper}_ENDPOINT=http://127.0.0.1:$port"
			echo "export ARTIFACTSTORE_TEST_S3_${upper}_ACCESS_KEY=$S3_ACCESS_KEY"
			echo "export ARTIFACTSTORE_TEST_S3_${upper}_SECRET_KEY=$S3_SECRET_KEY"
		done
		local IFS=,
		echo "export ARTIFACTSTORE_TEST_S3_SERVERS=${running[*]}"
	} >"$tmp"
	mv -f -- "$tmp" "$S3_STATE/env.sh"
}

# ---------------------------------------------------------------- main --

# installed_msg NAME START_MS: say how long an install took, if it did any
# work (the install functions are silent when everything is in place).
installed_msg() {
	if grep -q . "$S3_STATE/logs/install-$1.log"; then
		log "$1 installed in $(since "$2")"
	fi
}

main() {
	local -a wanted=()
	local s t
	if (($# == 0)); then
		wanted=("${S3_ALL_SERVERS[@]}")
	else
		for s in "$@"; do
			case $s in
			versitygw | minio | ceph) [[ " ${wanted[*]-} " == *" $s "* ]] || wanted+=("$s") ;;
			-h | --help)
				sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
				return 0
				;;
			*) die "unknown server '$s' (expected: ${S3_ALL_SERVERS[*]})" ;;
			esac
		done
	fi

	mkdir -p "$S3_STATE" "$S3_PIDS" "$S3_STATE/logs"
	touch "$S3_MARKER"
	command -v curl >/dev/null || [[ " ${wanted[*]} " == *" ceph "* ]] ||
		die "curl is needed (apt-get install curl)"

	# Install what is missing (skipped for a server already running), one
	# log per server. apt-get, bound by network and dpkg, runs in the
	# background while the Go builds run one after the other: on 2 cores two
	# Go builds at once took longer than in sequence.
	local failed=() ok=() todo=() s_start ceph_pid=
	for s in "${wanted[@]}"; do
		"${s}_running" 2>/dev/null || todo+=("$s")
	done
	if [[ " ${todo[*]-} " == *" ceph "* ]]; then
		s_start=$(now_ms)
		install_ceph >"$S3_STATE/logs/install-ceph.log" 2>&1 &
		ceph_pid=$!
	fi
	for s in "${todo[@]+"${todo[@]}"}"; do
		[[ $s == ceph ]] && continue
		t=$(now_ms)
		if "install_$s" >"$S3_STATE/logs/install-$s.log" 2>&1; then
			installed_msg "$s" "$t"
		else
			fail "$s" "$S3_STATE/logs/install-$s.log" "install failed" || true
			failed+=("$s")
		fi
	done
	if [[ -n $ceph_pid ]]; then
		if wait "$ceph_pid"; then
			installed_msg ceph "$s_start"
		else
			fail ceph "$S3_STATE/logs/install-ceph.log" "install failed" || true
			failed+=(ceph)
		fi
	fi
	# curl (for the readiness checks) may have come with the Ceph packages.
	command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

	# Start, one after the other (Ceph start-up is CPU-bound).
	for s in "${wanted[@]}"; do
		[[ " ${failed[*]-} " == *" $s "* ]] && continue
		t=$(now_ms)
		if "start_$s"; then
			log "$s ready in $(since "$t")"
			ok+=("$s")
		else
			failed+=("$s")
		fi
	done

	write_env
	log "wrote $S3_STATE/env.sh: $(grep -o 'SERVERS=.*' "$S3_STATE/env.sh")"
	if ((${#failed[@]})); then
		die "failed to install or start: ${failed[*]} (logs in $S3_STATE/logs)"
	fi
	log "up: ${ok[*]}; credentials: . $S3_STATE/env.sh"
}

main "$@"
