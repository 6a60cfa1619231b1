#!/usr/bin/env bash
# A plain (not editable) `pip install .` into a fresh virtualenv is a working evalsvc: from a directory
# that holds no source, `evalsvc db upgrade` migrates a fresh database (the migrations are package data
# of evalsvc.store) and an `evalsvc worker` scores a submitted run on it. What the Dockerfile relies on.
#
#   .ci/plain-install-check.sh            # needs Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379)
set -euo pipefail
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="$(mktemp -d)"
VENV="${VENV:-$SCRATCH/venv}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
cleanup() { rm -rf "$SCRATCH"; }
trap cleanup EXIT

python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
"$VENV/bin/python" -m pip install --quiet "$SOURCE"
cd "$SCRATCH"  # no evalsvc source here: everything below runs the installed package
"$VENV/bin/python" - <<'EOF'
import evalsvc, evalsvc.store.migrate as migrate
assert "site-packages" in evalsvc.__file__, evalsvc.__file__
assert (migrate.MIGRATIONS_DIR / "env.py").is_file(), migrate.MIGRATIONS_DIR
print("installed:", evalsvc.__file__, "migrations:", migrate.MIGRATIONS_DIR)
EOF

# A Redis database of its own, claimed as the test suite claims them (tests/redis_databases.py).
DB_NUMBER="$("$VENV/bin/python" - "$REDIS" <<'EOF'
import sys, uuid
from redis import Redis
locks = Redis.from_url(sys.argv[1] + "/0")
for number in range(1, 16):
    if locks.set(f"evalsvc-tests:redis-db-claim:{number}", uuid.uuid4().hex, nx=True, ex=3600):
        print(number)
        break
else:
    sys.exit("no free Redis database")
EOF
)"
release() { "$VENV/bin/python" -c "from redis import Redis; Redis.from_url('$REDIS/0').delete('evalsvc-tests:redis-db-claim:$DB_NUMBER')"; cleanup; }
trap release EXIT

export EVALSVC_DATABASE_URL="sqlite:///$SCRATCH/fresh.sqlite3"  # explicit: never migrated on first use
export EVALSVC_REDIS_URL="$REDIS/$DB_NUMBER" EVALSVC_BULK_QUEUE="plain-install-$$"
export EVALSVC_DATA_DIR="$SCRATCH/data" EVALSVC_MODEL=tiny EVALSVC_MAX_NEW_TOKENS=12
EVALSVC="$VENV/bin/evalsvc"

if "$EVALSVC" bulk list 2>"$SCRATCH/before.err"; then
    echo "a fresh database without migrations should be refused" >&2; exit 1
fi
grep -q "evalsvc db upgrade" "$SCRATCH/before.err"
"$EVALSVC" db upgrade
"$EVALSVC" db current

cp "$SOURCE/examples/query.wav" "$SOURCE/examples/response.wav" "$SCRATCH/"
printf '{"id": "a", "query_audio": "query.wav", "response_audio": "response.wav", "system": "s", "dataset": "d"}\n' \
    >"$SCRATCH/manifest.jsonl"
RUN="$("$EVALSVC" bulk submit "$SCRATCH/manifest.jsonl" --name plain-install)"
"$EVALSVC" worker --burst --no-scheduler
"$EVALSVC" bulk status "$RUN" | tee "$SCRATCH/status.json"
"$VENV/bin/python" -c "
import json, sys
status = json.load(open('$SCRATCH/status.json'))
assert (status['status'], status['done'], status['failed']) == ('done', 1, 0), status
print('plain install: db upgrade and a worker run on a fresh database: OK')
"
