#!/usr/bin/env bash
# Builds the real servers the integration tests run — etcd and MinIO — once
# per machine, cached outside the checkout under
# ${XDG_CACHE_HOME:-$HOME/.cache}/ebbflow/tools/<name>-<version>/, and prints
# `NAME=path` lines for the Makefile. MinIO is AGPL: it is only ever run as
# a separate test process, never imported by ebbflow.
set -euo pipefail
cd "$(dirname "$0")/.."
ETCD_VERSION=v3.6.16
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ebbflow/tools"
# Concurrent callers (parallel test runs, CI beside a session) wait for one
# build instead of racing it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

etcd_dir="$cache/etcd-$ETCD_VERSION"
if [ ! -x "$etcd_dir/etcd" ]; then
	echo "building etcd $ETCD_VERSION into $etcd_dir (once per machine) ..." >&2
	mkdir -p "$etcd_dir"
	(cd tools/etcd && CGO_ENABLED=0 go build -trimpath -o "$etcd_dir/etcd.tmp" .)
	mv "$etcd_dir/etcd.tmp" "$etcd_dir/etcd"
fi

minio_dir="$cache/minio-$MINIO_VERSION"
if [ ! -x "$minio_dir/minio" ]; then
	echo "building MinIO $MINIO_VERSION into $minio_dir (once per machine, a few minutes) ..." >&2
	mkdir -p "$minio_dir/tmp"
	GOBIN="$minio_dir/tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION"
	mv "$minio_dir/tmp/minio" "$minio_dir/minio"
	rmdir "$minio_dir/tmp"
fi

echo "EBBFLOW_ETCD_BIN=$etcd_dir/etcd"
echo "EBBFLOW_MINIO_BIN=$minio_dir/minio"
