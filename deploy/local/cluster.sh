#!/usr/bin/env bash
# cluster.sh — the production topology on loopback, for chaos runs (`make chaos`):
#
#   kafka-1..3   three Kafka nodes in KRaft mode (kafka.sh with GOVX_KAFKA_NODE), ports
#                19192-19194, controllers 19195-19197; replication factor 3,
#                min.insync.replicas 2
#   clickhouse   a ClickHouse of its own (clickhouse.sh, GOVX_CLICKHOUSE_INSTANCE=cluster)
#                on 19100 (native) and 18223 (HTTP): the audit table of both replicas
#   exchange-a   two exchange replicas (instances exchange-a and exchange-b): Flight
#   exchange-b   18815/18816, HTTP 18080/18081, ops 18090/18091; each its own store,
#                audit spool, checkpoints and signing key; one secret and token file
#   conn-gab, conn-scjgj, conn-zrzyb, conn-tjj
#                the four base registers' connectors (acks=all, topics replicated 3
#                times), reading the departments' MariaDB databases chaos_<dept> (the
#                shared MariaDB of up.sh on 13306; generated once by `govx gen`)
#
# Every port moves by GOVX_LOCAL_PORT_SHIFT, as in the other scripts. The single-node
# services of the tests (kafka.sh, clickhouse.sh on 19092/19000) are not touched.
# State: .local/cluster (data, logs, configs, tokens/<dept>.token, env.sh).
#
#   cluster.sh up            start what is not running (generate the sources on first use)
#   cluster.sh down          stop everything of the cluster (state is kept)
#   cluster.sh status        one line per component; exit 1 if one is down
#   cluster.sh reset         down, then remove the state and the chaos_<dept> databases
#   cluster.sh start NAME    start one component (after a kill)
#   cluster.sh stop NAME     stop one component (SIGTERM)
#   cluster.sh pid NAME      print the pid of a running component
#
# CLUSTER_SCALE (default 2000 persons) sizes the generated registers; GOVX_BIN names a
# govx binary to run instead of building one from this checkout.
set -euo pipefail
SERVICE=cluster
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

C="$STATE/cluster"
GOVX="$C/bin/govx"
SCALE="${CLUSTER_SCALE:-2000}"
KAFKA_NODES=(1 2 3)
BROKERS="127.0.0.1:$((19192 + SHIFT)),127.0.0.1:$((19193 + SHIFT)),127.0.0.1:$((19194 + SHIFT))"
CH_PORT=$((19100 + SHIFT))
MYSQL="mysql://govx:govx@127.0.0.1:$MARIADB_PORT/"
DEPTS=(gab scjgj zrzyb tjj)
REPLICAS=(a b)
COMPONENTS=(kafka-1 kafka-2 kafka-3 clickhouse exchange-a exchange-b conn-gab conn-scjgj conn-zrzyb conn-tjj)
# Consumer systems the chaos load and checker run as (DEPT/SYSTEM).
SUBJECTS=(mz-3301/dibao-review fgw-33/compare sw-33/tax zj-3205/housing-security wj-3302/birth chaos-check/checker)

replica_port() { # replica_port a|b BASE
	local i=0
	[ "$1" = b ] && i=1
	echo $(($2 + i + SHIFT))
}

# ---- processes of our own (exchanges, connectors) ----

proc_dir() { echo "$C/$1"; }

proc_alive() { pid_alive "$(proc_dir "$1")/pid"; }

# proc_spawn NAME CMD... starts NAME detached, its output appended to NAME/log.
proc_spawn() {
	local name="$1" d
	shift
	d="$(proc_dir "$name")"
	mkdir -p "$d"
	printf '\n==== started %s ====\n' "$(date -u +%FT%TZ)" >>"$d/log"
	(
		closefds
		exec setsid "$@"
	) </dev/null >>"$d/log" 2>&1 &
	echo $! >"$d/pid"
}

proc_stop() {
	local d
	d="$(proc_dir "$1")"
	SERVICE="$1" stop_pid "$d/pid"
}

# ---- the parts ----

kafka_ctl() { # kafka_ctl N up|down|status
	GOVX_KAFKA_NODE="$1" GOVX_KAFKA_CLUSTER_ID="$(cluster_id)" "$HERE/kafka.sh" "$2"
}

clickhouse_ctl() { GOVX_CLICKHOUSE_INSTANCE=cluster "$HERE/clickhouse.sh" "$1"; }

# cluster_id is the KRaft cluster id the three nodes are formatted with: made once.
cluster_id() {
	if [ ! -s "$C/kafka-cluster-id" ]; then
		mkdir -p "$C"
		head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22 >"$C/kafka-cluster-id"
	fi
	cat "$C/kafka-cluster-id"
}

build() {
	mkdir -p "$C/bin"
	if [ -n "${GOVX_BIN:-}" ]; then
		log "using $GOVX_BIN (GOVX_BIN) as ${GOVX#"$REPO"/}"
		cp "$GOVX_BIN" "$GOVX.tmp" && mv "$GOVX.tmp" "$GOVX"
		return
	fi
	log "building govx into ${GOVX#"$REPO"/}"
	(cd "$REPO" && go build -o "$GOVX.tmp" ./cmd/govx) && mv "$GOVX.tmp" "$GOVX"
}

sources() {
	[ -f "$C/sources.done" ] && return 0
	"$HERE/mariadb.sh" up
	log "generating the four departments' databases (scale $SCALE) into MariaDB chaos_<dept>"
	"$GOVX" gen --scale "$SCALE" --seed 16 --invalid-rate 0 --departments "$(
		IFS=,
		echo "${DEPTS[*]}"
	)" --to "$MYSQL?prefix=chaos_" >"$C/gen.log" 2>&1 || {
		show_log "$C/gen.log"
		die "govx gen failed"
	}
	touch "$C/sources.done"
}

# policies: the shipped ones, plus a checker that may read every row of the four
# registers unmasked (its agreements name only the columns the chaos run changes).
policies() {
	local p="$C/policies"
	rm -rf "$p"
	mkdir -p "$p"
	cp "$REPO"/policies/*.yaml "$p/"
	find "$REPO/policies" -maxdepth 1 -name '*.rego' ! -name '*_test.rego' -exec cp {} "$p/" \;
	cp -r "$REPO/policies/calendar" "$REPO/policies/applications" "$p/"
	find "$p" -name '*_test.rego' -delete
	# The run's load is a few systems asking far more often than a real one: the
	# population register's key budget (five verifies and twenty lookups of a key an
	# hour) is raised so that the run measures faults, not budgets.
	local budget='key_budget: {verify_per_key: 5, lookup_per_key: 20, distinct_keys: 1000, window: 1h}'
	grep -qF "$budget" "$p/catalog.yaml" || die "policies/catalog.yaml no longer holds the population budget this script raises ($budget)"
	sed -i "s/$budget/key_budget: {verify_per_key: 100000, lookup_per_key: 100000, distinct_keys: 100000, window: 1h}/" "$p/catalog.yaml"
	cat >>"$p/departments.yaml" <<'YAML'

  # The chaos run's checker (deploy/local/cluster.sh): reads what every replica serves.
  - {code: chaos-check, name: 故障演练核对, level: national}
YAML
	cat >>"$p/agreements.yaml" <<'YAML'

  # The chaos run's checker (deploy/local/cluster.sh): each register's key and the
  # column the run changes, every row, unmasked.
YAML
	local n=0 ds cols
	for spec in "population.person:id_number, phone" "legal_entity.organization:uscc, address" \
		"resource.land_parcel:parcel_code, area_m2" "economy.indicator:indicator_code, region_code, period, value"; do
		n=$((n + 1))
		ds="${spec%%:*}"
		cols="${spec#*:}"
		cat >>"$p/agreements.yaml" <<YAML
  - id: AGR-CHAOS-000$n
    title: 故障演练核对 — $ds
    consumer: chaos-check
    system: checker
    dataset: $ds
    purposes: [chaos-consistency-check]
    columns: [$cols]
    unmasked: [$cols]
    region: "000000"
    actions: [read]
    valid_from: 2026-01-01
    valid_until: 2030-12-31
    approval: 演练〔2026〕$n号

YAML
	done
	"$GOVX" policy check "$p" >"$C/policy-check.log" 2>&1 || {
		show_log "$C/policy-check.log"
		die "the cluster's policies do not check"
	}
}

tokens() {
	[ -f "$C/tokens.done" ] && return 0
	mkdir -p "$C/tokens"
	local s
	for s in "${SUBJECTS[@]}"; do
		"$GOVX" token issue "$s" --tokens "$C/tokens.json" --note "chaos run" >"$C/tokens/${s%%/*}.token" 2>"$C/tokens.log" || {
			show_log "$C/tokens.log"
			die "govx token issue $s failed"
		}
	done
	touch "$C/tokens.done"
}

exchange_config() { # exchange_config a|b
	local r="$1" d="$C/exchange-$1"
	mkdir -p "$d"
	cat >"$d/exchange.yaml" <<YAML
# Generated by deploy/local/cluster.sh: replica $r of the loopback cluster.
flight_addr: 127.0.0.1:$(replica_port "$r" 18815)
flight_advertise: 127.0.0.1:$(replica_port "$r" 18815)
http_addr: 127.0.0.1:$(replica_port "$r" 18080)
ops:
  listen: 127.0.0.1:$(replica_port "$r" 18090)
kafka:
  brokers: [${BROKERS//,/, }]
datasets: [population.person, legal_entity.organization, resource.land_parcel, economy.indicator]
data_dir: data
snapshot_interval: 10s
policies_dir: $C/policies
tokens_file: $C/tokens.json
secret_file: $C/exchange.secret
audit:
  spool_dir: audit-spool
  instance: exchange-$r
  signing_key: audit.key
  checkpoints: audit.checkpoints
  clickhouse:
    addr: 127.0.0.1:$CH_PORT
    database: govx
    table: access_log
YAML
}

connector_config() { # connector_config DEPT
	local dept="$1" d="$C/conn-$1" ex
	mkdir -p "$d"
	ex="$REPO/connectors/examples/$dept.postgres.yaml"
	# The example's mapping, read from MariaDB and published to the cluster with every
	# topic replicated three times.
	sed -e 's/^  driver: postgres$/  driver: mysql/' \
		-e "s/^  table: $dept\./  table: chaos_$dept./" \
		-e "s/^  brokers: .*/  brokers: [${BROKERS//,/, }]\n  replication_factor: 3/" \
		-e 's/^look_back: .*/look_back: 30s/' \
		"$ex" >"$d/connector.yaml"
	grep -q "driver: mysql" "$d/connector.yaml" && grep -q "replication_factor: 3" "$d/connector.yaml" ||
		die "could not derive the $dept connector config from ${ex#"$REPO"/}"
}

start_one() {
	local name="$1"
	case "$name" in
	kafka-[123]) kafka_ctl "${name#kafka-}" up ;;
	clickhouse) clickhouse_ctl up ;;
	exchange-[ab])
		proc_alive "$name" && return 0
		exchange_config "${name#exchange-}"
		(cd "$C/$name" && proc_spawn "$name" "$GOVX" exchange serve -c "$C/$name/exchange.yaml")
		;;
	conn-*)
		proc_alive "$name" && return 0
		connector_config "${name#conn-}"
		GOVX_SOURCE_DSN="$MYSQL" proc_spawn "$name" "$GOVX" connector run -c "$C/$name/connector.yaml"
		;;
	*) die "no component $name; the components are: ${COMPONENTS[*]}" ;;
	esac
}

stop_one() {
	case "$1" in
	kafka-[123]) kafka_ctl "${1#kafka-}" down ;;
	clickhouse) clickhouse_ctl down ;;
	exchange-[ab] | conn-*) proc_stop "$1" ;;
	*) die "no component $1; the components are: ${COMPONENTS[*]}" ;;
	esac
}

pid_of() {
	local f
	case "$1" in
	kafka-[123]) f="$C/$1/pid" ;;
	clickhouse) f="$C/clickhouse/pid" ;;
	exchange-[ab] | conn-*) f="$C/$1/pid" ;;
	*) die "no component $1; the components are: ${COMPONENTS[*]}" ;;
	esac
	pid_alive "$f" || return 1
	cat "$f"
}

ready_exchange() { # ready_exchange a|b: /readyz answers 200 (bash alone: no curl needed)
	(
		exec 3<>"/dev/tcp/127.0.0.1/$(replica_port "$1" 18090)"
		printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		head -n 1 <&3 | grep -q ' 200 '
	)
}

write_env() {
	cat >"$C/env.sh" <<ENV
# Generated by deploy/local/cluster.sh: addresses of the loopback cluster.
export GOVX_CLUSTER_DIR='$C'
export GOVX_CLUSTER_CTL='$HERE/cluster.sh'
export GOVX_CLUSTER_BROKERS='$BROKERS'
export GOVX_CLUSTER_CLICKHOUSE=127.0.0.1:$CH_PORT
export GOVX_CLUSTER_SOURCES='$MYSQL'
export GOVX_CLUSTER_FLIGHT='127.0.0.1:$(replica_port a 18815),127.0.0.1:$(replica_port b 18815)'
export GOVX_CLUSTER_HTTP='http://127.0.0.1:$(replica_port a 18080),http://127.0.0.1:$(replica_port b 18080)'
export GOVX_CLUSTER_OPS='http://127.0.0.1:$(replica_port a 18090),http://127.0.0.1:$(replica_port b 18090)'
ENV
}

up() {
	local start=$SECONDS n r failed=()
	mkdir -p "$C"
	build
	cluster_id >/dev/null # made once, before the three nodes read it at the same time
	declare -A bg
	for n in "${KAFKA_NODES[@]}"; do
		# The nodes wait for each other (a quorum of controllers): start them together.
		kafka_ctl "$n" up &
		bg[$n]=$!
	done
	clickhouse_ctl up || failed+=(clickhouse)
	sources
	policies
	tokens
	for n in "${!bg[@]}"; do
		wait "${bg[$n]}" || failed+=("kafka-$n")
	done
	[ ${#failed[@]} -eq 0 ] || die "could not start: ${failed[*]} (see the lines above)"
	for d in "${DEPTS[@]}"; do start_one "conn-$d"; done
	for r in "${REPLICAS[@]}"; do start_one "exchange-$r"; done
	write_env
	for r in "${REPLICAS[@]}"; do
		PIDFILE="$C/exchange-$r/pid" wait_until 300 "exchange-$r ready" ready_exchange "$r" || {
			show_log "$C/exchange-$r/log"
			die "exchange-$r did not become ready within 5 minutes (see .local/cluster/exchange-$r/log)"
		}
	done
	log "cluster ready in $((SECONDS - start))s: brokers $BROKERS; addresses in .local/cluster/env.sh"
}

down() {
	local name n failed=()
	# Producers and consumers first, the brokers and ClickHouse last; the brokers
	# together: one stopped after the others waits in vain for a controller quorum.
	for name in conn-gab conn-scjgj conn-zrzyb conn-tjj exchange-a exchange-b clickhouse; do
		stop_one "$name" || failed+=("$name")
	done
	declare -A bg
	for n in "${KAFKA_NODES[@]}"; do
		kafka_ctl "$n" down &
		bg[$n]=$!
	done
	for n in "${!bg[@]}"; do
		wait "${bg[$n]}" || failed+=("kafka-$n")
	done
	[ ${#failed[@]} -eq 0 ] || die "could not stop: ${failed[*]}"
}

status() {
	local name rc=0 pid
	for name in "${COMPONENTS[@]}"; do
		if pid="$(pid_of "$name")"; then
			log "$name running (pid $pid)"
		else
			log "$name not running"
			rc=1
		fi
	done
	return $rc
}

reset() {
	down
	local d
	if "$HERE/mariadb.sh" status >/dev/null 2>&1; then
		for d in "${DEPTS[@]}"; do
			mariadb -h 127.0.0.1 -P "$MARIADB_PORT" -u govx -pgovx -e "DROP DATABASE IF EXISTS chaos_$d" 2>/dev/null ||
				mysql -h 127.0.0.1 -P "$MARIADB_PORT" -u govx -pgovx -e "DROP DATABASE IF EXISTS chaos_$d"
		done
	fi
	rm -rf "$C"
	log "removed ${C#"$REPO"/} and the chaos_<dept> databases"
}

# One cluster command at a time: a chaos run restarting a part must not race an up.
mkdir -p "$C"
exec 9>"$C/.lock"
flock -w 900 9 || die "another cluster.sh has held .local/cluster/.lock for 15 minutes"

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
reset) reset ;;
start)
	[ -x "$GOVX" ] || build
	start_one "${2:?usage: cluster.sh start NAME}"
	;;
stop) stop_one "${2:?usage: cluster.sh stop NAME}" ;;
pid) pid_of "${2:?usage: cluster.sh pid NAME}" ;;
*)
	echo "usage: $0 up|down|status|reset|start NAME|stop NAME|pid NAME" >&2
	exit 2
	;;
esac
