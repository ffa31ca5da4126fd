# Switchyard: an operator that merges every CI build's AppRelease into one Istio
# VirtualService and DestinationRule per app.
#
# Newcomers: `make demo` and `make test`.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= switchyard:dev
ROOT := $(shell pwd)
BIN := $(ROOT)/bin
CONTROLPLANE_VERSION := v1.37.2
CONTROLPLANE := $(BIN)/controlplane/$(CONTROLPLANE_VERSION)
CONTROLLER_GEN := go tool controller-gen
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests from the kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=switchyard-manager crd:generateEmbeddedObjectMeta=true paths="./api/...;./internal/...;./cmd/..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/crdtrim config/crd/bases/delivery.switchyard.dev_appreleases.yaml
	hack/sync-chart.sh

.PHONY: generate
generate: ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/...;./internal/...;./cmd/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

$(GOLANGCI_LINT):
	mkdir -p $(BIN)/tools
	GOBIN=$(BIN)/tools go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/tools/golangci-lint $@

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (.golangci.yml) on both modules; built from the Go module proxy into bin/tools once.
	$(GOLANGCI_LINT) run ./...
	cd test && $(GOLANGCI_LINT) run --config ../.golangci.yml ./...

.PHONY: verify-gen
verify-gen: manifests generate ## Fail when the generated files differ from git.
	@test -z "$$(git status --porcelain -- api config charts)" || { git status --short -- api config charts; git diff -- api config charts; echo "generated files are out of date: run 'make manifests generate' and commit"; exit 1; }

.PHONY: verify-fmt
verify-fmt: ## Fail when a Go file is not gofmt-formatted.
	@files=$$(gofmt -l cmd api internal hack test); test -z "$$files" || { echo "not gofmt-formatted: $$files"; exit 1; }

.PHONY: verify-size
verify-size: ## Fail when a tracked file is over 1 MB (build outputs and binaries never belong in git).
	@big=$$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$$1 > 1048576 {print $$2}'); \
	test -z "$$big" || { echo "tracked files over 1 MB: $$big"; exit 1; }

.PHONY: controlplane
controlplane: ## Build etcd and the Kubernetes control plane into bin/ (once; several minutes the first time).
	hack/build-controlplane.sh

.PHONY: test
test: verify-size verify-gen verify-fmt vet lint test-unit test-chart test-envtest test-istio test-e2e ## Run every test suite (what CI runs).

.PHONY: test-unit
test-unit: ## Unit tests of the pure parts (routing builder), with a short fuzz run.
	go test ./internal/routing/... ./internal/metrics/... ./api/... ./cmd/...
	go test ./internal/routing/ -run '^$$' -fuzz FuzzDecide -fuzztime 20000x -fuzzminimizetime 200x

.PHONY: test-envtest
test-envtest: ## Controller tests against a real kube-apiserver + etcd built by the project.
	hack/build-controlplane.sh etcd kube-apiserver
	KUBEBUILDER_ASSETS=$(CONTROLPLANE) go test ./internal/controller/... ./internal/recorder/... -coverprofile cover.out

.PHONY: test-istio
test-istio: ## Judge the builder's objects by Istio's own code, and test the Argo CD health check (module test/; first build ~5 min).
	@echo "test/istio: building Istio's validation code (first time: about 5 minutes on 2 cores)..."
	cd test && go vet ./... && go test ./istio/... ./argocd/...
	cd test && go test ./istio/ -run '^$$' -fuzz FuzzBuilderOutputIsValid -fuzztime 20000x -fuzzminimizetime 200x

HELM := $(BIN)/controlplane/$(CONTROLPLANE_VERSION)/helm

.PHONY: test-chart
test-chart: ## helm lint and helm template of the chart, with helm built from the Go module proxy.
	hack/build-controlplane.sh helm
	$(HELM) lint charts/switchyard --strict
	$(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system > /dev/null
	$(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system --set replicaCount=2 --set metrics.serviceMonitor.enabled=true | grep -q -- '--leader-elect'
	@# Never two writers: leader election by default, Recreate without it.
	$(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system | grep -q -- '--leader-elect'
	$(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system --set leaderElection.enabled=false | grep -q 'type: Recreate'
	@# Namespaced install: Roles in the watched namespaces, no ClusterRole with the operator's rules.
	$(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system --set 'watchNamespaces={team-a}' | grep -q -- '--watch-namespaces=team-a'
	$(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system --set 'watchNamespaces={team-a}' | grep -B3 'namespace: team-a' | grep -q '^kind: Role$$'
	test "$$($(HELM) template sy charts/switchyard --kube-version v1.37.2 --namespace switchyard-system --set 'watchNamespaces={team-a}' | grep -c '^kind: ClusterRole$$')" = 2 # metrics reader and metrics auth only

.PHONY: test-e2e
test-e2e: ## End-to-end suite: the manager binary on a local cluster with the real controllers and kwok.
	hack/build-controlplane.sh
	cd test && go test ./e2e/ -count=1 -timeout 25m -v -ginkgo.no-color

.PHONY: bench
bench: ## Benchmarks on the local cluster (never part of make test); writes docs/benchmarks.md (BENCH_ARGS=-quick for a smoke run).
	go run ./hack/bench $(BENCH_ARGS)

.PHONY: demo
demo: ## Start a local cluster, run Switchyard, and walk through the CI workflow (DEMO_ARGS=--down to tear down at the end).
	go run ./hack/demo $(DEMO_ARGS)

##@ Build

.PHONY: build
build: ## Build the manager binary.
	go build -o bin/manager ./cmd

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-switchyard.
	go build -o bin/kubectl-switchyard ./cmd/kubectl-switchyard

.PHONY: run
run: manifests ## Run the operator against the cluster of the current kubeconfig.
	go run ./cmd

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	kubectl apply --server-side -f config/crd/bases

.PHONY: image
image: ## Build the operator's image into the OCI layout bin/image without a container engine (push: crane push bin/image IMG).
	go run ./hack/image -out bin/image -ref $(IMG)

.PHONY: docker-build
docker-build: ## Build the operator's image with a Docker engine (the same image as make image, on distroless).
	docker build -t $(IMG) .
