#!/usr/bin/env bash
# Runs docker-compose.yml for real and checks it:
#   0. what each container can read: the CA's and JWT signer's keys in none of the long-running
#      ones, each its own certificate and password file, its own user, no password on a command
#      line or in the environment, wharf logged in as a role that is not a superuser;
#   1. up with three appliers; the simulator's changefeed lands exactly (it checks the target
#      against its model and exits non-zero on any difference);
#   2. the same while one applier is killed mid-run (docker kill): the others take its partitions;
#   3. the same while the ingest is restarted mid-run (docker-compose restart ingest);
#   4. down -v.
# Public images cannot be pulled on our machines, so stand-ins are built locally and tagged with
# the names the compose file uses: debian:bookworm-slim (mmdebstrap), postgis/postgis:15-3.4
# (Debian's PostgreSQL 15 and PostGIS) and wharf:local (the Dockerfile, with the binaries built
# on the host: WHARF_BIN_DIR, default target/debug). Starts dockerd when none runs, and stops it
# again. Needs root, docker.io, docker-compose and mmdebstrap (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${WHARF_BIN_DIR:-target/debug}
project=wharfcompose
compose=(docker-compose -p "$project" -f docker-compose.yml)
# The schemas the simulator writes below; the token grants exactly these.
export WHARF_ALLOW="app.sim_up app.sim_kill app.sim_restart"
work=$(mktemp -d)
started_dockerd=0

say() { echo "compose-test: $*"; }

cleanup() {
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  # The wharf image carries this build's binaries (150 MB in a debug build): drop it and the
  # build cache it left, or every run keeps another copy on the disk the journal tests need.
  docker image rm -f wharf:local >/dev/null 2>&1 || true
  docker builder prune -f >/dev/null 2>&1 || true
  if [ "$started_dockerd" = 1 ]; then
    kill "$(cat "$work/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1 || break; sleep 0.1; done
  fi
  rm -rf "$work"
  rm -f docker/bin/wharf-ingest docker/bin/wharf-applier docker/bin/wharfctl
}
trap cleanup EXIT

wait_until() { # wait_until SECONDS WHAT COMMAND...
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then say "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 1
  done
}

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  dockerd >"$work/dockerd.log" 2>&1 &
  echo $! >"$work/dockerd.pid"
  started_dockerd=1
  wait_until 60 dockerd docker info || { tail -20 "$work/dockerd.log"; exit 1; }
fi

say "building stand-in images"
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  mmdebstrap --quiet --variant=minbase bookworm "$work/base.tar"
  docker import "$work/base.tar" debian:bookworm-slim >/dev/null
fi
if ! docker image inspect postgis/postgis:15-3.4 >/dev/null 2>&1; then
  mmdebstrap --quiet --variant=minbase --include=postgresql-15,postgresql-15-postgis-3 bookworm "$work/pg.tar"
  docker import "$work/pg.tar" wharf-postgres-rootfs:local >/dev/null
  docker build -q -t postgis/postgis:15-3.4 docker/postgres >/dev/null
fi
for b in wharf-ingest wharf-applier wharfctl; do
  [ -x "$bin_dir/$b" ] || { say "$bin_dir/$b is missing: cargo build --bins first"; exit 1; }
done
cp "$bin_dir/wharf-ingest" "$bin_dir/wharf-applier" "$bin_dir/wharfctl" docker/bin/
# BuildKit skips the Rust build stage; Debian's docker CLI has it built in (a newer CLI wants buildx).
cli=docker
[ -x /usr/bin/docker ] && cli=/usr/bin/docker
DOCKER_BUILDKIT=1 "$cli" build -q --build-arg BINARIES=prebuilt -t wharf:local . >/dev/null

say "up with three appliers"
"${compose[@]}" up -d --no-build --scale applier=3
wait_until 180 "the ingest to be healthy" \
  sh -c "docker inspect -f '{{.State.Health.Status}}' ${project}_ingest_1 | grep -qx healthy"
running=$("${compose[@]}" ps -q applier | wc -l)
[ "$running" = 3 ] || { say "expected 3 appliers, found $running"; exit 1; }

say "check 0: what each container can read"
files() { "${compose[@]}" exec -T "$1" sh -c 'id -u; ls /secrets' | tr '\n' ' '; }
[ "$(files ingest)" = "10001 ca.crt observer.crt observer.key pgpass queue.crt queue.key " ] || { say "ingest sees: $(files ingest)"; exit 1; }
applier_files=$("${compose[@]}" exec -T --index=1 applier sh -c 'id -u; ls /secrets' | tr '\n' ' ')
[ "$applier_files" = "10002 applier.crt applier.key ca.crt pgpass " ] || { say "an applier sees: $applier_files"; exit 1; }
for service in ingest applier; do
  if "${compose[@]}" exec -T --index=1 "$service" sh -c 'find / -xdev \( -name ca.key -o -name jwt.key \) 2>/dev/null | grep -q .'; then
    say "$service can see a CA or JWT signing key"; exit 1
  fi
done
password=$(docker run --rm --user 0 -v "${project}_pg-secrets:/run/pg:ro" --entrypoint cat wharf:local /run/pg/wharf-password)
for container in $("${compose[@]}" ps -q); do
  if docker inspect "$container" | grep -qF "$password"; then say "a password in $container's configuration"; exit 1; fi
done
role=$("${compose[@]}" exec -T postgres psql -U postgres -d app -Atc \
  "SELECT a.usename || ' ' || u.usesuper FROM pg_stat_activity a JOIN pg_user u ON u.usesysid = a.usesysid WHERE a.application_name LIKE 'wharf%' LIMIT 1")
[ "$role" = "wharf false" ] || { say "wharf is logged in as: $role"; exit 1; }
say "check 0 passed"

simulate() { # simulate NAME: a simulated changefeed into schema NAME, checked against its model
  "${compose[@]}" run --rm -T simulator --schema "$1" --seconds "${WHARF_SIMULATE_SECONDS:-20}"
}

say "check 1: simulator through three appliers"
simulate sim_up
say "check 1 passed: target equals the model"

# The applier container holding partition app.$1 (an applier's name is its host name, the
# container's short id, then its process id).
holder() {
  "${compose[@]}" exec -T ingest wharfctl status --json --queueAddr 127.0.0.1:26259 \
    --queueCA /secrets/ca.crt --queueCertificate /secrets/observer.crt --queuePrivateKey /secrets/observer.key |
    tr -d ' \n' | grep -o "{[^{}]*\"partition\":\"app.$1\"[^{}]*}" |
    grep -o '"holder":"[0-9a-f]*-' | sed -e 's/"holder":"//' -e 's/-$//'
}

say "check 2: the applier holding the partition killed mid-run"
simulate sim_kill &
sim=$!
victim=""
for _ in $(seq 1 60); do
  victim=$(holder sim_kill || true)
  [ -n "$victim" ] && break
  sleep 1
done
[ -n "$victim" ] || { say "no applier held app.sim_kill within 60 s"; exit 1; }
docker kill "$victim" >/dev/null
say "killed applier $victim, which held app.sim_kill"
wait "$sim"
say "check 2 passed: target equals the model"

say "check 3: ingest restarted mid-run"
simulate sim_restart &
sim=$!
sleep 5
"${compose[@]}" restart ingest
wait "$sim"
say "check 3 passed: target equals the model, nothing lost across the restart"

say "down -v"
"${compose[@]}" down -v
say "all checks passed"
