#!/usr/bin/env bash
# Runs every fuzz target for a short time without a sanitizer (works on stable Rust).
# A crash found fails the script. WHARF_FUZZ_SECONDS sets the time per target (default 30).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${WHARF_FUZZ_SECONDS:-30}"
targets=$(cargo fuzz list)
cargo fuzz build -s none --release >/dev/null
for t in $targets; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s"
  cargo fuzz run -s none --release "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=0 2>&1 | tail -n 2
done
echo "fuzz: no crash in $(echo "$targets" | wc -w) targets"
