# kubellm developer entry points. `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
CRD_DIRS := crds charts/kubellm/crds manifests/base/crds

.PHONY: install test unit lint crds kube-schema golden demo bench bench-autoscale cluster-build cluster-up cluster-down e2e clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

## test: lint, type-check and run the offline tests (unit, golden, property, chart, rules);
## also builds the local control plane once (cached), so `make demo` and `make e2e` start fast
test: install cluster-build lint unit

unit: install
	$(BIN)/pytest tests

## fuzz: the offline tests with 3,000 random examples per property (CI runs a fixed set);
## the executor's stateful test alone takes about half an hour on 2 cores
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests -p no:cacheprovider

lint: install
	$(BIN)/ruff check operator tests e2e bench hack
	$(BIN)/ruff format --check operator
	$(BIN)/mypy --strict operator/kubellm
	$(BIN)/lint-imports

## crds: regenerate the CRDs from the pydantic models (tests fail when they drift)
crds: install
	$(BIN)/kubellm crd $(foreach d,$(CRD_DIRS),--write-to $(d))

## kube-schema: re-vendor the Kubernetes pod types from k8s.io/kubernetes (after a K8s upgrade)
kube-schema: install cluster-build
	$(BIN)/python hack/vendor-kubernetes-schema.py

## golden: regenerate the golden render of every example (review the diff!)
golden: install
	for f in manifests/examples/*.yaml; do \
	  $(BIN)/kubellm render -f $$f > tests/golden/$$(basename $$f); done

## demo: the whole loop on an embedded default (no cluster of yours needed)
demo: install
	$(BIN)/kubellm demo $(ARGS)

bench: install cluster-up
	$(BIN)/python bench/render.py
	$(BIN)/python bench/reconcile.py --count 100 --count 1000
	$(BIN)/python bench/faults.py --rounds 3

## bench-autoscale: the four autoscaling signals through KEDA on a bursty trace (~13 min)
bench-autoscale: install cluster-up
	cd bench && ../$(BIN)/python autoscale.py

cluster-build:
	bash e2e/cluster/cluster.sh build

cluster-up:
	bash e2e/cluster/cluster.sh up

cluster-down:
	bash e2e/cluster/cluster.sh down

## e2e: bring the local control plane up if needed and run the user journeys through kubectl
e2e: install cluster-up
	$(BIN)/pytest e2e

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
