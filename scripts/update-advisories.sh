#!/usr/bin/env bash
# Refreshes .advisory-db/, the copy of the RustSec advisory database that scripts/audit.sh (and
# so CI, which reaches no network but the package registries) checks against. Run it where
# GitHub is reachable, then commit .advisory-db/ (its git metadata is dropped so that git keeps
# the files themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .advisory-db
cargo deny fetch db
find .advisory-db -name .git -prune -exec rm -rf {} +
date -u +%Y-%m-%dT%H:%MZ > .advisory-db/.fetched
echo "update-advisories: .advisory-db/ refreshed; commit it"
