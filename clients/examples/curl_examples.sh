#!/usr/bin/env bash
# flight_lake over HTTP with nothing but curl: upload a CSV, query it in every format,
# read the catalog, and see what errors look like.
#
#   FLIGHT_LAKE_HTTP=http://127.0.0.1:3110 ./curl_examples.sh
#
# Each step prints what it does; the script stops at the first unexpected failure.
set -euo pipefail

BASE="${FLIGHT_LAKE_HTTP:-http://127.0.0.1:3110}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

cat > "$WORK/trips.csv" <<'EOF'
trip_id,city,started,minutes,paid
1,Lyon,2024-03-01,12.5,true
2,Lyon,2024-03-01,7.0,false
3,Nantes,2024-03-02,,true
4,Nantes,2024-03-03,31.25,true
EOF

step "health"
curl -sS --fail-with-body "$BASE/health"

step "upload a CSV as a multipart form (mode=create)"
curl -sS --fail-with-body -F "file=@$WORK/trips.csv" "$BASE/v1/ingest?name=trips"

step "upload it again as a raw body, replacing the dataset"
curl -sS --fail-with-body --data-binary "@$WORK/trips.csv" -H 'Content-Type: text/csv' \
  "$BASE/v1/ingest?name=trips&mode=replace"

step "append the same rows"
curl -sS --fail-with-body --data-binary "@$WORK/trips.csv" -H 'Content-Type: text/csv' \
  "$BASE/v1/ingest?name=trips&mode=append"

QUERY='{"sql": "SELECT city, count(*) AS trips, sum(minutes) AS minutes FROM trips GROUP BY city ORDER BY city"}'

step "query: JSON rows (the default)"
curl -sS --fail-with-body -d "$QUERY" "$BASE/v1/sql"

step "query: CSV"
curl -sS --fail-with-body -H 'Accept: text/csv' -d "$QUERY" "$BASE/v1/sql"

step "query: NDJSON, one row per line"
curl -sS --fail-with-body -H 'Accept: application/x-ndjson' -d "$QUERY" "$BASE/v1/sql"

step "query: Parquet and Arrow IPC, saved to files"
curl -sS --fail-with-body -H 'Accept: application/vnd.apache.parquet' -d "$QUERY" \
  -o "$WORK/result.parquet" "$BASE/v1/sql"
curl -sS --fail-with-body -H 'Accept: application/vnd.apache.arrow.stream' -d "$QUERY" \
  -o "$WORK/result.arrows" "$BASE/v1/sql"
ls -l "$WORK/result.parquet" "$WORK/result.arrows"

step "the catalog, and one dataset's manifest"
curl -sS --fail-with-body "$BASE/v1/catalog"
echo
curl -sS --fail-with-body "$BASE/v1/catalog/trips"

step "stored objects (read-only, for operators)"
curl -sS --fail-with-body "$BASE/v1/storage/list?prefix=datasets/trips/"

step "errors: JSON bodies with the HTTP status"
curl -sS -w ' -> HTTP %{http_code}\n' "$BASE/v1/catalog/nobody"
curl -sS -w ' -> HTTP %{http_code}\n' -d '{"sql": "DROP TABLE trips"}' "$BASE/v1/sql"
curl -sS -w ' -> HTTP %{http_code}\n' --data-binary $'a,b\n1,2\n3,4,5\n' \
  -H 'Content-Type: text/csv' "$BASE/v1/ingest?name=broken"
