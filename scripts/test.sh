#!/usr/bin/env bash
# The whole test suite: set up, format and lint checks, every test (unit, property, black-box
# against a real PostgreSQL, fault tests with SIGKILL and power cuts), the compose deployment
# with real Docker, a 5-minute churn judged for disk, memory and backlog, then a short fuzz run
# of every target.
set -euo pipefail
export CARGO_TERM_COLOR=never
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== the ingest library builds without the applier"
cargo check --quiet -p wharf-ingest --lib --no-default-features
echo "== dependency audit (deny.toml)"
scripts/audit.sh
echo "== cargo test"
log=$(mktemp)
cargo test --workspace 2>&1 | tee "$log"
read -r passed failed < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } } END { print p + 0, f + 0 }' "$log")
cargo build --bins --quiet
echo "== churn (${WHARF_CHURN_SECONDS:-300} s at 80% of the end-to-end capacity with a separate applier, debug build)"
# Fails unless the journal stays inside its disk bound, memory stays flat and the backlog bounded.
target/debug/wharfctl bench --rows 30000 --scanRows 0 --bigBodies 0 --scaleRows 0 --lagSeconds 0 --restartGiB 0 \
  --capacitySeconds 10 --churnSeconds "${WHARF_CHURN_SECONDS:-300}" --churnCheck
echo "== compose (docker-compose.yml with three appliers, a kill and a restart)"
if [ "${WHARF_SKIP_COMPOSE:-0}" = 1 ]; then
  echo "compose test skipped (WHARF_SKIP_COMPOSE=1)"
else
  scripts/compose-test.sh
fi
echo "== fuzz smoke (${WHARF_FUZZ_SECONDS:-30} s per target)"
scripts/fuzz-smoke.sh
echo "tests: $passed passed, $failed failed"
