# Stand-in for the upstream etcd image on a machine without a registry:
# the etcd server binary that scripts/tools.sh builds (static), on scratch,
# at the upstream image's path. The build context is a folder holding that
# binary as `etcd`; see docs/deploy-docker.md.
#
# The upstream image has etcdctl for a health check; this one borrows
# ebbflow's (a plain HTTP probe of etcd's /health), so the ebbflow image
# must be built first.
ARG EBBFLOW_IMAGE=ebbflow:dev
FROM ${EBBFLOW_IMAGE} AS ebbflow
FROM scratch
COPY etcd /usr/local/bin/etcd
COPY --from=ebbflow /ebbflow /usr/local/bin/ebbflow
EXPOSE 2379 2380
CMD ["/usr/local/bin/etcd"]
