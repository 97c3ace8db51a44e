#!/usr/bin/env bash
# python.sh up|down|status — a virtualenv in .local/venv with pyarrow (consumer-side
# Arrow Flight tests), adbc_driver_flightsql with pandas (the Flight SQL client BI tools
# and notebooks use, for the aggregate tests) and python-stdnum (an independent check of
# Chinese identifiers), installed from PyPI. down is a no-op: there is no process to stop.
set -euo pipefail
SERVICE=python
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$STATE/venv"
PY="$VENV/bin/python"
CHECK='import pyarrow, pyarrow.flight, stdnum.cn.ric, stdnum.cn.uscc, adbc_driver_flightsql.dbapi, pandas'

find_python() {
	local p
	for p in python3.11 python3 /usr/bin/python3; do
		if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import venv, ensurepip' 2>/dev/null; then
			command -v "$p"
			return 0
		fi
	done
	return 1
}

up() {
	if [ -x "$PY" ] && "$PY" -c "$CHECK" 2>/dev/null; then
		log "ready: ${PY#"$REPO"/} (pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)'))"
		return 0
	fi
	local base
	base="$(find_python)" || { need_debs python3-venv; base="$(find_python)"; } || die "no python3 with the venv module; install python3-venv"
	if [ ! -x "$PY" ]; then
		log "creating virtualenv ${VENV#"$REPO"/} from $base"
		"$base" -m venv "$VENV" || die "python -m venv $VENV failed"
	fi
	log "installing pyarrow, adbc_driver_flightsql, pandas and python-stdnum from PyPI"
	"$PY" -m pip install -q --disable-pip-version-check pyarrow adbc_driver_flightsql pandas python-stdnum >"$STATE/python-pip.log" 2>&1 || {
		show_log "$STATE/python-pip.log"
		die "pip install pyarrow adbc_driver_flightsql pandas python-stdnum failed"
	}
	"$PY" -c "$CHECK" || die "pyarrow, adbc_driver_flightsql, pandas or python-stdnum installed but cannot be imported"
	log "ready: ${PY#"$REPO"/} (pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)'))"
}

case "${1:-}" in
up | down) lock_service "$VENV.d" ;;
esac
case "${1:-}" in
up) up ;;
down) ;;
status) [ -x "$PY" ] && "$PY" -c "$CHECK" && log "ready: ${PY#"$REPO"/}" || { log "not installed"; exit 1; } ;;
*) usage_for ;;
esac
