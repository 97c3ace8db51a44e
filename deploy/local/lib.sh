# Shared helpers for the deploy/local service scripts. Sourced, never run.
# Every script keeps its state under $STATE (= $REPO/.local) and binds 127.0.0.1 only.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$REPO/.local"
HERE="$REPO/deploy/local"
mkdir -p "$STATE"

# GOVX_LOCAL_PORT_SHIFT moves every port by that much, so a second checkout can run its
# own services beside the first (both default to the ports documented in README.md).
SHIFT="${GOVX_LOCAL_PORT_SHIFT:-0}"
KAFKA_PORT=$((19092 + SHIFT))
KAFKA_CONTROLLER_PORT=$((19093 + SHIFT))
CLICKHOUSE_PORT=$((19000 + SHIFT))
CLICKHOUSE_HTTP_PORT=$((18123 + SHIFT))
POSTGRES_PORT=$((15432 + SHIFT))
MARIADB_PORT=$((13306 + SHIFT))

# Each line of output names the service, so a failure in up.sh's interleaved output
# still says which service broke.
log() { printf '[%s] %s\n' "$SERVICE" "$*" >&2; }
die() {
	printf '[%s] FAILED: %s\n' "$SERVICE" "$*" >&2
	exit 1
}

# need_debs PKG... installs the Debian packages that are not installed yet, in one
# apt-get call, and runs apt-get update only when something is missing: a warm machine
# pays nothing, a fresh CI machine pays one update.
need_debs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "Debian packages ${missing[*]} are missing and installing them needs root: run 'apt-get install -y ${missing[*]}' as root"
	log "installing Debian packages: ${missing[*]}"
	# Parallel scripts (up.sh starts several at once) must not fight over the dpkg lock.
	(
		flock 9
		apt-get update -qq >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	) 9>"$STATE/.apt.lock" || die "apt-get install ${missing[*]} failed; see the apt output above"
}

# closefds closes every descriptor above stderr. A server inherits whatever its starter
# had open; one holding, say, the pipe of `make test | tee` keeps that pipeline from
# ending for as long as the server lives.
closefds() {
	local fd
	for fd in $(ls /proc/$BASHPID/fd); do
		[ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
	done
}

# spawn LOG CMD... starts a long-running server detached from this script: own session
# (no signals from the terminal or make), stdin from /dev/null, output to LOG, no
# inherited descriptors. SPAWNED is its pid.
spawn() {
	local out="$1"
	shift
	(
		closefds
		exec setsid "$@"
	) </dev/null >"$out" 2>&1 &
	SPAWNED=$!
}

# port_open PORT reports whether something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE reports whether the pid recorded in FILE is a live process.
pid_alive() {
	local pid
	[ -s "$1" ] || return 1
	pid="$(cat "$1")"
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION CMD... polls CMD every quarter second until it
# succeeds; it gives up early when the process in $PIDFILE has died, since waiting
# longer for a dead server only hides the error in its log.
wait_until() {
	local limit="$1" what="$2" deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		if [ -n "${PIDFILE:-}" ] && ! pid_alive "$PIDFILE"; then
			return 2
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			return 1
		fi
		sleep 0.25
	done
}

# stop_pid FILE NAME sends SIGTERM to the process in FILE, waits up to 30 s for it to
# exit, then SIGKILLs it. A missing or stale pid file is success: down is idempotent.
stop_pid() {
	local file="$1" pid i
	if ! pid_alive "$file"; then
		rm -f "$file"
		log "not running"
		return 0
	fi
	pid="$(cat "$file")"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 120; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.25
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid did not stop within 30s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$file"
	log "stopped (pid $pid)"
}

# adopt PATTERN records in $PIDFILE a live server whose command line contains PATTERN
# (its config file path, unique to this checkout) when the pid file was lost, so that
# up and down manage it instead of failing on a busy port or leaving it behind.
adopt() {
	pid_alive "$PIDFILE" && return 0
	local pid
	pid="$(pgrep -o -f -- "$1" || true)"
	[ -n "$pid" ] || return 1
	echo "$pid" >"$PIDFILE"
	log "found our server running without a pid file (pid $pid); adopting it"
}

# check_port_free PORT fails up with a clear message when PORT is in use
# but not by our own process, instead of starting a second server that cannot bind.
check_port_free() {
	local port="$1"
	if port_open "$port"; then
		die "127.0.0.1:$port is already in use by another process (not ours: no live pid in ${PIDFILE#"$REPO"/}); stop it or free the port, then run up again"
	fi
}

# show_log FILE prints the tail of a server log after a failed start.
show_log() {
	[ -f "$1" ] || return 0
	printf '[%s] last lines of %s:\n' "$SERVICE" "${1#"$REPO"/}" >&2
	tail -n 30 "$1" | sed "s/^/[$SERVICE]   /" >&2
}

# lock_service DIR serializes up/down of one service: several checkouts' tests and
# outage tests call these scripts at once, and an `up` that sees a broker still
# starting must wait for it, not kill it. The lock fd is closed in servers (closefds).
lock_service() {
	mkdir -p "$1"
	exec 8>"$1/.lock"
	if ! flock -n 8; then
		log "waiting for another $SERVICE up/down to finish"
		flock -w 600 8 || die "another $SERVICE up/down has held $1/.lock for 10 minutes"
	fi
}

# usage_for prints the common usage line and exits.
usage_for() {
	echo "usage: $0 up|down|status" >&2
	exit 2
}

# serve_main is the up|down|status command line every service script shares. The script
# defines up() and ready() (does the running service answer?); ADOPT names the process
# command line to take over when its pid file is lost. A script with its own down()
# (PostgreSQL stops through pg_ctl) sets ADOPT empty.
serve_main() {
	case "${1:-}" in
	up | down) lock_service "$DIR" ;;
	esac
	case "${1:-}" in
	up) up ;;
	down)
		if [ -n "${ADOPT:-}" ]; then
			adopt "$ADOPT" || true
			stop_pid "$PIDFILE"
		else
			down
		fi
		;;
	status)
		if ready; then
			log "running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE" 2>/dev/null))"
		else
			log "not running"
			return 1
		fi
		;;
	*) usage_for ;;
	esac
}

# already_up takes over a server of ours found running without its pid file (ADOPT) and
# reports whether the service is up; a live process whose port is closed is stopped, so
# that up() starts it afresh.
already_up() {
	adopt "$ADOPT" || true
	if pid_alive "$PIDFILE" && port_open "$PORT"; then
		log "already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
		return 0
	fi
	if pid_alive "$PIDFILE"; then
		log "pid $(cat "$PIDFILE") is alive but the port is closed; restarting it"
		stop_pid "$PIDFILE"
	fi
	rm -f "$PIDFILE"
	return 1
}
