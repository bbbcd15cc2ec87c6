#!/usr/bin/env bash
# `npm run test:rdma`: the rdma suites on real verbs. Builds the addon on the host (the guest only
# runs it), boots the Soft-RoCE qemu guest (../shared/rxe-vm, or RXE_VM_HOME) with the host's
# userspace (--hostroot) and this checkout shared read-write, and runs jest there with
# TALOS_RDMA_DEVICE=rxe0 (GID 1, same device) and TALOS_RDMA_PEER_DEVICE=rxe1 (GID 0, rxe0→rxe1).
# The guest CPU is ~15x slower (TCG), hence the long test timeout. Extra arguments go to jest.
set -euo pipefail
cd "$(dirname "$0")/.."
RXE_VM_HOME=${RXE_VM_HOME:-$(cd .. && pwd)/shared/rxe-vm}
if [ ! -f "$RXE_VM_HOME/run-vm.sh" ]; then
  echo "test:rdma: $RXE_VM_HOME/run-vm.sh not found (set RXE_VM_HOME)" >&2
  exit 2
fi
node native/build.mjs
if [ ! -f native/build/Release/talos_rdma.node ]; then
  echo "test:rdma: the addon was not built (see above); cannot run on verbs" >&2
  exit 2
fi
t0=$(date +%s)
set +e
CI=true RXE_VM_ENV=CI bash "$RXE_VM_HOME/run-vm.sh" --hostroot --share "$PWD" -- \
  env TALOS_RDMA_DEVICE=rxe0 TALOS_RDMA_PEER_DEVICE=rxe1 TALOS_RDMA_GID=1 TALOS_RUNS="${TALOS_RUNS:-10}" \
  node node_modules/jest/bin/jest.js --runInBand --testTimeout 300000 test/fabric/rdma "$@"
rc=$?
set -e
echo "test:rdma: guest exit $rc after $(($(date +%s) - t0)) s"
exit $rc
