#!/bin/sh
# Runs once, when the target's data directory is created (the postgres image runs
# /docker-entrypoint-initdb.d/*.sh then): the role wharf uses, which is not a superuser. It owns
# the staging schema and may read and write the rows of the tables the superuser creates (the
# simulator's, here); it cannot change the schema of any table it does not own. README, "The
# wharf role", lists the same grants for a target you run yourself.
set -eu
password=$(cat /run/pg/wharf-password)
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE wharf LOGIN PASSWORD '$password';
CREATE SCHEMA _replicator AUTHORIZATION wharf;
GRANT USAGE ON SCHEMA public TO wharf;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO wharf;
ALTER DEFAULT PRIVILEGES FOR ROLE ${POSTGRES_USER:-postgres} GRANT USAGE ON SCHEMAS TO wharf;
ALTER DEFAULT PRIVILEGES FOR ROLE ${POSTGRES_USER:-postgres} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO wharf;
SQL
