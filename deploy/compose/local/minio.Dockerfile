# Stand-in for the upstream MinIO image on a machine without a registry:
# the MinIO server binary that scripts/tools.sh builds (static), on scratch,
# at the upstream image's path. The build context is a folder holding that
# binary as `minio`; see docs/deploy-docker.md.
#
# The upstream image has mc for a health check; this one borrows ebbflow's
# (a plain HTTP probe of /minio/health/ready), so the ebbflow image must be
# built first.
ARG EBBFLOW_IMAGE=ebbflow:dev
FROM ${EBBFLOW_IMAGE} AS ebbflow
FROM scratch
COPY minio /usr/bin/minio
COPY --from=ebbflow /ebbflow /usr/local/bin/ebbflow
EXPOSE 9000 9001
ENTRYPOINT ["/usr/bin/minio"]
CMD ["server", "/data"]
