#!/usr/bin/env bash
# Real backing services for the production configuration and the integration tests:
#   MariaDB (Debian package, own datadir) on 127.0.0.1:3306, an Elasticsearch single node on 127.0.0.1:9200 and
#   Redis (Debian package; the Celery broker) on 127.0.0.1:6379.
#
#   scripts/services.sh start [mariadb|elasticsearch|redis]   idempotent: a running service is left alone
#   scripts/services.sh start elasticsearch --es-nodes 3       a 3-node cluster on ES_PORT..ES_PORT+2 instead (its own
#                                     state, so with ES_PORT=9250 it runs beside the single node; pass the same
#                                     --es-nodes and ES_PORT to stop/status/env; `start` again restarts a lost node)
#   scripts/services.sh stop  [mariadb|elasticsearch|redis]
#   scripts/services.sh status
#   scripts/services.sh env            prints `export DATABASE_URL=... ELASTICSEARCH_URL=... CELERY_BROKER_URL=...`
#
# Must run as root (apt-get, service users). State lives in <project>/.services/ (git-ignored): downloads,
# the unpacked Elasticsearch, data and logs. Elasticsearch is the `integ-test-zip` distribution from Maven Central
# (no bundled JDK, modules: x-pack-core/-security, transport-netty4, apm only — no painless, reindex/_by_query,
# analysis-common, mapper-extras, ingest). 9.x needs Java 21+; without one the 8.19 line on Java 17 is used.
#
# Overrides (env): ES_VERSION, ES_JAVA_HOME, ES_HEAP (512m), ES_PORT (9200), ES_START_TIMEOUT (120),
#                  DB_NAME/DB_USER/DB_PASSWORD (catalog), DB_PORT (3306), REDIS_PORT (6379),
#                  SERVICES_DIR (<project>/.services).
set -euo pipefail

ES_NODES="${ES_NODES:-1}"
positional=()
while (( $# )); do
  case "$1" in
    --es-nodes) ES_NODES="${2:-}"; shift 2 || shift;;
    --es-nodes=*) ES_NODES="${1#*=}"; shift;;
    *) positional+=("$1"); shift;;
  esac
done
set -- "${positional[@]}"
[[ "$ES_NODES" =~ ^[1-9]$ ]] || { echo "services.sh: --es-nodes takes 1..9" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES_DIR="${SERVICES_DIR:-$ROOT/.services}"
DL_DIR="$SERVICES_DIR/downloads"

ES_VERSION_9="9.5.4"    # newest 9.x integ-test-zip that Maven Central serves (9.5.5+ / 9.6.x are not published there)
ES_VERSION_8="8.19.21"  # fallback for machines with Java 17..20 only
ES_GROUP="org.elasticsearch.distribution.integ-test-zip"
MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
ES_PORT="${ES_PORT:-9200}"
ES_HEAP="${ES_HEAP:-512m}"
ES_START_TIMEOUT="${ES_START_TIMEOUT:-120}"
ES_USER=elasticsearch

DB_NAME="${DB_NAME:-catalog}"
DB_USER="${DB_USER:-catalog}"
DB_PASSWORD="${DB_PASSWORD:-catalog}"
DB_PORT="${DB_PORT:-3306}"
DB_START_TIMEOUT="${DB_START_TIMEOUT:-60}"

REDIS_PORT="${REDIS_PORT:-6379}"

DATABASE_URL="mysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$DB_PORT/$DB_NAME"
ES_URLS=() ES_TRANSPORTS=() ES_NAMES=()  # node I: HTTP port ES_PORT+I-1, transport port that + 100
for ((i = 0; i < ES_NODES; i++)); do
  ES_URLS+=("http://127.0.0.1:$((ES_PORT + i))"); ES_TRANSPORTS+=("127.0.0.1:$((ES_PORT + 100 + i))"); ES_NAMES+=("node-$((i + 1))")
done
ELASTICSEARCH_URL="$(IFS=,; echo "${ES_URLS[*]}")"  # every node's: the client fails over between them
CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"

json_list() { local sep="" item; for item in "$@"; do printf '%s"%s"' "$sep" "$item"; sep=", "; done; }
die() { echo "services.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# pid_alive PIDFILE COMM: prints the pid when the file names a live process whose command is COMM
pid_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(tr -dc '0-9' <"$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
  echo "$pid"
}

# State (data, logs, unpacked ES) must be reachable by the mysql / elasticsearch users. If the project sits under a
# directory they cannot traverse (e.g. /root), keep that state under /var/lib instead; downloads stay in .services.
world_traversable() {
  local d="$1"
  while [[ "$d" != "/" ]]; do
    [[ "$(stat -c %A "$d")" == *x ]] || return 1
    d="$(dirname "$d")"
  done
}
STATE_DIR="$SERVICES_DIR"
if ! world_traversable "$ROOT"; then
  STATE_DIR="/var/lib/project-services/$(printf %s "$ROOT" | md5sum | cut -c1-12)"
fi
DB_DIR="$STATE_DIR/mariadb"
ES_DIST="$STATE_DIR/elasticsearch"  # unpacked distributions, shared by the single node and any cluster
if (( ES_NODES == 1 )); then
  ES_BASE="$ES_DIST"
else  # a cluster keeps its own state, so it can run beside the single node (on other ports)
  ES_BASE="$STATE_DIR/elasticsearch-cluster-$ES_PORT"
fi
DB_CNF="$DB_DIR/my.cnf"
DB_PIDFILE="$DB_DIR/run/mariadbd.pid"
DB_SOCKET="$DB_DIR/run/mysqld.sock"
if (( ${#DB_SOCKET} > 100 )); then  # unix socket paths are limited to 107 bytes
  DB_SOCKET="/run/mysqld/project-$(printf %s "$ROOT" | md5sum | cut -c1-12).sock"
fi

require_root() { [[ "$(id -u)" == 0 ]] || die "run as root (needs apt-get and the mysql/$ES_USER users)"; }

# --------------------------------------------------------------------------------------------------- apt helpers
apt_install() {  # installs packages; never lets a package's postinst start a system daemon
  local created_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  fi
  [[ -n "$created_policy" ]] && rm -f /usr/sbin/policy-rc.d
  (( rc == 0 )) || die "apt-get install $* failed"
}
ensure_debs() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  (( ${#missing[@]} == 0 )) || apt_install "${missing[@]}"
}
ensure_cmd() {  # ensure_cmd COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# --------------------------------------------------------------------------------------------------------- MariaDB
db_sql() { mariadb --no-defaults --protocol=socket --socket="$DB_SOCKET" -uroot "$@"; }

db_write_cnf() {
  mkdir -p "$DB_DIR/data" "$DB_DIR/run" "$DB_DIR/logs" "$(dirname "$DB_SOCKET")"
  cat >"$DB_CNF" <<EOF
# generated by scripts/services.sh
[mysqld]
user                   = mysql
datadir                = $DB_DIR/data
socket                 = $DB_SOCKET
pid-file               = $DB_PIDFILE
port                   = $DB_PORT
bind-address           = 127.0.0.1
log-error              = $DB_DIR/logs/mariadb.err
character-set-server   = utf8mb4
collation-server       = utf8mb4_unicode_ci
skip-name-resolve
innodb_buffer_pool_size = 256M
max_connections        = 200
[client]
socket                 = $DB_SOCKET
EOF
  chown -R mysql:mysql "$DB_DIR/data" "$DB_DIR/run" "$DB_DIR/logs"
  chown mysql:mysql "$(dirname "$DB_SOCKET")" 2>/dev/null || true
}

db_start() {
  local t0 pid
  t0="$(now)"
  if pid="$(pid_alive "$DB_PIDFILE" mariadbd)"; then
    echo "mariadb: already running (pid $pid) $DATABASE_URL"; return 0
  fi
  ensure_debs mariadb-server libmariadb-dev pkg-config
  if port_open "$DB_PORT"; then
    if mariadb --no-defaults -h127.0.0.1 -P"$DB_PORT" -u"$DB_USER" -p"$DB_PASSWORD" -e 'SELECT 1' "$DB_NAME" >/dev/null 2>&1; then
      echo "mariadb: port $DB_PORT is served by another server where $DB_USER can log in; using it $DATABASE_URL"
      return 0
    fi
    die "mariadb: port $DB_PORT is taken by another process (not started by this script); stop it first"
  fi
  db_write_cnf
  if [[ ! -d "$DB_DIR/data/mysql" ]]; then
    rm -rf "${DB_DIR:?}/data" && mkdir -p "$DB_DIR/data" && chown mysql:mysql "$DB_DIR/data"
    mariadb-install-db --defaults-file="$DB_CNF" --auth-root-authentication-method=socket --skip-test-db \
      >"$DB_DIR/logs/install-db.log" 2>&1 || { tail -n 30 "$DB_DIR/logs/install-db.log" >&2; die "mariadb-install-db failed"; }
  fi
  rm -f "$DB_PIDFILE"
  setsid mariadbd --defaults-file="$DB_CNF" </dev/null >>"$DB_DIR/logs/mariadbd.out" 2>&1 &
  local deadline=$((SECONDS + DB_START_TIMEOUT))
  until mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping >/dev/null 2>&1; do
    if (( SECONDS >= deadline )) || ! kill -0 $! 2>/dev/null; then
      tail -n 30 "$DB_DIR/logs/mariadb.err" 2>/dev/null | cut -c1-400 >&2 || true
      kill -TERM $! 2>/dev/null || true
      die "mariadb: not ready after ${DB_START_TIMEOUT}s (log: $DB_DIR/logs/mariadb.err)"
    fi
    sleep 0.2
  done
  if [[ ! -e "$DB_DIR/data/.tz-loaded" ]]; then  # named time zones for Django's USE_TZ date lookups
    mariadb-tzinfo-to-sql /usr/share/zoneinfo 2>/dev/null | db_sql mysql && touch "$DB_DIR/data/.tz-loaded"
  fi
  # Django's test runner creates and drops test_<name> (and test_<name>_N with --parallel / xdist).
  db_sql <<EOF
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'%', '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`test\\_$DB_NAME%\`.* TO '$DB_USER'@'%', '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
  echo "mariadb: started in $(since "$t0") (pid $(pid_alive "$DB_PIDFILE" mariadbd || echo '?')) $DATABASE_URL"
}

db_stop() {
  local pid
  if ! pid="$(pid_alive "$DB_PIDFILE" mariadbd)"; then echo "mariadb: not running"; return 0; fi
  mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  echo "mariadb: stopped"
}

db_status() {
  local pid
  if pid="$(pid_alive "$DB_PIDFILE" mariadbd)"; then
    echo "mariadb: running (pid $pid, $(db_sql -N -e 'SELECT VERSION()' 2>/dev/null || echo '?')) $DATABASE_URL data=$DB_DIR/data"
  elif port_open "$DB_PORT"; then
    echo "mariadb: not started by this script, but port $DB_PORT is open"
  else
    echo "mariadb: stopped"
  fi
}

# --------------------------------------------------------------------------------------------------- Elasticsearch
java_major() {  # java_major JAVA_HOME -> prints the feature version (17, 21, 25, ...)
  local v=""
  if [[ -r "$1/release" ]]; then v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release")"; fi
  if [[ -z "$v" && -x "$1/bin/java" ]]; then
    v="$("$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  fi
  [[ "$v" == 1 ]] && v=8
  echo "${v:-0}"
}
best_java_home() {  # prints "MAJOR HOME" of the newest JDK/JRE found, or nothing
  local h m best="" bestm=0 cands=()
  [[ -n "${JAVA_HOME:-}" ]] && cands+=("$JAVA_HOME")
  for h in /usr/lib/jvm/*/ /opt/java/*/ /opt/jdk*/; do [[ -d "$h" ]] && cands+=("${h%/}"); done
  if command -v java >/dev/null 2>&1; then cands+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"); fi
  for h in "${cands[@]}"; do
    [[ -x "$h/bin/java" ]] || continue
    m="$(java_major "$h")"
    if (( m > bestm )); then bestm="$m"; best="$h"; fi
  done
  [[ -n "$best" ]] && echo "$bestm $best"
  return 0
}

es_choose() {  # sets ES_VERSION and ES_JAVA_HOME
  local found major
  if [[ -n "${ES_JAVA_HOME:-}" ]]; then
    major="$(java_major "$ES_JAVA_HOME")"
  else
    found="$(best_java_home)"
    if [[ -z "$found" || "${found%% *}" -lt 17 ]]; then
      apt_install openjdk-17-jre-headless
      found="$(best_java_home)"
      [[ -n "$found" ]] || die "no Java found after installing openjdk-17-jre-headless"
    fi
    major="${found%% *}"; ES_JAVA_HOME="${found#* }"
  fi
  if [[ -z "${ES_VERSION:-}" ]]; then
    if (( major >= 21 )); then ES_VERSION="$ES_VERSION_9"; else ES_VERSION="$ES_VERSION_8"; fi
  fi
  local need=17
  [[ "${ES_VERSION%%.*}" -ge 9 ]] && need=21
  (( major >= need )) || die "elasticsearch $ES_VERSION needs Java $need+, found Java $major at $ES_JAVA_HOME (set ES_JAVA_HOME or ES_VERSION=$ES_VERSION_8)"
}

es_fetch() {  # download (cached) and unpack ES_VERSION into $ES_HOME
  local zip="$DL_DIR/elasticsearch-$ES_VERSION.zip"
  ES_HOME="$ES_DIST/$ES_VERSION/home"
  [[ -x "$ES_HOME/bin/elasticsearch" ]] && return 0
  mkdir -p "$DL_DIR" "$ES_DIST/$ES_VERSION"
  if [[ ! -s "$zip" ]]; then
    ensure_cmd mvn maven
    local tmp="$DL_DIR/.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    if ! mvn -q -B "$MVN_DEP_PLUGIN:copy" -Dmdep.useBaseVersion=true \
        "-Dartifact=$ES_GROUP:elasticsearch:$ES_VERSION:zip" "-DoutputDirectory=$tmp" >"$tmp/mvn.log" 2>&1; then
      tail -n 20 "$tmp/mvn.log" >&2
      rm -rf "$tmp"
      die "could not download $ES_GROUP:elasticsearch:$ES_VERSION:zip from Maven Central"
    fi
    mv "$tmp/elasticsearch-$ES_VERSION.zip" "$zip"
    rm -rf "$tmp"
  fi
  ensure_cmd unzip unzip
  local tmp="$ES_DIST/$ES_VERSION/.unpack.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! unzip -q "$zip" -d "$tmp"; then
    rm -rf "$tmp" "$zip"
    die "corrupt download $zip (deleted; run again)"
  fi
  rm -rf "$ES_HOME"
  mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
  rm -rf "$tmp"
}

# A node is selected with es_node I (1-based); the es_* functions below act on the selected node. The single node
# keeps the historical layout (<state>/elasticsearch/<version>/{config,data,logs}); node I of a cluster lives in
# <state>/elasticsearch-cluster-<port>/<version>/node-I, with HTTP port ES_PORT+I-1 and transport port that + 100.
es_node() {
  ES_NODE="$1"
  ES_NODE_PORT=$((ES_PORT + $1 - 1))
  ES_NODE_URL="http://127.0.0.1:$ES_NODE_PORT"
  if (( ES_NODES == 1 )); then
    ES_PIDFILE="$ES_BASE/elasticsearch.pid"
    ES_PGIDFILE="$ES_BASE/launcher.pgid"  # process group of launcher + node (the node writes its pidfile only once started)
  else
    ES_PIDFILE="$ES_BASE/node-$1.pid"
    ES_PGIDFILE="$ES_BASE/node-$1.pgid"
  fi
}
es_node_dir() { if (( ES_NODES == 1 )); then echo "$ES_BASE/$ES_VERSION"; else echo "$ES_BASE/$ES_VERSION/node-$ES_NODE"; fi; }

es_configure() {
  local d; d="$(es_node_dir)"
  ES_CONF="$d/config"
  mkdir -p "$ES_CONF" "$d/data" "$d/logs" "$d/tmp"
  local f
  for f in "$ES_HOME"/config/*; do  # jvm.options, log4j2.properties, ... (never overwrite the node's keystore)
    [[ -e "$ES_CONF/$(basename "$f")" ]] || cp -r "$f" "$ES_CONF/"
  done
  {
    echo "# generated by scripts/services.sh"
    echo "node.name: node-$ES_NODE"
    echo "network.host: 127.0.0.1"
    echo "http.port: $ES_NODE_PORT"
    if (( ES_NODES == 1 )); then
      echo "cluster.name: project-services"
      echo "discovery.type: single-node"
    else
      echo "cluster.name: project-services-$ES_PORT"
      echo "transport.port: $((ES_NODE_PORT + 100))"
      echo "discovery.seed_hosts: [$(json_list "${ES_TRANSPORTS[@]}")]"
      # Only read when the cluster forms for the first time (afterwards the nodes know each other from their data).
      echo "cluster.initial_master_nodes: [$(json_list "${ES_NAMES[@]}")]"
    fi
    echo "path.data: $d/data"
    echo "path.logs: $d/logs"
    echo "cluster.routing.allocation.disk.threshold_enabled: false"
    # Since 8.19 a node also stops starting merges when its disk is 95 % full (indices.merge.disk.watermark.high):
    # on a busy CI disk every force merge then waits for ever. A dev/CI node does not guard the disk (as above).
    if [[ "$(printf '%s\n' 8.19 "$ES_VERSION" | sort -V | head -n 1)" == 8.19 ]]; then
      echo "indices.merge.disk.check_interval: 0s"
    fi
    # x-pack settings only exist when the module ships (unknown settings abort start-up)
    if [[ -d "$ES_HOME/modules/x-pack-security" ]]; then
      echo "xpack.security.enabled: false"
    fi
  } >"$ES_CONF/elasticsearch.yml"
  id -u "$ES_USER" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$ES_USER"
  chown -R "$ES_USER:$ES_USER" "$ES_CONF" "$d/data" "$d/logs" "$d/tmp"
  mkdir -p "$ES_BASE" && chown "$ES_USER:$ES_USER" "$ES_BASE"
}

es_pgid() {  # process group of the launcher and node started by us, while any member lives
  local pgid
  pgid="$(cat "$ES_PGIDFILE" 2>/dev/null | tr -dc '0-9')"
  [[ -n "$pgid" ]] && kill -0 -- "-$pgid" 2>/dev/null && echo "$pgid"
}
es_pid() {  # pid of the selected node; while it starts (no pidfile yet) the newest process of its group
  local pgid
  if pid_alive "$ES_PIDFILE" java; then return 0; fi
  pgid="$(es_pgid)" || return 1
  pgrep -g "$pgid" | tail -n 1
}
es_any_pid() { local i; for ((i = 1; i <= ES_NODES; i++)); do es_node "$i"; es_pid && return 0; done; return 1; }

# es_healthy [TIMEOUT]: the cluster, asked through the selected node, has all its nodes and is at least yellow
es_healthy() {
  curl -fsS -m 5 "$ES_NODE_URL/_cluster/health?wait_for_status=yellow&wait_for_nodes=$ES_NODES&timeout=${1:-1s}" 2>/dev/null
}
es_wait_healthy() {  # es_wait_healthy DEADLINE_SECONDS -> 0 when healthy before SECONDS reaches it
  es_node 1
  until es_healthy >/dev/null; do
    (( SECONDS < $1 )) && es_any_pid >/dev/null || return 1
    es_node 1
    sleep 0.5
  done
}

es_launch() {  # starts the selected node in the background (the caller waits for the cluster)
  local d; d="$(es_node_dir)"
  es_configure
  rm -f "$ES_PIDFILE"
  : >"$d/logs/launcher.log"; chown "$ES_USER:$ES_USER" "$d/logs/launcher.log"
  # -d: the launcher exits once the node has started; the node writes its pid to $ES_PIDFILE
  setsid runuser -u "$ES_USER" -- env -u JAVA_HOME -u JAVA_TOOL_OPTIONS -u _JAVA_OPTIONS \
    ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$ES_CONF" ES_TMPDIR="$d/tmp" \
    ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP ${ES_EXTRA_JAVA_OPTS:-}" \
    "$ES_HOME/bin/elasticsearch" -d -p "$ES_PIDFILE" </dev/null >>"$d/logs/launcher.log" 2>&1 &
  echo "$!" >"$ES_PGIDFILE"  # setsid made the launcher a process-group leader; the node stays in its group
}

es_start() {
  local t0 pid i launched=() deadline
  t0="$(now)"
  ensure_cmd curl curl
  for ((i = 1; i <= ES_NODES; i++)); do
    es_node "$i"
    es_pid >/dev/null && continue
    if port_open "$ES_NODE_PORT"; then
      if (( ES_NODES == 1 )) && es_healthy >/dev/null; then
        echo "elasticsearch: port $ES_NODE_PORT is served by another healthy node; using it $ELASTICSEARCH_URL"; return 0
      fi
      die "elasticsearch: port $ES_NODE_PORT is taken by another process (not started by this script); stop it first"
    fi
    launched+=("$i")
  done
  if (( ${#launched[@]} == 0 )); then
    es_wait_healthy $((SECONDS + ES_START_TIMEOUT)) || die "elasticsearch: running but not healthy"
    echo "elasticsearch: already running ($ES_NODES node(s), $(cat "$ES_BASE/version" 2>/dev/null || echo '?')) $ELASTICSEARCH_URL"; return 0
  fi
  es_choose
  es_fetch
  mkdir -p "$ES_BASE" && echo "$ES_VERSION" >"$ES_BASE/version"
  for i in "${launched[@]}"; do es_node "$i"; es_launch; done
  deadline=$((SECONDS + ES_START_TIMEOUT * (ES_NODES > 1 ? 2 : 1)))  # a cluster starts its JVMs side by side
  if ! es_wait_healthy "$deadline"; then
    for i in "${launched[@]}"; do
      es_node "$i"
      local d; d="$(es_node_dir)"
      {
        echo "--- node-$i: tail of $d/logs/launcher.log"; tail -n 15 "$d/logs/launcher.log" 2>/dev/null | cut -c1-400
        echo "--- node-$i: tail of $d/logs/project-services*.log"; tail -n 25 "$d"/logs/project-services*.log 2>/dev/null | cut -c1-400
      } >&2 || true
    done
    es_stop >/dev/null
    die "elasticsearch $ES_VERSION: not healthy (yellow, $ES_NODES node(s)) in time (ES_START_TIMEOUT=$ES_START_TIMEOUT s per node)"
  fi
  echo "elasticsearch: started node(s) ${launched[*]} in $(since "$t0") ($ES_VERSION on Java $(java_major "$ES_JAVA_HOME")) $ELASTICSEARCH_URL"
}

es_stop() {
  local i
  for ((i = 1; i <= ES_NODES; i++)); do es_node "$i"; es_stop_node; done
}
es_stop_node() {
  local pid pgid name="elasticsearch"
  (( ES_NODES > 1 )) && name="elasticsearch node-$ES_NODE"
  pid="$(pid_alive "$ES_PIDFILE" java)" || pid=""
  pgid="$(es_pgid)" || pgid=""
  if [[ -z "$pid$pgid" ]]; then echo "$name: not running"; rm -f "$ES_PIDFILE" "$ES_PGIDFILE"; return 0; fi
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  [[ -n "$pgid" ]] && kill -TERM -- "-$pgid" 2>/dev/null || true  # also a launcher still waiting for the node
  local deadline=$((SECONDS + 60))
  while { [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; } || { [[ -n "$pgid" ]] && kill -0 -- "-$pgid" 2>/dev/null; }; do
    if (( SECONDS >= deadline )); then
      [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
      [[ -n "$pgid" ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$ES_PIDFILE" "$ES_PGIDFILE"
  echo "$name: stopped"
}

es_status() {
  local pid health i name
  for ((i = 1; i <= ES_NODES; i++)); do
    es_node "$i"
    name="elasticsearch"; (( ES_NODES > 1 )) && name="elasticsearch node-$i"
    if pid="$(es_pid)"; then
      health="$(curl -fsS -m 5 "$ES_NODE_URL/_cluster/health" 2>/dev/null | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' || true)"
      echo "$name: running (pid $pid, $(cat "$ES_BASE/version" 2>/dev/null || echo '?'), health ${health:-unreachable}) $ES_NODE_URL"
    elif port_open "$ES_NODE_PORT"; then
      echo "$name: not started by this script, but port $ES_NODE_PORT is open"
    else
      echo "$name: stopped"
    fi
  done
}

# What a hung or failing test run needs to be diagnosed afterwards (CI prints it when a step fails): the tasks still
# running and queued, busy thread pools, the hottest threads and the end of each node's log.
es_diagnose() {
  local i d path
  ES_VERSION="${ES_VERSION:-$(cat "$ES_BASE/version" 2>/dev/null || echo unknown)}"
  for ((i = 1; i <= ES_NODES; i++)); do
    es_node "$i"; d="$(es_node_dir)"
    echo "=== elasticsearch node-$i $ES_NODE_URL"
    for path in "_cluster/health?pretty" "_cat/tasks?v&detailed" "_cluster/pending_tasks?pretty" \
                "_cat/thread_pool?v&h=name,active,queue,rejected,completed" "_nodes/_local/hot_threads?threads=5"; do
      echo "--- GET /$path"; curl -sS -m 10 "$ES_NODE_URL/$path" 2>&1 | head -n 150 | cut -c1-300
    done
    echo "--- tail of $d/logs/project-services*.log"; tail -n 40 "$d"/logs/project-services*.log 2>/dev/null | cut -c1-400
  done
}

# ----------------------------------------------------------------------------------------------------------- Redis
# The Celery broker. Append-only file on: a queued indexing task survives a broker restart. No RDB snapshots.
REDIS_DIR="$STATE_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"

redis_pong() {  # a Redis server answers on the port
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 reply <&3 || true
  exec 3<&- 3>&-
  [[ "$reply" == "+PONG"* ]]
}

redis_start() {
  local pid t0
  if pid="$(pid_alive "$REDIS_PIDFILE" redis-server)"; then echo "redis: already running (pid $pid)"; return 0; fi
  if port_open "$REDIS_PORT"; then
    redis_pong || die "redis: port $REDIS_PORT is taken by something that is not Redis"
    echo "redis: port $REDIS_PORT is served by another Redis; using it $CELERY_BROKER_URL"
    return 0
  fi
  ensure_cmd redis-server redis-server
  mkdir -p "$REDIS_DIR"
  t0="$(now)"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes --daemonize yes --dir "$REDIS_DIR" \
    --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_DIR/redis.log" --appendonly yes --save "" >/dev/null
  local deadline=$((SECONDS + 30))
  until port_open "$REDIS_PORT"; do
    (( SECONDS < deadline )) || die "redis: not listening after 30 s (see $REDIS_DIR/redis.log)"
    sleep 0.1
  done
  echo "redis: started in $(since "$t0") (pid $(pid_alive "$REDIS_PIDFILE" redis-server || echo '?')) $CELERY_BROKER_URL"
}

redis_stop() {
  local pid
  if ! pid="$(pid_alive "$REDIS_PIDFILE" redis-server)"; then echo "redis: not running"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.1
  done
  echo "redis: stopped"
}

redis_status() {
  local pid
  if pid="$(pid_alive "$REDIS_PIDFILE" redis-server)"; then echo "redis: running (pid $pid) $CELERY_BROKER_URL"
  elif port_open "$REDIS_PORT"; then echo "redis: not started by this script, but port $REDIS_PORT is open"
  else echo "redis: stopped"; fi
}

# ------------------------------------------------------------------------------------------------------------ main
cmd="${1:-}"; what="${2:-all}"
case "$what" in all|mariadb|elasticsearch|redis) ;; *) die "unknown service '$what' (mariadb|elasticsearch|redis)";; esac
wants() { [[ "$what" == all || "$what" == "$1" ]]; }
case "$cmd" in
  start)
    require_root
    mkdir -p "$SERVICES_DIR" "$STATE_DIR"
    if wants mariadb; then db_start; fi
    if wants elasticsearch; then es_start; fi
    if wants redis; then redis_start; fi
    ;;
  stop)
    require_root
    if wants redis; then redis_stop; fi
    if wants elasticsearch; then es_stop; fi
    if wants mariadb; then db_stop; fi
    ;;
  status)
    if wants mariadb; then db_status; fi
    if wants elasticsearch; then es_status; fi
    if wants redis; then redis_status; fi
    ;;
  diagnose)
    if wants elasticsearch; then es_diagnose; fi
    ;;
  env)
    echo "export DATABASE_URL=$DATABASE_URL"
    echo "export ELASTICSEARCH_URL=$ELASTICSEARCH_URL"
    echo "export CELERY_BROKER_URL=$CELERY_BROKER_URL"
    ;;
  *)
    echo "usage: $0 start|stop|status|env|diagnose [mariadb|elasticsearch|redis] [--es-nodes N]" >&2; exit 2;;
esac
