#!/usr/bin/env bash
# The main job: set up, build, and run `wharfctl demo` on embedded defaults (a throwaway local
# PostgreSQL, an in-process wharf-ingest with one embedded applier).
set -euo pipefail
cd "$(dirname "$0")/.."
WHARF_SKIP_FUZZ=1 scripts/setup.sh
cargo build --release --quiet -p wharfctl -p wharf-ingest -p wharf-applier
exec target/release/wharfctl demo "$@"
