#!/bin/bash
# Creates the TaskManager side of an ebbflow job cluster on AWS with the aws
# CLI (docs/deploy-aws.md walks through it): an instance role, a launch
# template whose user data is taskmanager-user-data.sh, the Auto Scaling
# group, its termination lifecycle hook and a target-tracking scaling policy.
# Fill in taskmanager-user-data.sh first; run from this folder.
#
#   AMI_ID=ami-… SUBNETS=subnet-a,subnet-b SECURITY_GROUP=sg-… \
#   ARTIFACTS_BUCKET=my-ebbflow-artifacts ./create-asg.sh
#
# Grace arithmetic: HEARTBEAT_TIMEOUT (300s) must exceed the poll interval
# (5s) + taskmanager.drain-timeout (90s) + the time to exit and complete the
# action; the hook holds a terminating instance at most that long.
set -euo pipefail
cd "$(dirname "$0")"

: "${AMI_ID:?set AMI_ID (Amazon Linux 2023, x86_64 for a GOARCH=amd64 build)}"
: "${SUBNETS:?set SUBNETS (comma-separated subnet ids, one per availability zone)}"
: "${SECURITY_GROUP:?set SECURITY_GROUP (allows 6121-6122 and 8082 between the cluster members, 2379 to etcd)}"
: "${ARTIFACTS_BUCKET:?set ARTIFACTS_BUCKET (holds ebbflow/ebbflow and ebbflow/asg-lifecycle.sh)}"
REGION=${REGION:-$(aws configure get region)}
ACCOUNT_ID=${ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}
ASG_NAME=${ASG_NAME:-ebbflow-taskmanagers}
HOOK_NAME=${HOOK_NAME:-ebbflow-drain}
ROLE=${ROLE:-ebbflow-taskmanager}
INSTANCE_TYPE=${INSTANCE_TYPE:-c7i.large}
MIN_SIZE=${MIN_SIZE:-2}
MAX_SIZE=${MAX_SIZE:-8} # keep MAX_SIZE x slots <= the job's max parallelism (128 key groups by default)
HEARTBEAT_TIMEOUT=${HEARTBEAT_TIMEOUT:-300}
TARGET_CPU=${TARGET_CPU:-65}

# 1. Instance role: complete the hook, fetch the binary, read the S3 keys.
aws iam create-role --role-name "$ROLE" --assume-role-policy-document \
	'{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
sed -e "s/REGION/$REGION/g" -e "s/ACCOUNT_ID/$ACCOUNT_ID/g" -e "s/ASG_NAME/$ASG_NAME/g" \
	-e "s/ARTIFACTS_BUCKET/$ARTIFACTS_BUCKET/g" iam-policy.json >/tmp/ebbflow-taskmanager-policy.json
aws iam put-role-policy --role-name "$ROLE" --policy-name "$ROLE" \
	--policy-document file:///tmp/ebbflow-taskmanager-policy.json
aws iam create-instance-profile --instance-profile-name "$ROLE"
aws iam add-role-to-instance-profile --instance-profile-name "$ROLE" --role-name "$ROLE"
sleep 10 # a new instance profile takes a few seconds to be usable by EC2

# 2. Launch template: IMDSv2 only (tokens required), hop limit 1 for a
#    process on the host (2 if the TaskManager runs in a container).
user_data=$(base64 -w0 taskmanager-user-data.sh)
aws ec2 create-launch-template --region "$REGION" --launch-template-name ebbflow-taskmanager \
	--launch-template-data "{
  \"ImageId\": \"$AMI_ID\",
  \"InstanceType\": \"$INSTANCE_TYPE\",
  \"IamInstanceProfile\": {\"Name\": \"$ROLE\"},
  \"SecurityGroupIds\": [\"$SECURITY_GROUP\"],
  \"MetadataOptions\": {\"HttpEndpoint\": \"enabled\", \"HttpTokens\": \"required\", \"HttpPutResponseHopLimit\": 1},
  \"UserData\": \"$user_data\"
}"

# 3. The group, with the termination hook from the start: a terminating
#    instance waits in Terminating:Wait (target-lifecycle-state Terminated)
#    until asg-lifecycle.sh completes the action or the heartbeat passes.
aws autoscaling create-auto-scaling-group --region "$REGION" --auto-scaling-group-name "$ASG_NAME" \
	--launch-template 'LaunchTemplateName=ebbflow-taskmanager,Version=$Latest' \
	--min-size "$MIN_SIZE" --max-size "$MAX_SIZE" --desired-capacity "$MIN_SIZE" \
	--vpc-zone-identifier "$SUBNETS" --default-instance-warmup 120 \
	--lifecycle-hook-specification-list \
	"LifecycleHookName=$HOOK_NAME,LifecycleTransition=autoscaling:EC2_INSTANCE_TERMINATING,HeartbeatTimeout=$HEARTBEAT_TIMEOUT,DefaultResult=CONTINUE"

# 4. Scale on the group's average CPU (docs/deploy-aws.md says why).
aws autoscaling put-scaling-policy --region "$REGION" --auto-scaling-group-name "$ASG_NAME" \
	--policy-name ebbflow-cpu --policy-type TargetTrackingScaling \
	--target-tracking-configuration "{\"PredefinedMetricSpecification\":{\"PredefinedMetricType\":\"ASGAverageCPUUtilization\"},\"TargetValue\":$TARGET_CPU}"

echo "created $ASG_NAME ($MIN_SIZE..$MAX_SIZE instances) with lifecycle hook $HOOK_NAME (heartbeat ${HEARTBEAT_TIMEOUT}s)"
