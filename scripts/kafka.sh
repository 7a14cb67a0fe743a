#!/usr/bin/env bash
# Apache Kafka for churnwatch's tests, trials and harness: installed once from
# Maven Central into the cache (no tarball, no Docker), run with `java` in KRaft
# mode on loopback.
#
#   scripts/kafka.sh install                 resolve the broker's classpath once
#   scripts/kafka.sh start DIR               one node (broker + controller);
#                                            prints the bootstrap address
#   scripts/kafka.sh start-cluster DIR       three nodes, each its own process
#                                            and log directory (RF 3, min ISR 2)
#   scripts/kafka.sh stop DIR                stop whatever DIR holds (SIGTERM,
#                                            then SIGKILL after 20 s)
#   scripts/kafka.sh bootstrap DIR           print the bootstrap address
#   scripts/kafka.sh run DIR                 one node in the foreground (exec
#                                            java): the caller owns the process
#                                            (the tests: their own pid to kill,
#                                            restart = `run DIR` again, on the
#                                            same ports and log directory)
#   scripts/kafka.sh prepare-cluster DIR HOST:PORT:CPORT...
#                                            write and format one node per
#                                            address (broker port, controller
#                                            port), start none: for a caller
#                                            that runs each node itself (the
#                                            cluster fault trials, one network
#                                            namespace per node)
#   scripts/kafka.sh run-node DIR N          node N of a prepared cluster in
#                                            the foreground (exec java)
#   scripts/kafka.sh quorum DIR [elect-preferred]
#                                            the KRaft quorum (Admin API):
#                                            leader=ID epoch=E hw=H voters=...;
#                                            elect-preferred first gives each
#                                            partition back to its preferred
#                                            leader
#
# DIR holds, per node N: nodeN/server.properties, nodeN/data, nodeN/log
# (stdout and the broker's own log), nodeN/pid; and DIR/bootstrap. Logs stay in
# DIR after stop, so a failed run can be read afterwards.
#
# Environment: KAFKA_VERSION (pinned below), CHURNWATCH_CACHE,
# KAFKA_HEAP (default -Xms256m -Xmx768m per node: the machine is 2 cores and
# 24 GiB and also builds and tests), JAVA (default `java` on PATH),
# KAFKA_READY_SECS (default 60), KAFKA_EXTRA_PROPERTIES (lines appended to
# each node's server.properties, so they override the defaults; @PORT@ and
# @CONTROLLER_PORT@ stand for the node's ports, e.g. a SASL listener),
# KAFKA_FORMAT_ARGS (extra arguments to the storage format, e.g.
# `--add-scram SCRAM-SHA-256=[name=u,password=p]`), KAFKA_CDS (default 1; 0
# starts the JVMs without the class-data archives below).
#
# Start-up is mostly the JVM loading and verifying some 6,000 classes, three
# times over on two cores. The first start after install records them once
# per JDK into AppCDS archives (one for the storage format, one for the
# broker; ~10 s, in the cache beside the classpath), which later JVMs map
# instead of loading: a format in ~0.5 s instead of ~2 s, a broker ready in
# about half the time. A JDK that does not accept an archive just ignores it.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
CACHE="${CHURNWATCH_CACHE:-$HOME/.cache/churnwatch}"
HOME_DIR="$CACHE/kafka/$KAFKA_VERSION"
LIBS="$HOME_DIR/libs"
HERE="$(cd "$(dirname "$0")" && pwd)"
JAVA="${JAVA:-java}"
# Three of these beside cargo builds: 768 MiB is ample for the tests' topics,
# and the heap starts small so that idle nodes do not hold memory.
HEAP="${KAFKA_HEAP:--Xms256m -Xmx768m}"
READY_SECS="${KAFKA_READY_SECS:-60}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

install() {
  if [ -f "$LIBS/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (Apache Maven is needed once, to resolve the broker from Maven Central)"
  echo "kafka.sh: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION into $LIBS (once)" >&2
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  local work
  work="$(mktemp -d)"
  (cd "$work" && mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$LIBS") >&2 \
    || { rm -rf "$work"; die "mvn could not resolve kafka_2.13:$KAFKA_VERSION"; }
  rm -rf "$work"
  [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing after resolve"
  touch "$LIBS/.complete"
}

# cds_prepare: the AppCDS archives for this JDK and classpath, made once
# (under a lock: test binaries start brokers at the same time) by running a
# format and a broker to ready with -XX:ArchiveClassesAtExit. Failure is not
# fatal: the JVMs then start without archives.
CDS_DIR=""
cds_prepare() {
  [ "${KAFKA_CDS:-1}" = 1 ] || return 0
  local key
  key="$("$JAVA" -version 2>&1 | cksum | cut -d' ' -f1)"
  CDS_DIR="$HOME_DIR/cds/$key"
  [ -f "$CDS_DIR/broker.jsa" ] && return 0
  [ -f "$CDS_DIR/.failed" ] && { CDS_DIR=""; return 0; }
  mkdir -p "$CDS_DIR"
  (
    flock 9
    [ -f "$CDS_DIR/broker.jsa" ] && exit 0
    echo "kafka.sh: recording the JVM's class-data archives in $CDS_DIR (once per JDK, ~10 s)" >&2
    local work ports
    work="$(mktemp -d)"
    read -ra ports <<<"$(free_ports 2)"
    KAFKA_EXTRA_PROPERTIES="" write_node "$work/n" 1 "${ports[0]}" "${ports[1]}" "1@127.0.0.1:${ports[1]}" 1
    "$JAVA" -XX:ArchiveClassesAtExit="$work/format.jsa" -Xlog:cds=off -Xlog:cds+dynamic=off \
      -Xmx256m -XX:TieredStopAtLevel=1 -cp "$LIBS/*" kafka.tools.StorageTool format \
      -t "$(cluster_uuid)" -c "$work/n/server.properties" >"$work/n/log/format.log" 2>&1 \
      || { touch "$CDS_DIR/.failed"; rm -rf "$work"; exit 0; }
    # shellcheck disable=SC2046
    "$JAVA" -XX:ArchiveClassesAtExit="$work/broker.jsa" -Xlog:cds=off -Xlog:cds+dynamic=off \
      $HEAP -XX:+UseG1GC -Djava.awt.headless=true -Dkafka.logs.dir="$work/n/log" \
      -Dlog4j2.configurationFile="$work/n/log4j2.properties" -cp "$LIBS/*" kafka.Kafka \
      "$work/n/server.properties" >>"$work/n/log/stdout.log" 2>&1 </dev/null &
    local pid=$! deadline=$((SECONDS + 120))
    until grep -q "Kafka Server started" "$work/n/log/server.log" 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then break; fi
      sleep 0.2
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -s "$work/broker.jsa" ] && [ -s "$work/format.jsa" ]; then
      mv "$work/format.jsa" "$CDS_DIR/format.jsa"
      mv "$work/broker.jsa" "$CDS_DIR/broker.jsa"
    else
      touch "$CDS_DIR/.failed"
    fi
    rm -rf "$work"
  ) 9>"$HOME_DIR/cds/.lock"
  [ -f "$CDS_DIR/broker.jsa" ] || CDS_DIR=""
}

# cds_args WHICH: the JVM flag that maps archive WHICH (format or broker).
cds_args() {
  [ -n "$CDS_DIR" ] && [ -f "$CDS_DIR/$1.jsa" ] && echo "-XX:SharedArchiveFile=$CDS_DIR/$1.jsa -Xlog:cds=off -Xlog:cds+dynamic=off"
  return 0
}

# A KRaft cluster id (what `kafka-storage.sh random-uuid` prints: 16 random
# bytes, URL-safe base64 without padding, not starting with '-'), without the
# 1.5 s of a JVM.
cluster_uuid() {
  python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break'
}

# free_ports N: N distinct free loopback ports, on one line (one python).
free_ports() {
  python3 -c 'import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

log4j_config() {
  # The broker's own log into nodeN/log/server.log; WARN and above of the
  # chattier loggers only.
  cat <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = \${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
EOF
}

# write_node DIR ID BROKER_PORT CONTROLLER_PORT VOTERS REPLICATION [HOST]
write_node() {
  local dir="$1" id="$2" port="$3" cport="$4" voters="$5" rf="$6" host="${7:-127.0.0.1}"
  local min_isr=1
  [ "$rf" -ge 3 ] && min_isr=2
  mkdir -p "$dir/data" "$dir/log"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$cport
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=5000
EOF
  if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
    printf '%s\n' "$KAFKA_EXTRA_PROPERTIES" \
      | sed -e "s/@PORT@/$port/g" -e "s/@CONTROLLER_PORT@/$cport/g" >>"$dir/server.properties"
  fi
  log4j_config >"$dir/log4j2.properties"
}

start_node() {
  local dir="$1"
  # shellcheck disable=SC2046
  nohup "$JAVA" $(java_args "$dir") -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

format_node() {
  local dir="$1" cluster_id="$2" extra=()
  # Split on blanks, no globbing (`--add-scram SCRAM-SHA-256=[name=u,...]`).
  read -ra extra <<<"${KAFKA_FORMAT_ARGS:-}"
  # shellcheck disable=SC2046
  "$JAVA" $(cds_args format) -Xmx256m -XX:TieredStopAtLevel=1 -cp "$LIBS/*" kafka.tools.StorageTool format \
    -t "$cluster_id" -c "$dir/server.properties" --ignore-formatted "${extra[@]}" \
    >"$dir/log/format.log" 2>&1 || { cat "$dir/log/format.log" >&2; return 1; }
}

java_args() {
  local dir="$1"
  # shellcheck disable=SC2086
  echo $HEAP $(cds_args broker) -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$dir/log" \
    -Dlog4j2.configurationFile="$dir/log4j2.properties"
}

# wait_ready BOOTSTRAP DIR...: until every node answers on its broker port and
# the cluster lists all its brokers (the metadata call of kafka-python-free
# check: a TCP connect per node, then the server log saying the broker started).
wait_ready() {
  local deadline=$((SECONDS + READY_SECS)) dir
  for dir in "$@"; do
    until grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=[0-9]*\] Kafka Server started" "$dir/log/server.log" 2>/dev/null; do
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        tail -40 "$dir/log/stdout.log" "$dir/log/server.log" >&2 2>/dev/null || true
        die "the broker in $dir exited before it was ready (logs kept in $dir/log)"
      fi
      if [ $SECONDS -ge $deadline ]; then
        tail -40 "$dir/log/server.log" >&2 2>/dev/null || true
        die "the broker in $dir was not ready in ${READY_SECS}s (logs kept in $dir/log)"
      fi
      sleep 0.2
    done
  done
}

# prepare_cluster DIR HOST:PORT:CPORT...: node N (from 1) of each address,
# its properties written and its storage formatted (in parallel, one JVM
# each); DIR/bootstrap.pending holds the bootstrap address.
prepare_cluster() {
  local dir="$1" spec i
  shift
  local nodes=$#
  local hosts=() ports=() cports=() voters=""
  for spec in "$@"; do
    IFS=: read -r h p c <<<"$spec"
    [ -n "$h" ] && [ -n "$p" ] && [ -n "$c" ] || die "bad node address '$spec' (HOST:PORT:CONTROLLER_PORT)"
    hosts+=("$h")
    ports+=("$p")
    cports+=("$c")
    voters+="${voters:+,}${#hosts[@]}@$h:$c"
  done
  local cluster_id rf=1 node_dirs=() bootstrap="" pids=() nd
  cluster_id="$(cluster_uuid)"
  [ "$nodes" -ge 3 ] && rf=3
  for ((i = 0; i < nodes; i++)); do
    nd="$dir/node$((i + 1))"
    write_node "$nd" "$((i + 1))" "${ports[$i]}" "${cports[$i]}" "$voters" "$rf" "${hosts[$i]}"
    node_dirs+=("$nd")
    bootstrap+="${bootstrap:+,}${hosts[$i]}:${ports[$i]}"
  done
  for nd in "${node_dirs[@]}"; do format_node "$nd" "$cluster_id" & pids+=($!); done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || die "format of ${node_dirs[$i]} failed"
  done
  echo "$bootstrap" >"$dir/bootstrap.pending"
}

start() {
  local dir="$1" nodes="$2"
  local t0=$SECONDS
  install
  cds_prepare
  [ -f "$dir/bootstrap" ] && die "$dir already holds a broker (stop it first)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local specs=() all i nd node_dirs=()
  read -ra all <<<"$(free_ports $((2 * nodes)))"
  for ((i = 0; i < nodes; i++)); do
    specs+=("127.0.0.1:${all[$((2 * i))]}:${all[$((2 * i + 1))]}")
  done
  prepare_cluster "$dir" "${specs[@]}"
  for ((i = 1; i <= nodes; i++)); do
    nd="$dir/node$i"
    node_dirs+=("$nd")
    start_node "$nd"
  done
  wait_ready "${node_dirs[@]}"
  mv "$dir/bootstrap.pending" "$dir/bootstrap"
  local bootstrap
  bootstrap="$(cat "$dir/bootstrap")"
  echo "kafka.sh: Apache Kafka $KAFKA_VERSION, $nodes node(s), ready in $((SECONDS - t0)) s at $bootstrap (logs in $dir)" >&2
  echo "$bootstrap"
}

# run_node DIR N: node N of a prepared cluster, exec'd in the foreground.
run_node() {
  local nd="$1/node$2"
  [ -f "$nd/server.properties" ] || die "$nd is not prepared (kafka.sh prepare-cluster first)"
  install
  cds_prepare
  echo $$ >"$nd/pid"
  # shellcheck disable=SC2046
  exec "$JAVA" $(java_args "$nd") -cp "$LIBS/*" kafka.Kafka "$nd/server.properties" \
    >>"$nd/log/stdout.log" 2>&1 </dev/null
}

# quorum DIR [elect-preferred]: the quorum's leader (the active controller),
# epoch, high watermark and each voter's log end offset, through the Admin
# API (scripts/kafka/Quorum.java, compiled once into the cache); with
# elect-preferred, every partition's leadership first goes back to its
# preferred replica.
quorum() {
  local dir="$1" elect="${2:-}" tools="$HOME_DIR/tools"
  install
  if [ ! -f "$tools/Quorum.class" ] || [ "$HERE/kafka/Quorum.java" -nt "$tools/Quorum.class" ]; then
    mkdir -p "$tools"
    local work
    work="$(mktemp -d)"
    javac -nowarn -d "$work" -cp "$LIBS/*" "$HERE/kafka/Quorum.java" >&2 \
      || { rm -rf "$work"; die "javac Quorum.java failed"; }
    mv "$work/Quorum.class" "$tools/Quorum.class"
    rm -rf "$work"
  fi
  local bootstrap
  bootstrap="$(cat "$dir/bootstrap" 2>/dev/null || cat "$dir/bootstrap.pending")"
  # shellcheck disable=SC2046,SC2086
  "$JAVA" $(cds_args format) -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.level=error \
    -Dlog4j2.rootLogger.level=error -cp "$tools:$LIBS/*" Quorum "$bootstrap" $elect 2>/dev/null
}

# run DIR: one node, prepared on the first call (ports, properties, format)
# and reused after (a restart keeps its ports and log directory), then exec'd
# in the foreground so that the caller owns the broker's process. DIR/bootstrap
# holds the address once prepared.
run() {
  local dir="$1"
  install
  cds_prepare
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local nd="$dir/node1"
  if [ ! -f "$nd/.formatted" ]; then
    local port cport
    read -r port cport <<<"$(free_ports 2)"
    write_node "$nd" 1 "$port" "$cport" "1@127.0.0.1:$cport" 1
    format_node "$nd" "$(cluster_uuid)" || die "format of $nd failed"
    touch "$nd/.formatted"
    echo "127.0.0.1:$port" >"$dir/bootstrap"
  fi
  echo $$ >"$nd/pid"
  # shellcheck disable=SC2046
  exec "$JAVA" $(java_args "$nd") -cp "$LIBS/*" kafka.Kafka "$nd/server.properties" \
    >>"$nd/log/stdout.log" 2>&1 </dev/null
}

stop() {
  local dir="$1" nd pid
  for nd in "$dir"/node*; do
    [ -f "$nd/pid" ] || continue
    pid="$(cat "$nd/pid")"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for nd in "$dir"/node*; do
    [ -f "$nd/pid" ] || continue
    pid="$(cat "$nd/pid")"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$nd/pid"
  done
  rm -f "$dir/bootstrap"
}

cmd="${1:-}"
case "$cmd" in
  install) install; echo "$LIBS" ;;
  start) [ $# -eq 2 ] || die "usage: kafka.sh start DIR"; start "$2" 1 ;;
  start-cluster) [ $# -eq 2 ] || die "usage: kafka.sh start-cluster DIR"; start "$2" 3 ;;
  stop) [ $# -eq 2 ] || die "usage: kafka.sh stop DIR"; stop "$2" ;;
  bootstrap) [ $# -eq 2 ] || die "usage: kafka.sh bootstrap DIR"; cat "$2/bootstrap" ;;
  run) [ $# -eq 2 ] || die "usage: kafka.sh run DIR"; run "$2" ;;
  prepare-cluster)
    [ $# -ge 3 ] || die "usage: kafka.sh prepare-cluster DIR HOST:PORT:CPORT..."
    install; cds_prepare; mkdir -p "$2"; d="$(cd "$2" && pwd)"; shift 2; prepare_cluster "$d" "$@"; cat "$d/bootstrap.pending" ;;
  run-node) [ $# -eq 3 ] || die "usage: kafka.sh run-node DIR N"; run_node "$2" "$3" ;;
  quorum) [ $# -ge 2 ] || die "usage: kafka.sh quorum DIR [elect-preferred]"; quorum "$2" "${3:-}" ;;
  classpath) install; echo "$LIBS/*" ;;
  *) die "usage: kafka.sh install|start DIR|start-cluster DIR|run DIR|prepare-cluster DIR HOST:PORT:CPORT...|run-node DIR N|quorum DIR|stop DIR|bootstrap DIR|classpath" ;;
esac
