#!/usr/bin/env bash
# Installs what Talos needs on a Debian (or Ubuntu) machine, from a clone of the repository:
#   bash scripts/install.sh          Node.js >= 20 and npm (from apt when missing), npm ci: enough
#                                    for `npm start` (the demo needs no other package)
#   bash scripts/install.sh --test   also the Debian packages the tests need — etcd-server (the etcd
#                                    tests start a real etcd), libibverbs-dev, librdmacm-dev and
#                                    ibverbs-providers (the RDMA addon's headers, the rxe provider),
#                                    chromium (the trace viewer's page is tested in a headless browser)
#                                    — and builds the native addon (npm run build:native)
# Idempotent: installed packages are skipped. Uses sudo when not root. The Soft-RoCE guest's own
# packages (qemu, the kernel...) are installed by ../shared/rxe-vm/build-initramfs.sh, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
[ "${1:-}" = "--test" ] && WITH_TESTS=1

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
  fi
}

node_major() { node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
  if [ "$(node_major)" -lt 20 ]; then
    echo "install.sh: Talos needs Node.js >= 20; this system's nodejs is $(node --version 2>/dev/null || echo missing)." >&2
    echo "  Debian 13 ships Node 20; on Debian 12 add a Node 20+ repository (e.g. NodeSource's deb.nodesource.com) and rerun." >&2
    exit 1
  fi
fi

if [ "$WITH_TESTS" -eq 1 ]; then
  # chromium: the trace viewer's test loads its page in a real headless browser.
  apt_install etcd-server libibverbs-dev librdmacm-dev ibverbs-providers chromium
fi

node --version
npm --version
if [ -L node_modules ]; then
  # A git worktree sharing another checkout's modules: npm ci would empty that checkout's.
  echo "install.sh: node_modules is a symlink (shared with another checkout); not reinstalling" >&2
else
  # npm ci first. The registry mirror here serves only this platform's prebuilt binaries, so the
  # lockfile cannot list other platforms' optional packages (@swc/core-*, @biomejs/cli-*), and
  # npm ci may reject it as "out of sync" (npm/cli#4828, #8805). Then install from the same lockfile
  # without rewriting it: the resolved versions are identical.
  if ! npm ci --no-audit --no-fund; then
    echo "install.sh: npm ci refused the lockfile; installing from it with npm install --no-save" >&2
    rm -rf node_modules
    npm install --no-save --no-audit --no-fund
  fi
fi
if [ "$WITH_TESTS" -eq 1 ]; then
  npm run build:native
fi
