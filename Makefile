# Tenantplane. `make help` lists the targets.
#
# Everything slow is cached outside the repository: Go's module and build
# caches, and the external programs that tools/install.sh builds into
# $(TENANTPLANE_CACHE) (default ~/.cache/tenantplane).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      := bin/tenantplane
PKGS     ?= ./...
TESTFLAGS ?=
# Debian packages the tests and `make run` need: PostgreSQL for the database,
# clang/llvm/libbpf for the eBPF program, iproute2/nftables/iperf3/ethtool for the
# network tests.
APT_PACKAGES := postgresql clang llvm libbpf-dev iproute2 nftables iperf3 ethtool ca-certificates

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: deps tools build ## Start Postgres, Kubernetes and stripe-mock locally and run tenantplane against them with demo data
	./$(BIN) dev

.PHONY: test
test: deps tools ## Install what is missing, then run every test against real peers
	$(GO) test -count=1 -timeout 30m $(TESTFLAGS) $(PKGS)

.PHONY: build
build: ## Build bin/tenantplane
	$(GO) build -o $(BIN) ./cmd/tenantplane

.PHONY: generate
generate: ## Regenerate committed code (GraphQL, eBPF objects)
	$(GO) generate ./...

.PHONY: lint
lint: tools ## Run golangci-lint with the project's configuration
	"$$(bash tools/install.sh --path golangci-lint)" run ./...

.PHONY: bench
bench: deps tools ## Run the benchmarks and load generators; figures go in docs/PERFORMANCE.md
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m $(PKGS) | tee bench.out

.PHONY: check-generated
check-generated: generate ## Fail when committed generated code is out of date
	git diff --exit-code -- . || { echo "generated code is out of date: run make generate and commit" >&2; exit 1; }

.PHONY: tools
tools: ## Build the pinned external programs (kube-apiserver, etcd, kwok, metrics-server, stripe-mock, golangci-lint) when missing
	bash tools/install.sh

.PHONY: deps
deps: ## Install missing Debian packages (as root on Debian; elsewhere says what is missing)
	@missing=(); \
	for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$$p"); done; \
	if [ $${#missing[@]} -eq 0 ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then \
		echo "missing packages: $${missing[*]} (install them, e.g. sudo apt-get install $${missing[*]})" >&2; exit 1; fi; \
	echo "installing $${missing[*]}"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "$${missing[@]}" >/dev/null; \
	systemctl disable --now postgresql >/dev/null 2>&1 || service postgresql stop >/dev/null 2>&1 || true

.PHONY: clean
clean: ## Remove build output (not the caches)
	rm -rf bin bench.out
