#!/bin/sh
# Entry point of the BigQuery emulator service in docker-compose.kafka.yml: the same pinned
# environment as the local stack (scripts/stack/bqemulator-requirements.txt), installed into the
# container on first start, with DuckDB's extensions taken from their PyPI wheels.
set -eu
if [ ! -x /opt/bq/venv/bin/bqemulator ]; then
  python -m venv /opt/bq/venv
  /opt/bq/venv/bin/pip install --disable-pip-version-check --no-input -q -r /stack/bqemulator-requirements.txt
  /opt/bq/venv/bin/python - <<'PY'
import duckdb, glob, importlib, os
con = duckdb.connect()
for name in ('spatial', 'avro'):
    pkg = importlib.import_module('duckdb_extension_' + name)
    path = glob.glob(os.path.join(os.path.dirname(pkg.__file__), 'extensions', '*', name + '.duckdb_extension'))[0]
    con.execute("INSTALL '" + path + "'")
PY
fi
exec /opt/bq/venv/bin/bqemulator start --rest-host 0.0.0.0 --rest-port 9050 --grpc-host 0.0.0.0 --grpc-port 9060 \
  --persistent --data-dir /data --project "${GCP_PROJECT_ID:-txstream-local}" --log-format json --log-level warning
