#!/usr/bin/env bash
# Start the web server and a Celery worker together (make run). Ctrl+C stops both.
set -euo pipefail
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export DEBUG=${DEBUG:-1}

$PY -m celery -A labseg worker -Q default,gpu --concurrency 1 -B --loglevel INFO \
  --schedule var/celerybeat-schedule &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM

echo
echo "  LabSeg is running at http://$HOST:$PORT/   (API docs: http://$HOST:$PORT/api/docs/, admin: http://$HOST:$PORT/admin/)"
echo
$PY manage.py runserver "$HOST:$PORT" --noreload
