# A Go build image made from a Go installation on this machine, for
# machines that cannot pull golang:1.26 (no registry). The build context is
# the Go root itself:
#
#   docker build -t ebbflow-go:local -f deploy/docker/go-local.Dockerfile "$(go env GOROOT)"
#   docker build --build-arg GO_IMAGE=ebbflow-go:local --build-arg BASE_IMAGE=scratch \
#       -t ebbflow:dev -f deploy/docker/Dockerfile .
#
# The Go toolchain is statically linked, so it runs on scratch; with
# CGO_ENABLED=0 nothing else is needed (no shell, no C compiler). No network
# either: GOPROXY=off, so the ebbflow build must find its modules in a
# vendor/ folder of the build context (go mod vendor).
FROM scratch
COPY bin /usr/local/go/bin
COPY pkg /usr/local/go/pkg
COPY src /usr/local/go/src
COPY lib /usr/local/go/lib
COPY go.env VERSION /usr/local/go/
ENV PATH=/usr/local/go/bin HOME=/root GOPATH=/root/go GOCACHE=/root/.cache/go-build \
    GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0
WORKDIR /tmp
WORKDIR /root
