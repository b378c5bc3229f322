# shellcheck shell=bash disable=SC2034 # the settings below are used by the scripts that source this
# Shared settings and helpers for scripts/s3-up.sh, s3-down.sh and s3-smoke.sh.
# Sourced, never run on its own.
#
# Everything the test servers write (data, logs, pid files, Ceph's run dir and
# admin sockets, env.sh) lives in ONE folder, $S3_STATE, which s3-down.sh
# removes. Installed binaries live in a cache folder that survives between runs.

S3_STATE=$(realpath -m -- "${ARTIFACTSTORE_S3_STATE:-/tmp/artifactstore-s3}")
S3_TOOLS_DIR=$(realpath -m -- "${ARTIFACTSTORE_TOOLS_DIR:-/var/cache/artifactstore-tools}")
S3_TOOLS_BIN=$S3_TOOLS_DIR/bin
S3_PIDS=$S3_STATE/pids
# A marker so s3-down.sh only ever deletes a folder that s3-up.sh made.
S3_MARKER=$S3_STATE/.artifactstore-s3-state

# Fixed test credentials (same for all three servers). MinIO and RGW need a
# secret of at least 8 characters.
S3_ACCESS_KEY=artifactstoretest
S3_SECRET_KEY=artifactstoretest-secret-0123456789
S3_REGION=us-east-1

# Fixed loopback ports.
VERSITYGW_PORT=7070
MINIO_PORT=9000
MINIO_CONSOLE_PORT=9001
CEPH_MON_V2_PORT=3300
CEPH_MON_V1_PORT=6789
CEPH_RGW_PORT=7480

S3_ALL_SERVERS=(versitygw minio ceph)

# The Go toolchain is at /usr/local/go on our machines, possibly not on PATH
# for a non-login shell (CI).
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH=$PATH:/usr/local/go/bin ;;
esac
export PATH

log() { printf '[s3] %s\n' "$*" >&2; }

# now_ms: wall clock in milliseconds; since START_MS: "1.234s".
now_ms() { local t=${EPOCHREALTIME/./}; printf '%s\n' "${t:0:-3}"; }
since() {
	local d=$(($(now_ms) - $1))
	printf '%d.%03ds\n' $((d / 1000)) $((d % 1000))
}

# pid_of PIDFILE: print the pid stored in PIDFILE if that process is alive,
# not a zombie, and really one of ours (every daemon we start carries
# $S3_STATE in its command line, which guards against PID reuse).
pid_of() {
	local f=$1 pid state
	[[ -s $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ $state != Z ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$S3_STATE" || return 1
	printf '%s\n' "$pid"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# http_code URL: the HTTP status code, or 000 when nothing answers.
http_code() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null) || true
	printf '%s\n' "${code:-000}"
}

# stop_pidfiles PIDFILE...: TERM every live process named by the pid files,
# wait up to ${S3_STOP_GRACE:-15} s for all of them, KILL what is left, and
# remove the pid files. Only ever signals the exact pids we recorded.
stop_pidfiles() {
	local f pid deadline
	local -a live=()
	for f in "$@"; do
		if pid=$(pid_of "$f"); then
			log "stopping $(basename "$f" .pid) (pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
			live+=("$f")
		fi
	done
	deadline=$((SECONDS + ${S3_STOP_GRACE:-15}))
	while ((${#live[@]})) && ((SECONDS < deadline)); do
		local -a still=()
		for f in "${live[@]}"; do
			pid_of "$f" >/dev/null && still+=("$f")
		done
		live=("${still[@]+"${still[@]}"}")
		((${#live[@]})) && sleep 0.2
	done
	for f in "${live[@]+"${live[@]}"}"; do
		if pid=$(pid_of "$f"); then
			log "$(basename "$f" .pid) (pid $pid) ignored TERM, sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for f in "${live[@]+"${live[@]}"}"; do
		for _ in $(seq 50); do
			pid_of "$f" >/dev/null || break
			sleep 0.1
		done
	done
	rm -f -- "$@"
}
