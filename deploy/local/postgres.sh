#!/usr/bin/env bash
# postgres.sh up|down|status — Debian's PostgreSQL as the `postgres` OS user (the server
# refuses to run as root) on 127.0.0.1:15432, TCP only, ssl off, superuser govx/govx and a
# database govx. Cluster under .local/postgres. Installs postgresql if missing.
set -euo pipefail
SERVICE=postgres
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=$POSTGRES_PORT
DIR="$STATE/postgres"
PIDFILE="$DIR/pid"
LOG="$DIR/server.log"

find_bin() {
	local d
	d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
	[ -n "$d" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

# as_pg runs a command as the postgres OS user when we are root.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# datadir picks where the cluster lives. The postgres user must be able to reach it;
# in a clone under a directory it cannot traverse, the cluster goes to a per-repo
# directory under /var/tmp and .local/postgres/data points there.
datadir() {
	mkdir -p "$DIR"
	if [ -L "$DIR/data" ]; then
		readlink "$DIR/data"
		return
	fi
	if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -x "$DIR"; then
		echo "$DIR/data"
		return
	fi
	local alt
	alt="/var/tmp/govx-postgres-$(echo "$REPO" | sha256sum | cut -c1-12)"
	mkdir -p "$alt"
	chown postgres: "$alt"
	ln -sfn "$alt" "$DIR/data"
	echo "$alt"
}

psql_ok() {
	PGPASSWORD=govx "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U govx -d govx -tAc 'SELECT 1' 2>/dev/null | grep -qx 1
}

up() {
	BIN="$(find_bin)" || { need_debs postgresql; BIN="$(find_bin)"; } || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin; install the postgresql package"
	local data
	data="$(datadir)"
	if [ -f "$data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1 && port_open "$PORT"; then
		head -n1 "$data/postmaster.pid" >"$PIDFILE"
		log "already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
		return 0
	fi
	check_port_free "$PORT"
	if [ ! -s "$data/PG_VERSION" ]; then
		log "initdb into ${data#"$REPO"/}"
		mkdir -p "$data"
		[ "$(id -u)" -eq 0 ] && chown postgres: "$data" "$DIR"
		local pw
		pw="$(mktemp)"
		echo govx >"$pw"
		chmod 644 "$pw"
		as_pg "$BIN/initdb" -D "$data" -U govx --pwfile="$pw" -E UTF8 --locale=C.UTF-8 \
			--auth-local=trust --auth-host=scram-sha-256 >"$DIR/initdb.log" 2>&1 || {
			rm -f "$pw"
			show_log "$DIR/initdb.log"
			die "initdb failed"
		}
		rm -f "$pw"
		cat >>"$data/postgresql.conf" <<CONF
# deploy/local: loopback TCP only, no unix socket (the repo path may be too long for one).
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
ssl = off
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
	fi
	[ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"
	log "starting on 127.0.0.1:$PORT"
	# pg_ctl leaves the postmaster behind; it must not inherit our descriptors either.
	(closefds && as_pg "$BIN/pg_ctl" -D "$data" -l "$LOG" -w -t 60 start) </dev/null >"$DIR/pg_ctl.log" 2>&1 || {
		show_log "$LOG"
		die "pg_ctl start failed; see ${LOG#"$REPO"/}"
	}
	head -n1 "$data/postmaster.pid" >"$PIDFILE"
	if ! PGPASSWORD=govx "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U govx -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='govx'" | grep -qx 1; then
		PGPASSWORD=govx "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U govx govx || die "could not create database govx"
	fi
	wait_until 30 "SELECT 1" psql_ok || die "the server started but 'SELECT 1' as govx on database govx fails; see ${LOG#"$REPO"/}"
	log "ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), $("$BIN/postgres" --version))"
}

down() {
	local bin data
	bin="$(find_bin)" || { log "not running"; return 0; }
	data="$(datadir)"
	if [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed"
		log "stopped"
	else
		log "not running"
	fi
	rm -f "$PIDFILE"
}

ready() {
	BIN="$(find_bin)" || { log "not installed"; return 1; }
	psql_ok
}

ADOPT=""
serve_main "$@"
