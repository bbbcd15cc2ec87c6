#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run calls it): installs everything the tests
# need (scripts/install.sh --test: Debian packages, npm ci, the native addon), then runs them all —
# npm test (type-check, lint, every jest suite) and npm run test:rdma (the rdma suites on real
# verbs in the Soft-RoCE qemu guest, ../shared/rxe-vm, about 2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
npm test
npm run test:rdma
