#!/usr/bin/env bash
# Soak test: churnwatch run at a steady input rate for a long time, sampling
# its resident memory, customers held and consumer lag, then judging
# "flat memory after warm-up, no lag growth".
#
#   bash scripts/soak.sh                       # 30 minutes at 2,000 events/s
#   DURATION=5m RATE=1000 bash scripts/soak.sh # a shorter look
#
# It starts a broker on loopback (BROKER=mock: `churnwatch mock-broker`,
# librdkafka's mock cluster in its own process, the default; BROKER=kafka:
# Apache Kafka, one KRaft node, via scripts/kafka.sh), or uses the Kafka named by
# KAFKA_BOOTSTRAP; `churnwatch generate` produces a seeded
# population of CUSTOMERS customers at RATE events/s for DURATION, and
# `churnwatch run` consumes it. Every SAMPLE seconds one CSV row:
#
#   elapsed_s, rss_kb (VmRSS of churnwatch), customers (churnwatch_customers_tracked),
#   lag (sum of churnwatch_consumer_lag_messages), consumed, dropped, rejected
#   (sums of the events counters), broker_rss_kb (the broker's VmRSS when this script runs it, else 0)
#
# The population is fixed. Before the timed run, HISTORY events per customer
# (default 200) are sent at HISTORY_RATE and processed: a fresh customer's
# state keeps filling its bounded parts (open tickets, recent contacts,
# satisfaction, outreach history) over its first hundred or so events (heap
# per customer 152, 270, 353 bytes after 30, 90, 180 events), so without a
# history a soak measures that filling, not leaks. From then on every
# customer's state is at its size and memory should stay flat.
#
# Verdict (PASS/FAIL, exit status 0/1):
#   memory: RSS at the end is at most MAX_GROWTH_PCT above RSS at the end of
#           warm-up, and the least-squares slope of RSS over the second half
#           is at most MAX_SLOPE_MB_H MB per hour (10 MB/h is a leak of
#           1.4 bytes per event at 2,000 events/s);
#   lag:    the largest lag in the second half is at most MAX_LAG messages
#           (default: 10 s of input), the final lag too, and the slope of lag
#           over the second half is at most MAX_LAG / 2 per hour;
#   throughput: churnwatch consumed at least 95% of what was produced.
#
# Settings (environment): DURATION (30m; s/m/h suffix or seconds), RATE
# (2000), CUSTOMERS (20000), HISTORY (200; 0 for none), HISTORY_RATE
# (40000), PARTITIONS (4), SAMPLE (30), WARMUP (5m, at most
# a third of DURATION), OUT (directory for soak.csv, the config and the logs;
# default /tmp/churnwatch-soak-<time>), CW_BIN (not CHURNWATCH_*: that prefix
# is the configuration's; default: the release
# build, copied so rebuilds during the run do not matter), BROKER (mock or
# kafka; tansu 0.6, once an option, stalled within a minute on sqlite and
# slowed down after 20 minutes in memory), KAFKA_BOOTSTRAP,
# MAX_GROWTH_PCT (10), MAX_SLOPE_MB_H (10), MAX_LAG.
#
# The mock cluster keeps only the last 5 MB of each partition (about three
# minutes of input at 2,000 events/s over 4 partitions), so its memory stays
# bounded; the changelog is cut the same way, which a soak does not read.
#
# The broker shares the machine: CPU taken by other work shows up
# as lag bursts, and catching up after one grows librdkafka's fetch buffers
# (RSS steps up and stays). Run it on a quiet machine, or against a real
# Kafka elsewhere, for figures that judge churnwatch alone.
set -euo pipefail

seconds() {
    local v=$1
    case $v in
        *h) echo $((${v%h} * 3600)) ;;
        *m) echo $((${v%m} * 60)) ;;
        *s) echo "${v%s}" ;;
        *) echo "$v" ;;
    esac
}

here=$(cd "$(dirname "$0")/.." && pwd)
DURATION=$(seconds "${DURATION:-30m}")
RATE=${RATE:-2000}
CUSTOMERS=${CUSTOMERS:-20000}
PARTITIONS=${PARTITIONS:-4}
SAMPLE=${SAMPLE:-30}
WARMUP=$(seconds "${WARMUP:-5m}")
if ((WARMUP > DURATION / 3)); then WARMUP=$((DURATION / 3)); fi
MAX_GROWTH_PCT=${MAX_GROWTH_PCT:-10}
MAX_SLOPE_MB_H=${MAX_SLOPE_MB_H:-10}
HISTORY=${HISTORY:-200}
HISTORY_RATE=${HISTORY_RATE:-40000}
MAX_LAG=${MAX_LAG:-$((RATE * 10))}
OUT=${OUT:-/tmp/churnwatch-soak-$(date -u +%Y%m%dT%H%M%SZ)}
target=${CARGO_TARGET_DIR:-$HOME/.cache/churnwatch/target}
CW_BIN=${CW_BIN:-$target/release/churnwatch}
BROKER=${BROKER:-mock}

mkdir -p "$OUT"
work=$(mktemp -d /tmp/cwsoak.XXXXXX)
pids=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Children in reverse order of start: generator, churnwatch, broker.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local p=${pids[i]}
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$p" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ! -x $CW_BIN ]]; then
    echo "building churnwatch (release)..."
    (cd "$here" && cargo build --release --bin churnwatch)
fi
# A copy under its own name: rebuilds during the run do not replace it.
cp "$CW_BIN" "$work/cw-soak"
cw=$work/cw-soak

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kb() {
    awk '/^VmRSS:/ {print $2; found=1} END {if (!found) print 0}' "/proc/$1/status" 2>/dev/null || echo 0
}

app=soak-$(date -u +%s)
topic=$app-in
broker_pid=
if [[ -n ${KAFKA_BOOTSTRAP:-} ]]; then
    bootstrap=$KAFKA_BOOTSTRAP
    strategy=cooperative_sticky
    echo "broker: $bootstrap (KAFKA_BOOTSTRAP)"
elif [[ $BROKER == mock ]]; then
    # No CreateTopics on the mock: every topic is made up front.
    "$cw" mock-broker --partitions "$PARTITIONS" --topic "$topic" --topic "$app-changelog" \
        --topic "$app-outreach" --topic "$app-dlq" >"$work/bootstrap" 2>"$OUT/broker.log" &
    broker_pid=$!
    pids+=("$broker_pid")
    for _ in $(seq 1 100); do
        [[ -s $work/bootstrap ]] && break
        sleep 0.1
    done
    bootstrap=$(head -1 "$work/bootstrap")
    [[ -n $bootstrap ]] || { echo "mock-broker did not start (see $OUT/broker.log)" >&2; exit 2; }
    strategy=range
    echo "broker: librdkafka mock cluster (churnwatch mock-broker) at $bootstrap"
elif [[ $BROKER == kafka ]]; then
    # Apache Kafka, one KRaft node (scripts/kafka.sh run execs java, so the
    # pid is the broker's and its memory is sampled).
    bash "$here/scripts/kafka.sh" run "$work/kafka" 2>"$OUT/broker.log" &
    broker_pid=$!
    pids+=("$broker_pid")
    for _ in $(seq 1 600); do
        [[ -s $work/kafka/bootstrap ]] && grep -q "Kafka Server started" "$work/kafka/node1/log/server.log" 2>/dev/null && break
        kill -0 "$broker_pid" 2>/dev/null || { echo "Apache Kafka did not start (see $OUT/broker.log)" >&2; exit 2; }
        sleep 0.2
    done
    bootstrap=$(cat "$work/kafka/bootstrap")
    strategy=cooperative_sticky
    echo "broker: Apache Kafka (scripts/kafka.sh run) at $bootstrap"
else
    echo "BROKER must be mock or kafka" >&2
    exit 2
fi

http_port=$(free_port)
config=$OUT/churnwatch.toml
cat >"$config" <<EOF
application_id = "$app"

[kafka]
bootstrap_servers = "$bootstrap"
input_topic = "$topic"
outreach_topic = "$app-outreach"
dead_letter_topic = "$app-dlq"
assignment_strategy = "$strategy"

[processing]
# Event time only: when the producer stops, stream time does not jump to
# the wall clock (which would re-score every customer at once).
idle_advance = "0s"

[http]
listen = "127.0.0.1:$http_port"

[log]
level = "info"
EOF

# First a history (HISTORY events per customer, sent at HISTORY_RATE, not
# timed): a customer's state fills its bounded parts (support tickets and
# contacts, satisfaction, outreach history) over the first hundred or so
# events, so a fresh population's memory rises for a long while without
# any leak. The timed run starts once the history is processed and carries
# on the same population where the history stopped (`generate --skip`).
history=$((HISTORY * CUSTOMERS))
# Enough simulated days that the population does not run out of events:
# about 0.25 events per customer per simulated day, with a margin.
events=$((RATE * DURATION))
days=$(((history + events) * 5 / (CUSTOMERS + 1) + 60))
gen=(generate --bootstrap "$bootstrap" --topic "$topic" --partitions "$PARTITIONS"
    --customers "$CUSTOMERS" --span "${days}d" --start 2023-01-01T00:00:00Z --format protobuf)

metrics_sum() {
    # Sum of a metric family's samples in the scraped text.
    awk -v name="$1" '$1 == name || index($1, name "{") == 1 {s += $2} END {printf "%.0f", s}' "$work/metrics"
}

handled_now() {
    curl -sf --max-time 10 "http://127.0.0.1:$http_port/metrics" -o "$work/metrics" || { echo 0; return; }
    echo $(($(metrics_sum churnwatch_events_consumed_total) + $(metrics_sum churnwatch_events_dropped_total) + $(metrics_sum churnwatch_events_rejected_total)))
}

if ((history > 0)); then
    echo "history: $history events ($HISTORY per customer) at $HISTORY_RATE/s"
    "$cw" "${gen[@]}" --rate "$HISTORY_RATE" --max-events "$history" >"$OUT/history.log" 2>&1 &
    pids+=("$!")
    history_pid=$!
fi

# The generator creates the topic; the service refuses to start without it,
# so it is started again while it says the topic does not exist.
start_service() {
    cw_pid=
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        sleep 2
        "$cw" run --config "$config" >"$OUT/churnwatch.log" 2>&1 &
        cw_pid=$!
        pids+=("$cw_pid")
        for _ in $(seq 1 50); do
            kill -0 "$cw_pid" 2>/dev/null || break
            grep -q "restored partition state" "$OUT/churnwatch.log" && return 0
            sleep 0.2
        done
        kill -0 "$cw_pid" 2>/dev/null && return 0
        grep -q "does not exist" "$OUT/churnwatch.log" || return 0
        echo "  input topic not there yet (attempt $attempt)"
    done
}

if ((history > 0)); then
    start_service
    wait "$history_pid" || { echo "history generator failed (see $OUT/history.log)" >&2; exit 2; }
    sent=$(grep -o 'wrote [0-9]* events' "$OUT/history.log" | awk '{print $2}')
    t0=$(date +%s)
    while (($(handled_now) < sent)); do
        kill -0 "$cw_pid" 2>/dev/null || { echo "churnwatch exited during the history (see $OUT/churnwatch.log)" >&2; exit 1; }
        (($(date +%s) - t0 > 600)) && { echo "history not processed within 600 s" >&2; exit 1; }
        sleep 1
    done
    echo "history processed: $(handled_now) events handled"
    base_handled=$(handled_now)
fi

echo "producing $events events ($RATE/s for ${DURATION}s) from $CUSTOMERS customers, after the history's $history"
"$cw" "${gen[@]}" --rate "$RATE" --max-events $((history + events)) --skip "$history" >"$OUT/generate.log" 2>&1 &
gen_pid=$!
pids+=("$gen_pid")
((history > 0)) || start_service
echo "churnwatch: pid $cw_pid, admin http://127.0.0.1:$http_port, logs $OUT/churnwatch.log"

csv=$OUT/soak.csv
echo "elapsed_s,rss_kb,customers,lag,consumed,dropped,rejected,broker_rss_kb" >"$csv"
start=$(date +%s)
next=$start
died=
while :; do
    now=$(date +%s)
    elapsed=$((now - start))
    if ! kill -0 "$cw_pid" 2>/dev/null; then
        died="churnwatch exited at ${elapsed}s (see $OUT/churnwatch.log)"
        break
    fi
    if ((now >= next)); then
        if curl -sf --max-time 10 "http://127.0.0.1:$http_port/metrics" -o "$work/metrics"; then
            broker_rss=0
            [[ -n $broker_pid ]] && broker_rss=$(rss_kb "$broker_pid")
            row="$elapsed,$(rss_kb "$cw_pid"),$(metrics_sum churnwatch_customers_tracked),$(metrics_sum churnwatch_consumer_lag_messages),$(metrics_sum churnwatch_events_consumed_total),$(metrics_sum churnwatch_events_dropped_total),$(metrics_sum churnwatch_events_rejected_total),$broker_rss"
            echo "$row" >>"$csv"
            echo "  $row"
        fi
        next=$((next + SAMPLE))
    fi
    ((elapsed >= DURATION)) && break
    sleep 1
done

produced=$(grep -o 'wrote [0-9]* events' "$OUT/generate.log" | awk '{print $2}' || true)
produced=${produced:-$events}

# The verdict, from the CSV.
awk -F, -v warm="$WARMUP" -v dur="$DURATION" -v growth="$MAX_GROWTH_PCT" \
    -v maxslope="$MAX_SLOPE_MB_H" -v maxlag="$MAX_LAG" -v produced="$produced" \
    -v rate="$RATE" -v customers="$CUSTOMERS" -v died="$died" -v csv="$csv" -v base="${base_handled:-0}" '
NR == 1 { next }
{
    n++; t[n] = $1; rss[n] = $2; cust[n] = $3; lag[n] = $4; cons[n] = $5 + $6 + $7 - base; brk[n] = $8
    if ($2 > peak) peak = $2
    if (w == 0 && $1 >= warm) w = n
}
function slope(arr, from, to,    i, k, mt, mv, sxy, sxx) {
    k = 0; mt = 0; mv = 0
    for (i = from; i <= to; i++) { k++; mt += t[i]; mv += arr[i] }
    if (k < 2) return 0
    mt /= k; mv /= k; sxy = 0; sxx = 0
    for (i = from; i <= to; i++) { sxy += (t[i] - mt) * (arr[i] - mv); sxx += (t[i] - mt) ^ 2 }
    return sxx > 0 ? sxy / sxx : 0
}
END {
    if (n < 3 || w == 0) { print "FAIL: too few samples (" n ")" (died ? "; " died : ""); exit 1 }
    half = 1; while (half < n && t[half] < t[n] / 2) half++
    rss_slope = slope(rss, half, n) * 3600 / 1024          # MB per hour
    lag_slope = slope(lag, half, n) * 3600                  # messages per hour
    maxlag2 = 0; for (i = half; i <= n; i++) if (lag[i] > maxlag2) maxlag2 = lag[i]
    maxlag_all = 0; for (i = 1; i <= n; i++) if (lag[i] > maxlag_all) maxlag_all = lag[i]
    grow = (rss[n] - rss[w]) * 100 / rss[w]
    mem_ok = grow <= growth && rss_slope <= maxslope
    lag_ok = maxlag2 <= maxlag && lag[n] <= maxlag && lag_slope <= maxlag / 2
    thr_ok = cons[n] >= 0.95 * produced * (t[n] >= dur ? 1 : t[n] / dur)
    printf "soak: %d s at %d events/s, %d customers, %d samples (%s)\n", t[n], rate, customers, n, csv
    printf "  customers held:       %d at warm-up end, %d at the end\n", cust[w], cust[n]
    printf "  RSS:                  %.1f MB at warm-up end (%d s), %.1f MB at the end (%+.1f%%), peak %.1f MB\n", rss[w] / 1024, t[w], rss[n] / 1024, grow, peak / 1024
    printf "  RSS slope, 2nd half:  %+.2f MB/h (limit %s)\n", rss_slope, maxslope
    printf "  lag:                  max %d (2nd half %d), final %d, slope 2nd half %+.0f msg/h (limit %d)\n", maxlag_all, maxlag2, lag[n], lag_slope, maxlag
    if (brk[n] > 0) printf "  broker RSS:           %.1f MB at the end (not judged)\n", brk[n] / 1024
    printf "  events handled:       %d of %d produced\n", cons[n], produced
    printf "  memory flat after warm-up: %s; no lag growth: %s; kept up: %s\n", mem_ok ? "PASS" : "FAIL", lag_ok ? "PASS" : "FAIL", thr_ok ? "PASS" : "FAIL"
    if (died) print "  " died
    ok = mem_ok && lag_ok && thr_ok && !died
    print (ok ? "PASS" : "FAIL")
    exit ok ? 0 : 1
}' "$csv" | tee "$OUT/summary.txt"
exit "${PIPESTATUS[0]}"
