#!/usr/bin/env bash
# down.sh — stops every local test service; stopping one that is not running succeeds.
# down.sh --from FILE stops only the services named in FILE (one a line, as written by
# `up.sh --record FILE`). State (data, jars, venv) stays in .local/; `rm -rf .local`
# after down starts afresh.
set -euo pipefail
SERVICE=down
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=(kafka clickhouse postgres mariadb python)
if [ "${1:-}" = --from ]; then
	services=()
	[ -f "${2:?usage: down.sh [--from FILE]}" ] && mapfile -t services <"$2"
	[ ${#services[@]} -gt 0 ] || { log "nothing to stop: every service was already running before"; exit 0; }
fi
failed=()
for svc in "${services[@]}"; do
	[ -n "$svc" ] || continue
	"$HERE/$svc.sh" down || failed+=("$svc")
done
[ ${#failed[@]} -eq 0 ] || die "could not stop: ${failed[*]}"
