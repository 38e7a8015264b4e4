#!/usr/bin/env bash
# The local AWS test bed: moto server (EC2, Auto Scaling, DynamoDB, STS, Step Functions executing
# ASL, EventBridge) behind the bed gateway (tests/src/gateway.rs), both on 127.0.0.1 only,
# started and stopped by PID.
#
#   bed.sh start | stop | status
#   bed.sh run -- COMMAND...   start, run COMMAND with AWS_ENDPOINT_URL set, stop (whatever happens)
#
# Settings: BED_PORT (gateway, 5100), BED_MOTO_PORT (5101), BED_DIR (.bed), VENV (.venv),
# BED_IAM (on: moto evaluates each function's and member role's actions from the templates; off).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${BED_DIR:-$root/.bed}
port=${BED_PORT:-5100}
moto_port=${BED_MOTO_PORT:-5101}
venv=${VENV:-$root/.venv}
gateway=${BED_GATEWAY:-${CARGO_TARGET_DIR:-$root/target}/debug/testbed}

alive() { [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

wait_for() { # url, name
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bed: $2 did not come up; its log:" >&2
  tail -n 30 "$state/$2.log" >&2 || true
  return 1
}

start() {
  if alive gateway || alive moto; then
    echo "bed: already running (gateway :$port, moto :$moto_port)"
    return 0
  fi
  [[ -x "$gateway" ]] || { echo "bed: $gateway is missing; run 'make build-debug'" >&2; return 1; }
  [[ -x "$venv/bin/moto_server" ]] || { echo "bed: moto is missing; run 'make setup'" >&2; return 1; }
  mkdir -p "$state"
  local iam_roles=""
  if [[ "${BED_IAM:-on}" != off ]]; then
    iam_roles="$state/iam-roles.json"
    "$gateway" iam-roles >"$iam_roles"
  fi
  "$gateway" gateway --listen "127.0.0.1:$port" --moto "http://127.0.0.1:$moto_port" \
    >"$state/gateway.log" 2>&1 &
  echo $! >"$state/gateway.pid"
  # moto's Step Functions invoke Lambda at localhost:$MOTO_PORT: that is the gateway.
  # moto_server.py is moto_server plus fills for moto gaps (see that file).
  MOTO_PORT=$port MOTO_EC2_LOAD_DEFAULT_AMIS=false BED_IAM_ROLES=$iam_roles \
    "$venv/bin/python" "$root/infra/local/moto_server.py" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for "http://127.0.0.1:$moto_port/moto-api/" moto
  wait_for "http://127.0.0.1:$port/__bed/health" gateway
  curl -sf -X POST -H 'content-type: application/json' \
    -d '{"stepfunctions":{"execute_state_machine":true}}' \
    "http://127.0.0.1:$moto_port/moto-api/config" >/dev/null
  echo "bed: up (AWS_ENDPOINT_URL=http://127.0.0.1:$port; moto on :$moto_port; IAM ${BED_IAM:-on}; logs in $state)"
}

stop() {
  local name pid
  for name in gateway moto; do
    if [[ -f "$state/$name.pid" ]]; then
      pid=$(cat "$state/$name.pid")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$state/$name.pid"
    fi
  done
  echo "bed: stopped"
}

status() {
  local name
  for name in gateway moto; do
    if alive "$name"; then echo "$name: running (pid $(cat "$state/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  run)
    shift
    [[ "${1:-}" == "--" ]] && shift
    start
    trap stop EXIT
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
      AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
    "$@"
    ;;
  *) echo "usage: $0 start|stop|status|run -- COMMAND..." >&2; exit 2 ;;
esac
