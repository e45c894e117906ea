#!/bin/bash
# Instance template shutdown-script for an ebbflow TaskManager
# (docs/deploy-gcp.md). The guest environment runs it as root when the VM is
# stopped or deleted — a MIG scale-in deletes it — or preempted. Compute
# Engine powers the VM off about 90 s after a stop or delete (30 s after a
# preemption), whether or not this has finished.
#
# It stops ebbflow-taskmanager.service: systemd sends SIGTERM, the
# TaskManager drains (the JobManager moves its work through a savepoint and
# releases it) and exits; systemctl returns when it has, or when the unit's
# TimeoutStopSec (set by startup-script.sh inside the budget) passes and
# systemd kills it. The OS shutdown stops the same unit; both are one stop
# job, so there is one SIGTERM. On a preemption the TaskManager's own
# watch (taskmanager.termination-watch=gcp) may have started the drain a
# moment earlier; the SIGTERM then does not interrupt it.
set -uo pipefail

unit=ebbflow-taskmanager.service
preempted=$(curl -sS --max-time 2 -H 'Metadata-Flavor: Google' \
	http://metadata.google.internal/computeMetadata/v1/instance/preempted 2>/dev/null || echo unknown)
echo "ebbflow shutdown-script: preempted=$preempted; stopping $unit (SIGTERM: drain)"
start=$(date +%s)
if systemctl is-active --quiet "$unit"; then
	systemctl stop "$unit"
fi
echo "ebbflow shutdown-script: $unit stopped after $(($(date +%s) - start))s (result: $(systemctl show -p Result --value "$unit"))"
