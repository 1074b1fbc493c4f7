#!/usr/bin/env bash
# Checks the dependency tree against deny.toml: sources (crates.io only), licenses, banned crates
# (a second crypto provider, sled), and the RustSec advisories when a copy of their database is
# here (.advisory-db/, made by scripts/update-advisories.sh). Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null 2>&1 || { echo "audit: cargo-deny is missing (scripts/setup.sh installs it)"; exit 1; }
# Every package of the lock file, for every platform (a build downloads only this one's), so that
# cargo-deny reads the whole tree without going to the network itself.
cargo fetch --locked --quiet
cargo deny --offline --all-features check bans licenses sources
if [ -d .advisory-db ] && [ -n "$(ls -A .advisory-db 2>/dev/null)" ]; then
  cargo deny --offline check advisories
  echo "audit: advisories checked against .advisory-db ($(cat .advisory-db/.fetched 2>/dev/null || echo 'date unknown'))"
else
  echo "audit: no advisory database here (.advisory-db/); run scripts/update-advisories.sh where GitHub is reachable, then commit it"
fi
