#!/usr/bin/env bash
# A single-member etcd for development on loopback: client http://127.0.0.1:2379.
# Data in ${TALOS_ETCD_DATA:-/tmp/talos-etcd-single}; Ctrl-C stops it.
# Needs the etcd binary: apt-get install etcd-server
set -euo pipefail
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
DATA="${TALOS_ETCD_DATA:-/tmp/talos-etcd-single}"
exec etcd --name talos-dev --data-dir "$DATA" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster talos-dev=http://127.0.0.1:2380 --initial-cluster-state new
