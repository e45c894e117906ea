#!/bin/bash
# Helpers for the ebbflow TaskManager's systemd unit on an instance of an EC2
# Auto Scaling group (installed by taskmanager-user-data.sh as
# /usr/local/lib/ebbflow/asg-lifecycle.sh; see docs/deploy-aws.md).
#
#   asg-lifecycle.sh wait-in-service   ExecStartPre: while the group keeps the
#                                      instance in a warm pool (Warmed:*),
#                                      wait; start once it is put in service.
#   asg-lifecycle.sh complete          ExecStopPost: if the group is taking the
#                                      instance out of service (target state
#                                      Terminated or Warmed:*), complete the
#                                      termination lifecycle action with
#                                      CONTINUE so that the group goes on at
#                                      once instead of after the hook's
#                                      heartbeat timeout. Otherwise (the
#                                      TaskManager crashed and systemd will
#                                      restart it; someone ran systemctl stop)
#                                      do nothing.
#
# The TaskManager itself drains when the target lifecycle state becomes
# Terminated (taskmanager.termination-watch=aws); this runs after it exited.
#
# Reads /etc/ebbflow/lifecycle.env: ASG_NAME, LIFECYCLE_HOOK_NAME.
# Needs the aws CLI, curl, and the IAM permission
# autoscaling:CompleteLifecycleAction on the group (iam-policy.json).
# IMDS_ENDPOINT overrides http://169.254.169.254 and WAIT_POLL_SECONDS the 5 s
# between checks while waiting (both for tests against an imitation).
set -euo pipefail

IMDS=${IMDS_ENDPOINT:-http://169.254.169.254}
LIFECYCLE_ENV=${LIFECYCLE_ENV:-/etc/ebbflow/lifecycle.env}
WAIT_POLL_SECONDS=${WAIT_POLL_SECONDS:-5}
TOKEN=

log() { echo "asg-lifecycle: $*" >&2; }

# IMDSv2: a session token from a PUT, then GETs that carry it.
imds_token() {
	TOKEN=$(curl -sS --fail --max-time 2 -X PUT "$IMDS/latest/api/token" \
		-H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
}

# meta PATH prints the item; fails on 404 (not set) and other errors.
meta() {
	curl -sS --fail --max-time 2 -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/meta-data/$1"
}

target_state() {
	meta autoscaling/target-lifecycle-state 2>/dev/null || echo ""
}

wait_in_service() {
	while :; do
		if imds_token; then
			state=$(target_state)
			case "$state" in
			Warmed:*) log "target-lifecycle-state $state: in the warm pool; waiting to be put in service" ;;
			*)
				log "target-lifecycle-state ${state:-none (not in an Auto Scaling group)}: starting the TaskManager"
				return 0
				;;
			esac
		else
			log "no instance metadata at $IMDS yet; waiting"
		fi
		sleep "$WAIT_POLL_SECONDS"
	done
}

complete_action() {
	if ! imds_token; then
		log "no instance metadata at $IMDS; nothing to complete"
		return 0
	fi
	state=$(target_state)
	case "$state" in
	Terminated | Warmed:*) ;;
	*)
		log "target-lifecycle-state '${state:-none}': the instance stays in service; nothing to complete"
		return 0
		;;
	esac
	# shellcheck source=/dev/null
	. "$LIFECYCLE_ENV"
	: "${ASG_NAME:?ASG_NAME is not set in $LIFECYCLE_ENV}"
	: "${LIFECYCLE_HOOK_NAME:?LIFECYCLE_HOOK_NAME is not set in $LIFECYCLE_ENV}"
	instance=$(meta instance-id)
	region=$(meta placement/region)
	for attempt in 1 2 3 4 5; do
		if aws autoscaling complete-lifecycle-action --region "$region" \
			--auto-scaling-group-name "$ASG_NAME" --lifecycle-hook-name "$LIFECYCLE_HOOK_NAME" \
			--instance-id "$instance" --lifecycle-action-result CONTINUE; then
			log "completed lifecycle action $LIFECYCLE_HOOK_NAME of $instance in $ASG_NAME (target state $state)"
			return 0
		fi
		log "complete-lifecycle-action failed (attempt $attempt); retrying"
		sleep $((2 * attempt))
	done
	# Never fail the unit's stop over this: the group continues by itself
	# after the hook's heartbeat timeout (its default result is CONTINUE).
	log "could not complete the lifecycle action; the group goes on after the hook's heartbeat timeout"
	return 0
}

case "${1:-}" in
wait-in-service) wait_in_service ;;
complete) complete_action ;;
*)
	echo "usage: $0 wait-in-service|complete" >&2
	exit 2
	;;
esac
