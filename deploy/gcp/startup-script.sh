#!/bin/bash
# Instance template startup-script for an ebbflow TaskManager in a GCP
# managed instance group (docs/deploy-gcp.md). The guest environment runs it
# as root at every boot; it is idempotent. It installs your ebbflow binary as
# the systemd unit ebbflow-taskmanager.service with the GCP termination watch
# on (preemption, terminating host maintenance). The instance template's
# shutdown-script (shutdown-script.sh) drains it when the MIG deletes the VM.
#
# Grace arithmetic (docs/deploy-gcp.md), in seconds:
#   jobmanager.drain-timeout  <  taskmanager.drain-timeout  <  TimeoutStopSec  <  budget
#   standard VM (MIG scale-in deletes it, ~90 s):   60 < 75 < 82 < 90
#   Spot/preemptible VM (preemption, 30 s):          15 < 22 < 26 < 30
set -euo pipefail

# ---- settings: fill in -------------------------------------------------------
ARTIFACTS=gs://my-ebbflow-artifacts/ebbflow   # holds your ebbflow build
ETCD_ENDPOINTS=10.128.0.10:2379               # comma-separated host:port
CLUSTER_ID=wordcount
CHECKPOINT_DIR=s3://ebbflow-checkpoints/wordcount
S3_ENDPOINT=minio.internal:9000               # an S3-compatible store (docs/deploy-gcp.md)
S3_REGION=us-east-1
S3_TLS=true
S3_ACCESS_KEY_SECRET=ebbflow-s3-access-key    # Secret Manager secrets
S3_SECRET_KEY_SECRET=ebbflow-s3-secret-key
SLOTS=2                                       # e.g. one per vCPU
# -----------------------------------------------------------------------------

meta() {
	curl -sS --fail -H 'Metadata-Flavor: Google' "http://metadata.google.internal/computeMetadata/v1/instance/$1"
}
name=$(meta name)
ip=$(meta network-interfaces/0/ip)
model=$(meta scheduling/provisioning-model 2>/dev/null || echo STANDARD)
preemptible=$(meta scheduling/preemptible 2>/dev/null || echo FALSE)
if [ "$model" = SPOT ] || [ "$preemptible" = TRUE ]; then
	DRAIN_TIMEOUT=22 STOP_TIMEOUT=26 # Spot/preemptible: 30 s budget from preemption to power-off
else
	DRAIN_TIMEOUT=75 STOP_TIMEOUT=82 # standard: 90 s budget from stop/delete to power-off
fi

id -u ebbflow >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ebbflow
install -d -m 0750 -o root -g ebbflow /etc/ebbflow
if [ ! -x /usr/local/bin/ebbflow ]; then
	gcloud storage cp "$ARTIFACTS/ebbflow" /usr/local/bin/ebbflow.tmp
	chmod 0755 /usr/local/bin/ebbflow.tmp
	mv /usr/local/bin/ebbflow.tmp /usr/local/bin/ebbflow
fi

# ebbflow takes static S3 keys; keep them in Secret Manager.
access_key=$(gcloud secrets versions access latest --secret="$S3_ACCESS_KEY_SECRET")
umask 0027
gcloud secrets versions access latest --secret="$S3_SECRET_KEY_SECRET" >/etc/ebbflow/s3-secret-key
chgrp ebbflow /etc/ebbflow/s3-secret-key

cat >/etc/ebbflow/taskmanager.env <<EOF
EBBFLOW_ETCD_ENDPOINTS=$ETCD_ENDPOINTS
EBBFLOW_CLUSTER_ID=$CLUSTER_ID
EBBFLOW_CHECKPOINT_DIR=$CHECKPOINT_DIR
EBBFLOW_S3_ENDPOINT=$S3_ENDPOINT
EBBFLOW_S3_REGION=$S3_REGION
EBBFLOW_S3_TLS=$S3_TLS
EBBFLOW_S3_ACCESS_KEY=$access_key
EBBFLOW_S3_SECRET_KEY_FILE=/etc/ebbflow/s3-secret-key
EBBFLOW_TASKMANAGER_ID=$name
EBBFLOW_TASKMANAGER_SLOTS=$SLOTS
EBBFLOW_TASKMANAGER_ADVERTISE=$ip:6121
EBBFLOW_TASKMANAGER_DATA_ADVERTISE=$ip:6122
EBBFLOW_TASKMANAGER_TERMINATION_WATCH=gcp
EBBFLOW_TASKMANAGER_DRAIN_TIMEOUT=${DRAIN_TIMEOUT}s
EBBFLOW_LOG_FORMAT=json
EOF
chgrp ebbflow /etc/ebbflow/taskmanager.env
umask 0022

cat >/etc/systemd/system/ebbflow-taskmanager.service <<EOF
[Unit]
Description=ebbflow TaskManager
Wants=network-online.target
After=network-online.target

[Service]
User=ebbflow
EnvironmentFile=/etc/ebbflow/taskmanager.env
ExecStart=/usr/local/bin/ebbflow taskmanager
# SIGTERM drains; systemd waits this long before SIGKILL: above
# taskmanager.drain-timeout, below the shutdown budget.
KillSignal=SIGTERM
TimeoutStopSec=$STOP_TIMEOUT
Restart=on-failure
RestartSec=5
LimitNOFILE=65536
EOF
systemctl daemon-reload
# Not enabled: this script starts it at every boot, after writing the files
# above (a restart here would drain a running TaskManager for nothing).
systemctl start ebbflow-taskmanager.service
