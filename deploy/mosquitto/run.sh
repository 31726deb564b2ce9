#!/bin/sh
# Runs Mosquitto and has it reload (SIGHUP) whenever sensornet changes the credential store
# (passwd, acl in SENSORNET_BROKER_AUTH_DIR; written by `sensornet broker setup`, the API,
# the CLI): compose's counterpart of systemd's sensornet-broker-reload.path. The writer
# confirms each change by logging in with a fresh canary, so a reload that never happens
# is an error at the writer, not a silent gap. tests/test_deploy.py runs this script.
set -u
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
auth="${SENSORNET_BROKER_AUTH_DIR:-/broker-auth}"
poll="${RELOAD_POLL_S:-1}"

until [ -f "$auth/passwd" ] && [ -f "$auth/acl" ]; do
    echo "waiting for $auth/passwd and $auth/acl (sensornet broker setup)"
    sleep 1
done
"${MOSQUITTO_BIN:-mosquitto}" -c "$conf" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
seen=$(cat "$auth/passwd" "$auth/acl" 2>/dev/null | md5sum)
while kill -0 "$pid" 2>/dev/null; do
    sleep "$poll" &
    wait $!  # returns at once on TERM, so the trap runs without waiting for the poll
    now=$(cat "$auth/passwd" "$auth/acl" 2>/dev/null | md5sum)
    if [ "$now" != "$seen" ]; then
        seen=$now
        kill -HUP "$pid" 2>/dev/null
    fi
done
wait "$pid"
