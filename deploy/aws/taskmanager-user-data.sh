#!/bin/bash
# Launch template user data for an ebbflow TaskManager in an EC2 Auto Scaling
# group (docs/deploy-aws.md). cloud-init runs it once, as root, at the
# instance's first boot (Amazon Linux 2023: aws CLI, curl and systemd are
# there). It installs your ebbflow binary as the systemd unit
# ebbflow-taskmanager.service with the AWS termination watch on, so that a
# scale-in (target-lifecycle-state Terminated, held in Terminating:Wait by
# the lifecycle hook) or a spot interruption drains the TaskManager, and the
# unit's ExecStopPost completes the lifecycle action once it has exited.
#
# Grace arithmetic (keep in step with create-asg.sh and the JobManager):
#   jobmanager.drain-timeout 60s  <  taskmanager.drain-timeout 90s
#   <  TimeoutStopSec 100s  <  lifecycle hook heartbeat timeout 300s;
#   spot: 5s poll + 90s drain < the 120s interruption notice.
set -euo pipefail

# ---- settings: fill in -------------------------------------------------------
ARTIFACTS=s3://my-ebbflow-artifacts/ebbflow   # your ebbflow build and asg-lifecycle.sh
ASG_NAME=ebbflow-taskmanagers                 # as in create-asg.sh
LIFECYCLE_HOOK_NAME=ebbflow-drain             # as in create-asg.sh
ETCD_ENDPOINTS=10.0.1.10:2379                 # comma-separated host:port
CLUSTER_ID=wordcount
CHECKPOINT_DIR=s3://my-ebbflow-checkpoints/wordcount
S3_REGION=us-east-1
S3_ENDPOINT=s3.us-east-1.amazonaws.com
S3_ACCESS_KEY_PARAM=/ebbflow/s3-access-key    # SSM parameters (SecureString)
S3_SECRET_KEY_PARAM=/ebbflow/s3-secret-key
SLOTS=2                                       # e.g. one per vCPU
# -----------------------------------------------------------------------------

imds_token=$(curl -sS --fail -X PUT http://169.254.169.254/latest/api/token \
	-H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
meta() {
	curl -sS --fail -H "X-aws-ec2-metadata-token: $imds_token" "http://169.254.169.254/latest/meta-data/$1"
}
region=$(meta placement/region)
instance_id=$(meta instance-id)
private_ip=$(meta local-ipv4)

id -u ebbflow >/dev/null 2>&1 || useradd --system --no-create-home --shell /sbin/nologin ebbflow
install -d -m 0755 /usr/local/lib/ebbflow
install -d -m 0750 -o root -g ebbflow /etc/ebbflow
aws s3 cp --region "$region" "$ARTIFACTS/ebbflow" /usr/local/bin/ebbflow
aws s3 cp --region "$region" "$ARTIFACTS/asg-lifecycle.sh" /usr/local/lib/ebbflow/asg-lifecycle.sh
chmod 0755 /usr/local/bin/ebbflow /usr/local/lib/ebbflow/asg-lifecycle.sh

# ebbflow takes static S3 keys (s3.access-key, s3.secret-key-file); keep
# them in SSM Parameter Store, never in the user data.
access_key=$(aws ssm get-parameter --region "$region" --name "$S3_ACCESS_KEY_PARAM" --with-decryption --query Parameter.Value --output text)
umask 0027
aws ssm get-parameter --region "$region" --name "$S3_SECRET_KEY_PARAM" --with-decryption \
	--query Parameter.Value --output text >/etc/ebbflow/s3-secret-key
chgrp ebbflow /etc/ebbflow/s3-secret-key
chmod 0440 /etc/ebbflow/s3-secret-key

cat >/etc/ebbflow/taskmanager.env <<EOF
EBBFLOW_ETCD_ENDPOINTS=$ETCD_ENDPOINTS
EBBFLOW_CLUSTER_ID=$CLUSTER_ID
EBBFLOW_CHECKPOINT_DIR=$CHECKPOINT_DIR
EBBFLOW_S3_ENDPOINT=$S3_ENDPOINT
EBBFLOW_S3_REGION=$S3_REGION
EBBFLOW_S3_ACCESS_KEY=$access_key
EBBFLOW_S3_SECRET_KEY_FILE=/etc/ebbflow/s3-secret-key
EBBFLOW_TASKMANAGER_ID=$instance_id
EBBFLOW_TASKMANAGER_SLOTS=$SLOTS
EBBFLOW_TASKMANAGER_ADVERTISE=$private_ip:6121
EBBFLOW_TASKMANAGER_DATA_ADVERTISE=$private_ip:6122
EBBFLOW_TASKMANAGER_TERMINATION_WATCH=aws
EBBFLOW_TASKMANAGER_METADATA_POLL_INTERVAL=5s
EBBFLOW_TASKMANAGER_DRAIN_TIMEOUT=90s
EBBFLOW_LOG_FORMAT=json
EOF
cat >/etc/ebbflow/lifecycle.env <<EOF
ASG_NAME=$ASG_NAME
LIFECYCLE_HOOK_NAME=$LIFECYCLE_HOOK_NAME
EOF
chgrp ebbflow /etc/ebbflow/taskmanager.env /etc/ebbflow/lifecycle.env
umask 0022

cat >/etc/systemd/system/ebbflow-taskmanager.service <<'EOF'
[Unit]
Description=ebbflow TaskManager
Wants=network-online.target
After=network-online.target

[Service]
User=ebbflow
EnvironmentFile=/etc/ebbflow/taskmanager.env
# In a warm pool the instance waits here until it is put in service.
ExecStartPre=/usr/local/lib/ebbflow/asg-lifecycle.sh wait-in-service
TimeoutStartSec=infinity
ExecStart=/usr/local/bin/ebbflow taskmanager
# After the TaskManager exited (released after its drain, or stopped): if
# the group is terminating the instance, let it go on now ("+": as root).
ExecStopPost=+/usr/local/lib/ebbflow/asg-lifecycle.sh complete
# SIGTERM drains; systemd waits this long before SIGKILL. Above
# taskmanager.drain-timeout (90s), below the hook's heartbeat (300s).
KillSignal=SIGTERM
TimeoutStopSec=100
Restart=on-failure
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --now ebbflow-taskmanager.service
