#!/bin/bash
# Creates the TaskManager side of an ebbflow job cluster on GCP with gcloud
# (docs/deploy-gcp.md walks through it): a service account, an instance
# template with startup-script.sh and shutdown-script.sh, a regional managed
# instance group and its autoscaler. Fill in startup-script.sh first; run
# from this folder.
#
#   PROJECT=my-project REGION=us-central1 ./create-mig.sh        # standard VMs
#   SPOT=true PROJECT=my-project REGION=us-central1 ./create-mig.sh
set -euo pipefail
cd "$(dirname "$0")"

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION, e.g. us-central1}"
ARTIFACTS_BUCKET=${ARTIFACTS_BUCKET:-my-ebbflow-artifacts}
NETWORK=${NETWORK:-default}
SA_NAME=${SA_NAME:-ebbflow-taskmanager}
SA="$SA_NAME@$PROJECT.iam.gserviceaccount.com"
TEMPLATE=${TEMPLATE:-ebbflow-taskmanager}
MIG=${MIG:-ebbflow-taskmanagers}
MACHINE_TYPE=${MACHINE_TYPE:-c3-standard-4}
IMAGE_FAMILY=${IMAGE_FAMILY:-debian-12}
MIN_REPLICAS=${MIN_REPLICAS:-2}
MAX_REPLICAS=${MAX_REPLICAS:-8} # keep MAX_REPLICAS x slots <= the job's max parallelism (128 by default)
TARGET_CPU=${TARGET_CPU:-0.65}

# 1. Service account: read the binary and the S3 keys, write logs.
gcloud iam service-accounts create "$SA_NAME" --project "$PROJECT" --display-name "ebbflow TaskManager"
gcloud storage buckets add-iam-policy-binding "gs://$ARTIFACTS_BUCKET" --member "serviceAccount:$SA" --role roles/storage.objectViewer
for secret in ebbflow-s3-access-key ebbflow-s3-secret-key; do
	gcloud secrets add-iam-policy-binding "$secret" --project "$PROJECT" --member "serviceAccount:$SA" --role roles/secretmanager.secretAccessor
done
gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$SA" --role roles/logging.logWriter

# 2. Instance template. Spot VMs are deleted on preemption (a MIG recreates
#    them when capacity returns); the startup script picks the 30 s budget.
spot=()
if [ "${SPOT:-false}" = true ]; then
	spot=(--provisioning-model=SPOT --instance-termination-action=DELETE)
fi
gcloud compute instance-templates create "$TEMPLATE" --project "$PROJECT" \
	--machine-type "$MACHINE_TYPE" --image-family "$IMAGE_FAMILY" --image-project debian-cloud \
	--network "$NETWORK" --no-address --tags ebbflow \
	--service-account "$SA" --scopes cloud-platform \
	--metadata-from-file startup-script=startup-script.sh,shutdown-script=shutdown-script.sh \
	"${spot[@]}"

# 3. Regional MIG. Autoscaler deletions run the shutdown script (~90 s).
gcloud compute instance-groups managed create "$MIG" --project "$PROJECT" --region "$REGION" \
	--template "$TEMPLATE" --size "$MIN_REPLICAS"

# 4. Autoscaler on CPU (docs/deploy-gcp.md says why). The initialization
#    period keeps a new VM's start-up out of the signal; the scale-in
#    control removes at most one VM per 10 minutes, so a dip does not cost
#    several rescales.
gcloud compute instance-groups managed set-autoscaling "$MIG" --project "$PROJECT" --region "$REGION" \
	--mode on --min-num-replicas "$MIN_REPLICAS" --max-num-replicas "$MAX_REPLICAS" \
	--target-cpu-utilization "$TARGET_CPU" --cool-down-period 120 \
	--scale-in-control max-scaled-in-replicas=1,time-window=600

echo "created $MIG ($MIN_REPLICAS..$MAX_REPLICAS VMs, target CPU $TARGET_CPU) from $TEMPLATE"
