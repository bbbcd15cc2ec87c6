#!/usr/bin/env bash
# A 3-member etcd cluster for development on loopback: clients on 127.0.0.1:2379, :22379, :32379
# (pass all three to --etcd). Data under ${TALOS_ETCD_DATA:-/tmp/talos-etcd-cluster3}; Ctrl-C stops
# all three. Kill one member (its pid is printed) to test a coordinator that loses a member.
# Needs the etcd binary: apt-get install etcd-server
set -euo pipefail
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
DATA="${TALOS_ETCD_DATA:-/tmp/talos-etcd-cluster3}"
CLUSTER="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
pids=()
for i in 1 2 3; do
  case $i in 1) c=2379 p=2380 ;; 2) c=22379 p=22380 ;; 3) c=32379 p=32380 ;; esac
  etcd --name "m$i" --data-dir "$DATA/m$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$CLUSTER" --initial-cluster-token talos-dev --initial-cluster-state new \
    --log-level warn &
  pids+=($!)
  echo "member m$i: pid $! client http://127.0.0.1:$c"
done
trap 'kill "${pids[@]}" 2>/dev/null' INT TERM EXIT
wait
