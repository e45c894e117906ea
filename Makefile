# ebbflow — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
BIN       := bin/ebbflow
LDFLAGS   := -s -w
DEMO_DIR  ?= demo-data
RACE_PKGS := ./examples/... ./network/... ./internal/task/... ./taskmanager/... ./jobcluster/... ./checkpoint/... ./state/... ./connectors/... ./internal/cli/...

.PHONY: build demo test test-unit test-race e2e e2e-docker bench bench-rescale lint fmt vet clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ebbflow

# The main job on the embedded default: embedded etcd, local checkpoint folder.
demo: build
	@scripts/demo.sh $(DEMO_DIR)

# Everything the tests need is built by the tests themselves (the ebbflow
# binary; embedded etcd runs in-process).
test: vet test-unit test-race e2e

test-unit:
	@eval "$$(scripts/tools.sh)" && export EBBFLOW_ETCD_BIN EBBFLOW_MINIO_BIN && \
		$(GO) test -count=1 $$($(GO) list ./... | grep -v /internal/e2e)

test-race:
	@eval "$$(scripts/tools.sh)" && export EBBFLOW_ETCD_BIN EBBFLOW_MINIO_BIN && \
		$(GO) test -race -count=1 $(RACE_PKGS)

# End-to-end tests run the real binary against real etcd and MinIO servers,
# which scripts/tools.sh builds once per machine and caches outside the checkout.
e2e: build
	@eval "$$(scripts/tools.sh)" && export EBBFLOW_ETCD_BIN EBBFLOW_MINIO_BIN && \
		EBBFLOW_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m ./internal/e2e/
	@$(MAKE) --no-print-directory e2e-docker

# The image and the compose stack on the real Docker engine
# (docs/deploy-docker.md). Skips, saying so, when no engine is reachable —
# unless EBBFLOW_REQUIRE_DOCKER=1, as in CI, which makes that a failure.
e2e-docker:
	@eval "$$(scripts/tools.sh)" && export EBBFLOW_ETCD_BIN EBBFLOW_MINIO_BIN && \
		$(GO) test -count=1 -timeout 30m -v ./internal/e2e/docker/

bench: build
	@scripts/bench.sh

lint: fmt vet

fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: fmt
	$(GO) vet ./...

clean:
	rm -rf bin $(DEMO_DIR) .ebbflow-local

# Rescale pauses with real etcd, MinIO and processes (docs/benchmarks.md).
bench-rescale: build
	@eval "$$(scripts/tools.sh)" && export EBBFLOW_ETCD_BIN EBBFLOW_MINIO_BIN && \
		$(GO) run ./scripts/benchrescale -bin $(BIN) $(BENCH_RESCALE_FLAGS)
