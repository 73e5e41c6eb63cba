#!/usr/bin/env bash
# Measures what a flood of step output does to a node's memory: one real otto-node, its
# RSS when idle, then after a stage printed BYTES of output (default 1 GB), with the
# agent's and the node's log limits raised so that every byte reaches the node and is
# written to the stage's log. Prints the idle RSS (the baseline), the RSS after the flood
# and after a further idle moment, the peak (VmHWM), the ratio, and the sizes on disk.
#
#   cargo build --release -p otto-cli -p otto-agent
#   bash testnet/scripts/log-flood-rss.sh target/release            # 1 GB, 100-byte lines
#   SHAPE=long bash testnet/scripts/log-flood-rss.sh target/release # 1 GB in one line
#
# Not a test: it judges nothing, it reports (docs/performance.md, "Log floods").
# Every wait is bounded; the node it starts is stopped by its pid at the end.
set -euo pipefail

BIN=$(cd "${1:?usage: log-flood-rss.sh BIN_DIR}" && pwd)
BYTES=${BYTES:-1000000000}
SHAPE=${SHAPE:-lines}
IDLE=${IDLE:-5}
WORK=$(mktemp -d /tmp/otto-log-flood-XXXXXX)
HOME_DIR=$WORK/home
NODE_PID=

stop() {
    if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill "$NODE_PID"
        for _ in $(seq 1 100); do
            kill -0 "$NODE_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
}
trap stop EXIT

rss() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

"$BIN/otto-node" init --home "$HOME_DIR" --org flood --name flood-1 >/dev/null
# Let every byte through: 2 GiB for the agent's output and the node's log of an attempt.
sed -i -e 's/^output_bytes = .*/output_bytes = 2147483648/' \
    -e 's/^max_log_bytes = .*/max_log_bytes = 2147483648/' "$HOME_DIR/config.toml"
OTTO_AGENT="$BIN/otto-agent" "$BIN/otto-node" start --home "$HOME_DIR" 2>"$WORK/node.log" &
NODE_PID=$!
for _ in $(seq 1 300); do
    [ -s "$HOME_DIR/api.addr" ] && break
    sleep 0.1
done
[ -s "$HOME_DIR/api.addr" ] || { echo "the node did not start: $(tail -3 "$WORK/node.log")"; exit 1; }

mkdir -p "$WORK/project"
case $SHAPE in
    lines) FLOOD="yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c $BYTES" ;;
    long) FLOOD="head -c $BYTES /dev/zero | tr -c y y" ;;
    *) echo "SHAPE is lines or long"; exit 2 ;;
esac
cat >"$WORK/project/Ottofile" <<EOF
stage('Flood') {
  steps {
    sh '$FLOOD; echo flood done'
  }
}
EOF

sleep "$IDLE"
idle=$(rss "$NODE_PID" VmRSS)
start=$(date +%s.%N)
timeout 1800 "$BIN/otto" run --home "$HOME_DIR" "$WORK/project" --quiet >"$WORK/run.txt" 2>&1 \
    || { echo "the run failed: $(tail -5 "$WORK/run.txt")"; exit 1; }
end=$(date +%s.%N)
after=$(rss "$NODE_PID" VmRSS)
sleep "$IDLE"
settled=$(rss "$NODE_PID" VmRSS)
peak=$(rss "$NODE_PID" VmHWM)
logs=$(du -sb "$HOME_DIR/logs" | cut -f1)
store=$(stat -c %s "$HOME_DIR/store.redb")

echo "flood:        $BYTES bytes of output ($SHAPE), in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s"
echo "idle RSS:     $(mib "$idle")   (baseline, before the flood)"
echo "after:        $(mib "$after")   ratio $(awk -v a="$after" -v b="$idle" 'BEGIN { printf "%.2f", a / b }')x"
echo "after ${IDLE} s:    $(mib "$settled")   ratio $(awk -v a="$settled" -v b="$idle" 'BEGIN { printf "%.2f", a / b }')x"
echo "peak (HWM):   $(mib "$peak")   ratio $(awk -v a="$peak" -v b="$idle" 'BEGIN { printf "%.2f", a / b }')x"
echo "logs/:        $logs bytes; store.redb: $store bytes"
echo "work dir:     $WORK"
