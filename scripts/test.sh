#!/usr/bin/env bash
# The whole test suite: set up, format and lint checks, every test (unit, property, black-box
# against a real PostgreSQL, fault tests with SIGKILL and power cuts), the compose deployment
# with real Docker, a 5-minute churn judged for disk, memory and backlog, then a short fuzz run
# of every target.
set -euo pipefail
export CARGO_TERM_COLOR=never
# A clean build has nothing to reuse: incremental data would only double the disk it takes.
export CARGO_INCREMENTAL=0
# The processes the tests and the churn start keep a small disk reserve, so a nearly full CI
# disk does not answer their rows 503 (the reserve itself has its own test in http_status.rs).
export WHARF_DISK_RESERVE=${WHARF_DISK_RESERVE:-64MiB}
cd "$(dirname "$0")/.."

# disk: prints the free space where the build and the journals live, for a failure's log.
disk() {
  echo "disk: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free here, $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -n 1 | tr -d ' ') in ${TMPDIR:-/tmp}; target/ holds $(du -sh target 2>/dev/null | cut -f 1)"
}

scripts/setup.sh
disk

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
disk
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
disk
echo "tests: $passed passed, $failed failed"
