#!/usr/bin/env bash
# Installs what wharf's demo and tests need on a fresh Debian machine: PostgreSQL 15 with PostGIS,
# curl for the HTTP/2 test, fuse3 for the power-cut test, Docker and mmdebstrap for the compose
# test, cargo-deny for the dependency audit and, for the fuzz smoke run, cargo-fuzz. Safe to run
# again; it skips what is already there.
set -euo pipefail

sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"
updated=0

# apt_install WHAT PACKAGE…: installs the packages, saying WHAT, with one apt-get update per run.
apt_install() {
  local what=$1
  shift
  echo "setup: installing $what"
  if [ "$updated" = 0 ]; then
    $sudo_cmd apt-get update -qq
    updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

need_pg=0
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need_pg=1
ls /usr/share/postgresql/15/extension/postgis.control >/dev/null 2>&1 || need_pg=1
[ "$need_pg" = 0 ] || apt_install "PostgreSQL 15 and PostGIS" postgresql-15 postgresql-15-postgis-3

# The HTTP/2 test drives curl, the client that showed reset streams on early answers.
command -v curl >/dev/null 2>&1 || apt_install curl curl

# The power-cut test mounts a FUSE filesystem: root mounts it directly, anyone else needs fusermount3.
command -v fusermount3 >/dev/null 2>&1 || apt_install fuse3 fuse3
[ -e /dev/fuse ] || echo "setup: warning: /dev/fuse is missing; the power-cut test will fail" >&2

# The compose test runs docker-compose.yml with Debian's Docker Engine and Compose v1, on images
# built locally (mmdebstrap), since public images cannot be pulled here.
if [ "${WHARF_SKIP_COMPOSE:-0}" != 1 ] && ! { command -v dockerd && command -v docker-compose && command -v mmdebstrap; } >/dev/null 2>&1; then
  apt_install "docker.io, docker-compose and mmdebstrap" docker.io docker-compose mmdebstrap
fi

# The dependency audit (scripts/audit.sh): sources, licenses, banned crates, advisories.
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "setup: installing cargo-deny"
  cargo install cargo-deny --locked --quiet
fi

if [ "${WHARF_SKIP_FUZZ:-0}" != 1 ] && ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
