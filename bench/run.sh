#!/usr/bin/env bash
# bench/run.sh — runs every benchmark command under bench/ against the real local
# services and writes docs/BENCHMARKS.md: one row per target of ARCHITECTURE.md
# ("Targets") with our figure, the baseline measured in the same run, the ratio, the
# target, pass/miss and the exact command; then each command's own rows. See
# bench/README.md for the knobs. `make bench` runs it.
#
#   bench/run.sh                                  # the sizes the targets name (1M rows)
#   BENCH_ROWS=200000 BENCH_COLD_BUILD=0 bench/run.sh   # a quicker, smaller run
#   CURVE=10m bench/run.sh                        # the cost curve to 10M persons (make bench CURVE=10m)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

ROWS=${BENCH_ROWS:-1000000}                 # persons: ingest, flight, lookup, store
SMALL=${BENCH_SMALL_ROWS:-200000}           # connector snapshot rows, gen scale
AUDIT_EVENTS=${BENCH_AUDIT_EVENTS:-300000}  # audit pipeline events
POLICY_N=${BENCH_POLICY_N:-1000000}          # decisions through the cached engine
LOOKUP_RATE=${BENCH_LOOKUP_RATE:-2000}
LOOKUP_DURATION=${BENCH_LOOKUP_DURATION:-10s}
SUBJECT_RATE=${BENCH_SUBJECT_RATE:-500}     # subject views (and baseline 4-lookup sequences) per second
FLIGHT_RUNS=${BENCH_FLIGHT_RUNS:-5}
COLD=${BENCH_COLD_BUILD:-1}                 # 0: skip the empty-GOCACHE build of cmd/govx
ONLY=${BENCH_ONLY:-}                        # e.g. "flight lookup": run only these
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
LOOKUP_RATES=${BENCH_LOOKUP_RATES:-500,1000,2000}  # lookup-cold: each from a fresh start
LOOKUP_DEMO=${BENCH_LOOKUP_DEMO:-1}         # 0: lookup-cold against the exchange alone, not also govx demo
# The cost curve: CURVE is the largest size (1m, 3m or 10m) or a list of sizes (100k,1m,...).
CURVE=${CURVE:-${BENCH_CURVE:-1m}}
case $CURVE in
	100k) CURVE=100k ;;
	1m) CURVE=100k,1m ;;
	3m) CURVE=100k,1m,3m ;;
	10m) CURVE=100k,1m,3m,10m ;;
esac
CURVE_STEP_TIMEOUT=${BENCH_CURVE_STEP_TIMEOUT:-20m}  # bound on each size of the curve
LOG=.local/bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$LOG/bin"

say() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Services: up.sh is idempotent (running services are left alone) and writes env.sh.
say "services: deploy/local/up.sh (log $LOG/services.log)"
if ! deploy/local/up.sh >"$LOG/services.log" 2>&1; then
	say "the services did not start; see $LOG/services.log"
	exit 1
fi
. .local/env.sh

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
GOVER=$(go env GOVERSION)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then REV="$REV (with uncommitted changes)"; fi
START=$SECONDS

say "building the bench commands"
if ! go build -o "$LOG/bin/" ./bench/ingest ./bench/flight ./bench/lookup ./bench/demo ./bench/store \
	./bench/policy ./bench/audit ./bench/connector ./bench/gen ./bench/peer ./bench/pull ./bench/curve ./bench/aggregate ./cmd/govx 2>"$LOG/build.log"; then
	say "build failed:"; cat "$LOG/build.log" >&2; exit 1
fi

# Other work on this machine may stop and restart the shared broker (outage tests): wait
# for it rather than measure a refused connection.
wait_kafka() {
	local host=${GOVX_TEST_KAFKA%:*} port=${GOVX_TEST_KAFKA##*:} t0=$SECONDS
	until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
		if [ $((SECONDS - t0)) -gt 300 ]; then say "Kafka at $GOVX_TEST_KAFKA unreachable for 5 min"; return 1; fi
		sleep 2
	done
	[ $((SECONDS - t0)) -eq 0 ] || say "waited $((SECONDS - t0))s for Kafka at $GOVX_TEST_KAFKA"
}

declare -A CMD STATUS SECS
ORDER=()
wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
# bench NAME "go run ./bench/X args" ARGS... runs $LOG/bin/X ARGS, keeping stdout (the
# markdown) in $LOG/NAME.md and stderr in $LOG/NAME.log.
bench() {
	local name=$1 shown=$2 bin=$3
	shift 3
	wanted "$name" || return 0
	ORDER+=("$name")
	CMD[$name]=$shown
	say "$name: $shown"
	case $name in ingest | flight | lookup | connector | peer | pull | lookup-cold | curve | aggregate) wait_kafka ;; esac
	local t0=$SECONDS
	"$LOG/bin/$bin" "$@" >"$LOG/$name.md" 2>"$LOG/$name.log"
	STATUS[$name]=$?
	SECS[$name]=$((SECONDS - t0))
	if [ "${STATUS[$name]}" -ne 0 ]; then
		say "$name FAILED (exit ${STATUS[$name]}); last lines of $LOG/$name.log:"
		tail -5 "$LOG/$name.log" >&2
	fi
}

# The whole-system benches share one topic of ROWS persons: ingest produces it and keeps
# it, flight and lookup read it, and it is deleted at the end.
PREFIX=
bench ingest "go run ./bench/ingest -rows $ROWS" ingest -rows "$ROWS" -keep
if [ -f "$LOG/ingest.md" ]; then PREFIX=$(sed -n 's/^@keep|//p' "$LOG/ingest.md"); fi
pre=(); [ -n "$PREFIX" ] && pre=(-prefix "$PREFIX")
bench flight "go run ./bench/flight -rows $ROWS -runs $FLIGHT_RUNS" flight -rows "$ROWS" -runs "$FLIGHT_RUNS" "${pre[@]}"
bench lookup "go run ./bench/lookup -rows $ROWS -rate $LOOKUP_RATE -duration $LOOKUP_DURATION -subject -subject-rate $SUBJECT_RATE" lookup \
	-rows "$ROWS" -rate "$LOOKUP_RATE" -duration "$LOOKUP_DURATION" -subject -subject-rate "$SUBJECT_RATE" "${pre[@]}"
bench peer "go run ./bench/peer -rows $ROWS -runs $FLIGHT_RUNS" peer -rows "$ROWS" -runs "$FLIGHT_RUNS" "${pre[@]}"
bench pull "go run ./bench/pull -rows $ROWS -runs $FLIGHT_RUNS" pull -rows "$ROWS" -runs "$FLIGHT_RUNS" -govx "$LOG/bin/govx" "${pre[@]}"
bench aggregate "go run ./bench/aggregate -rows $ROWS -runs $FLIGHT_RUNS" aggregate -rows "$ROWS" -runs "$FLIGHT_RUNS" "${pre[@]}"
demo=(); [ "$LOOKUP_DEMO" != 0 ] && demo=(-demo -govx "$LOG/bin/govx")
bench lookup-cold "go run ./bench/lookup -rows $ROWS -rates $LOOKUP_RATES -duration $LOOKUP_DURATION${demo:+ -demo}" lookup \
	-rows "$ROWS" -rates "$LOOKUP_RATES" -duration "$LOOKUP_DURATION" "${demo[@]}" "${pre[@]}"
if [ -n "$PREFIX" ]; then "$LOG/bin/ingest" -delete-prefix "$PREFIX" 2>>"$LOG/ingest.log" || say "could not delete topic ${PREFIX}population.person"; fi
bench store "go run ./bench/store -rows $ROWS" store -rows "$ROWS"
CHARTS=$(dirname "$OUT")/bench
bench curve "go run ./bench/curve -sizes $CURVE -charts $CHARTS" curve -sizes "$CURVE" -step-timeout "$CURVE_STEP_TIMEOUT" -charts "$CHARTS"
bench policy "go run ./bench/policy -n $POLICY_N" policy -n "$POLICY_N"
bench audit "go run ./bench/audit -events $AUDIT_EVENTS" audit -events "$AUDIT_EVENTS"
# bench/connector reads connectors/examples relative to the repository root.
bench connector "go run ./bench/connector -rows $SMALL" connector -rows "$SMALL"
GEN_DIR=$(mktemp -d)
bench gen "go run ./bench/gen -scale $SMALL -to sqlite:DIR -to csv:DIR" gen -scale "$SMALL" -to "sqlite:$GEN_DIR/sqlite" -to "csv:$GEN_DIR/csv"
rm -rf "$GEN_DIR"
if [ "$COLD" = 0 ]; then
	bench demo "go run ./bench/demo -cold=false" demo -cold=false
else
	bench demo "go run ./bench/demo" demo
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$((SECONDS - START))

# ---- the targets table -------------------------------------------------------------
trim() { sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'; }
# cell FILE ROWPATTERN N: the Nth cell of the first markdown row matching ROWPATTERN.
cell() { grep -F -- "$2" "$1" 2>/dev/null | head -1 | awk -F'|' -v n="$3" '{print $(n+1)}' | trim; }
# target KEY: the @target fields of KEY (ours|baseline|ratio|pass|command).
target() { grep -h "^@target|$1|" "$LOG"/*.md 2>/dev/null | head -1 | cut -d'|' -f3-; }
num() { grep -oE '[0-9]+(\.[0-9]+)?' <<<"$1" | head -1; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a+0 >= b+0)}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a+0 <= b+0)}'; }
verdict() { if [ "$1" = 0 ]; then echo "**pass**"; else echo "**miss**"; fi; }

ROWS_MD=()
row() { ROWS_MD+=("| $1 | $2 | $3 | $4 | $5 | $6 | \`$7\` |"); }
failed() { row "$1" "not measured: ${2} failed (exit ${STATUS[$2]:-?}, see its log)" "—" "—" "$3" "—" "${CMD[$2]:-bench/$2}"; }
skipped() { row "$1" "not run (BENCH_ONLY)" "—" "—" "$2" "—" "go run ./bench/$3"; }
# from_target LABEL KEY NAME TARGETTEXT: a row from a command's @target line.
from_target() {
	local t; t=$(target "$2")
	if ! wanted "$3"; then skipped "$1" "$4" "$3"; return; fi
	if [ "${STATUS[$3]:-1}" -ne 0 ] || [ -z "$t" ]; then failed "$1" "$3" "$4"; return; fi
	IFS='|' read -r ours base ratio pass cmd <<<"$t"
	row "$1" "$ours" "$base" "$ratio" "$4" "**$pass**" "$cmd"
}

from_target "Bulk pull, $ROWS persons, every row, projection + 2 masks (Flight)" pull-all flight "≥ 0.9× bare Go Flight"
from_target "First pull after start, $ROWS persons, every row, projection + 2 masks (Flight)" pull-first flight "≥ 0.8× bare Go Flight (warm)"
from_target "Bulk pull, row filter keeping ~1 in 8, + 2 masks (Flight)" pull-filter flight "≥ 4× PostgreSQL COPY binary"
from_target "First pull after start, $ROWS persons, 6 columns, 2 masks (pyarrow client)" peer-cold peer "≥ 0.8× C++ Flight peer"
from_target "Warm pulls, same (pyarrow client)" peer-warm peer "≥ 0.95× C++ Flight peer"
from_target "Filtered pull (~1 in 8), first after start (pyarrow client)" psql-filter-cold peer "≥ 4× psql COPY binary"
from_target "Filtered pull (~1 in 8), warm (pyarrow client)" psql-filter-warm peer "≥ 4× psql COPY binary"
from_target "\`govx pull --format arrow\` to a file, $ROWS persons, 6 columns, 2 masks" pull-cli-arrow pull "≥ 0.8× a pyarrow client of the same exchange"
from_target "\`govx pull --format parquet\` to a file, same" pull-cli-parquet pull "≥ 0.8× a pyarrow client of the same exchange"
from_target "Aggregate by county, $ROWS persons, Flight SQL (policy, suppression < 10, audit), first query after start" aggregate aggregate "≥ 1× PostgreSQL, same answer in SQL"
from_target "Aggregate by county, same, warm (median)" aggregate-warm aggregate "≥ 1× PostgreSQL, same answer in SQL"

from_target "Decision, 1,000 agreements, 100 departments, warm" decision-warm policy "p50 ≤ 20 µs, p99 ≤ 100 µs"
from_target "Decision from an empty cache and right after a policy reload (decision index, compiled decision)" decision-cold policy "p99 ≤ 100 µs"

from_target "Lookup by key over HTTP, auth + policy + durable audit, 2,000 req/s open loop" lookup lookup "p99 ≤ 2 ms"
from_target "Verify by key over HTTP, same" verify lookup "p99 ≤ 2 ms"
top=${LOOKUP_RATES##*,}
from_target "Lookup, exchange alone, $ROWS persons, ClickHouse on the host, $top req/s open loop, from a cold start" lookup-cold-exchange lookup-cold "p50 ≤ 1 ms, p99 ≤ 2 ms"
from_target "Verify, same" verify-cold-exchange lookup-cold "p50 ≤ 1 ms, p99 ≤ 2 ms"
if [ "$LOOKUP_DEMO" != 0 ]; then
	from_target "Lookup through \`govx demo\` at $ROWS persons, ClickHouse on the host, $top req/s open loop, from a cold start" lookup-cold-demo lookup-cold "p50 ≤ 1 ms, p99 ≤ 2 ms"
	from_target "Verify, same" verify-cold-demo lookup-cold "p50 ≤ 1 ms, p99 ≤ 2 ms"
fi
from_target "Person subject view (一号式) over HTTP, 4 registers, $ROWS persons, $SUBJECT_RATE views/s open loop" subject lookup "p99 ≤ 4 lookups one after another"
from_target "Licence verify (证照核验) over HTTP, digest + Ed25519 signature, $LOOKUP_RATE req/s" licence-verify lookup "p99 ≤ 2 ms"

if wanted connector; then
	if [ "${STATUS[connector]:-1}" -eq 0 ]; then
		f=$LOG/connector.md
		ours=$(cell "$f" "connector snapshot" 4); base=$(cell "$f" "ProducerPerformance" 4); ratio=$(cell "$f" "connector snapshot" 5)
		ok=1; ge "$(num "$ratio")" 0.5 && ok=0
		row "Connector snapshot PostgreSQL → Kafka ($SMALL persons)" "$ours records/s" "$base records/s (Kafka ProducerPerformance)" \
			"$ratio" "≥ 0.5× ProducerPerformance" "$(verdict $ok)" "${CMD[connector]}"
	else failed "Connector snapshot PostgreSQL → Kafka" connector "≥ 0.5× ProducerPerformance"; fi
else skipped "Connector snapshot" "≥ 0.5× ProducerPerformance" connector; fi

from_target "Exchange ingest from Kafka, $ROWS persons, start → ready" ingest ingest "≥ 200k records/s; ≥ 0.5× bare kafka-go (issue 17)"
from_target "Source change visible to consumers" visible ingest "within 2 s (poll 1 s)"

if wanted audit; then
	if [ "${STATUS[audit]:-1}" -eq 0 ]; then
		f=$LOG/audit.md
		ours=$(cell "$f" "append + ship" 2); base=$(cell "$f" "baseline: clickhouse-go" 2); ratio=$(cell "$f" "append + ship" 3)
		ok=1; ge "$(num "$ours")" 50000 && ok=0
		row "Audit events into ClickHouse (durable spool + shipper, $AUDIT_EVENTS events)" "$ours events/s" \
			"$base events/s (clickhouse-go batch insert, Null engine)" "${ratio}×" "≥ 50k events/s" "$(verdict $ok)" "${CMD[audit]}"
	else failed "Audit events into ClickHouse" audit "≥ 50k events/s"; fi
else skipped "Audit events into ClickHouse" "≥ 50k events/s" audit; fi

from_target "Serving with ClickHouse down (lookups, events kept in the spool)" audit-down lookup "latency changes < 5%"

if wanted store; then
	if [ "${STATUS[store]:-1}" -eq 0 ]; then
		f=$LOG/store.md
		m=$(cell "$f" "store memory" 2)
		ratio=$(awk '{print $1}' <<<"$m")
		ok=1; le "$(num "$ratio")" 2 && ok=0
		row "Memory: the store holding $ROWS persons" "$(grep -oE '[0-9.]+ MB heap' <<<"$m") in use" \
			"$(grep -oE '[0-9.]+ MB IPC' <<<"$m") (Arrow IPC stream of the same rows)" "$ratio" "≤ 2× Arrow IPC size" "$(verdict $ok)" "${CMD[store]}"
	else failed "Memory: the store holding $ROWS persons" store "≤ 2× Arrow IPC size"; fi
else skipped "Memory" "≤ 2× Arrow IPC size" store; fi

from_target "Cost curve ($CURVE persons): start → ready" curve-ready curve "linear (log-log slope ≤ 1.1)"
from_target "Cost curve ($CURVE persons): Go heap" curve-heap curve "linear (log-log slope ≤ 1.1)"
from_target "\`govx demo\` start → ready (warm build cache, default scale)" demo demo "< 60 s"
if [ "$COLD" != 0 ]; then
	from_target "\`govx demo\` first run: empty GOCACHE build + start → ready" demo-cold demo "< 60 s (reported)"
fi

# ---- write the document --------------------------------------------------------------
# Hand-written notes between the markers survive a re-run.
NOTES=$(awk '/<!-- notes:begin -->/ {on=1; next} /<!-- notes:end -->/ {on=0} on' "$OUT" 2>/dev/null)
if [ -z "$NOTES" ]; then
	NOTES="_No notes yet: explain here every miss and anything surprising; this block is kept when bench/run.sh rewrites the file._"
fi
{
	echo "# Benchmarks"
	echo
	echo "Written by \`bench/run.sh\` (\`make bench\`); see \`bench/README.md\` for what each command measures"
	echo "and how to scale a run down. Every figure is from the run described here, and every"
	echo "ratio is against a baseline measured in that same run on the same machine."
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| date | $DATE |"
	echo "| machine | $NPROC cores ($CPU), $MEM, loopback only |"
	echo "| load average (1, 5, 15 min) | at start: $LOAD_START; at end: $LOAD_END — the machine is shared: other work ran alongside |"
	echo "| Go | $GOVER, GOGC=${GOGC:-default}, commit $REV |"
	echo "| services | Kafka at $GOVX_TEST_KAFKA, ClickHouse at $GOVX_TEST_CLICKHOUSE, PostgreSQL and MariaDB from deploy/local |"
	echo "| sizes | CURVE=$CURVE, BENCH_LOOKUP_RATES=$LOOKUP_RATES (demo: $LOOKUP_DEMO), BENCH_ROWS=$ROWS, BENCH_SMALL_ROWS=$SMALL, BENCH_AUDIT_EVENTS=$AUDIT_EVENTS, BENCH_POLICY_N=$POLICY_N, lookup ${LOOKUP_RATE} req/s × $LOOKUP_DURATION, subject views ${SUBJECT_RATE}/s, flight runs $FLIGHT_RUNS |"
	echo "| whole run | ${TOTAL}s; raw output in \`$LOG/\` |"
	echo
	echo "## Targets"
	echo
	echo "| target (ARCHITECTURE.md) | ours | baseline, same run | ratio | target | result | command |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS_MD[@]}"
	echo
	echo "## Notes"
	echo
	echo "<!-- notes:begin -->"
	printf '%s\n' "$NOTES"
	echo "<!-- notes:end -->"
	echo
	echo "## Each command's output"
	for name in "${ORDER[@]}"; do
		echo
		echo "### bench/$name"
		echo
		echo "Command: \`${CMD[$name]}\` (after \`source .local/env.sh\`) — exit ${STATUS[$name]}, ${SECS[$name]}s wall."
		echo
		if [ "${STATUS[$name]}" -ne 0 ]; then
			echo '```'
			tail -15 "$LOG/$name.log"
			echo '```'
		fi
		grep -v '^@' "$LOG/$name.md" | sed -e '/./,$!d'
	done
} >"$OUT"
say "wrote $OUT in ${TOTAL}s (raw output in $LOG)"
grep -c '\*\*miss\*\*' "$OUT" | xargs -I{} echo "bench: {} target(s) missed" >&2
exit 0
