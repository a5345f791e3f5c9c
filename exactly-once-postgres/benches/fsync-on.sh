#!/usr/bin/env bash
# Runs the `durable` benchmark against a PostgreSQL with the server's defaults (fsync and
# synchronous_commit on), where a commit waits for the disk; the test harness's server
# runs with fsync=off. A throwaway server on a Unix socket in a temporary directory
# (as the postgres user when run as root), stopped and removed on exit.
#   exactly-once-postgres/benches/fsync-on.sh [-- --seconds 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/exactly-once-bench-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    as_pg=(runuser -u postgres --)
fi
stop() {
    "${as_pg[@]}" "$bin/pg_ctl" -w -m immediate -D "$dir/data" stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
"${as_pg[@]}" "$bin/initdb" -U postgres --auth=trust -D "$dir/data" >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -w -D "$dir/data" -l "$dir/log" -o \
    "-c listen_addresses='' -k $dir -c max_connections=300 -c shared_preload_libraries=pg_stat_statements" \
    start >/dev/null
DATABASE_URL="host=$dir user=postgres dbname=postgres" \
    cargo bench -p exactly-once-postgres --bench durable "$@"
