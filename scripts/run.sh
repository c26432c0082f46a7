#!/usr/bin/env bash
# Start the web server and a Celery worker together (make run). Ctrl+C stops both.
# The web server is gunicorn (static files and the built browser app served by whitenoise), with DEBUG off
# unless DEBUG=1 is set. WEB_WORKERS (3) and WEB_TIMEOUT (600 s, for large uploads) tune it.
set -euo pipefail
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
LOG_FORMAT=${LOG_FORMAT:-text}

# ALLOWED_HOSTS, unless set: the local names and HOST; when HOST is a wildcard address (0.0.0.0, ::), this
# machine's host names and addresses, which is how others on the network reach it.
if [ -z "${ALLOWED_HOSTS:-}" ]; then
  hosts="localhost,127.0.0.1,[::1]"
  case "$HOST" in
    0.0.0.0|::|"[::]") names="$(hostname 2>/dev/null || true) $(hostname -f 2>/dev/null || true) $(hostname -I 2>/dev/null || true)" ;;
    *) names=$HOST ;;
  esac
  for h in $names; do
    if [[ $h == *:* && $h != \[* ]]; then h="[$h]"; fi  # an IPv6 address
    hosts="$hosts,$h"
  done
  export ALLOWED_HOSTS=$hosts
fi
if [[ $HOST == *:* && $HOST != \[* ]]; then BIND="[$HOST]:$PORT"; else BIND="$HOST:$PORT"; fi

QUIET=()
if [ "$LOG_FORMAT" = json ]; then QUIET=(--quiet); fi  # no start-up banner between the JSON lines
$PY -m celery "${QUIET[@]}" -A labseg worker -Q default,gpu --concurrency 1 -B --loglevel INFO \
  --schedule "${LABSEG_VAR_DIR:-var}/celerybeat-schedule" &
WORKER=$!
# Live training sessions (issue 13) on their own worker: a session runs for as long as the page is open,
# so it must never hold up the training runs and predictions of the gpu queue.
$PY -m celery "${QUIET[@]}" -A labseg worker -Q live --concurrency 1 -n live@%h --loglevel INFO &
LIVE_WORKER=$!
WEB=
stop() { kill $WEB $WORKER $LIVE_WORKER 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo
echo "  LabSeg is running at http://$BIND/   (API docs: http://$BIND/api/docs/, admin: http://$BIND/admin/, health: http://$BIND/api/v1/health/)"
echo
# In the background so that a TERM sent to this script alone (not its process group) stops both at once.
$PY -m gunicorn labseg.wsgi:application --bind "$BIND" --workers "${WEB_WORKERS:-3}" \
  --timeout "${WEB_TIMEOUT:-600}" --logger-class labseg.logging.GunicornLogger --no-control-socket &
WEB=$!
wait $WEB
