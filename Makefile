# prpm.hobby: every entry point installs what it needs first.
#   make up      set up, then run `ansible-playbook site.yml` on the local stand-in host
#   make test    set up, then lint, unit tests, the AWS tests on moto and every molecule scenario
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The stamp carries the hash of requirements.txt: a changed pin reinstalls, an unchanged one is skipped.
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
COLLECTION_LINK := .collections/ansible_collections/prpm/hobby
SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard extensions/molecule/*/molecule.yml))))
# default (the smoke test) first: it proves the harness before the slower scenarios run.
ORDERED_SCENARIOS := $(filter default,$(SCENARIOS)) $(filter-out default,$(SCENARIOS))
SCENARIO ?=
ANSIBLE_ARGS ?=

# A PRPM checkout (the monorepo's root): `make up PRPM_SOURCE=...` deploys the real registry
# built from it; `make test` runs the real-registry tests with it (skipped, and said so, without).
PRPM_SOURCE ?=
# Extra CA bundle npm trusts inside image builds (a TLS-intercepting proxy). Default: this
# machine's own bundle, so builds trust what the controller trusts; empty turns it off.
PRPM_EXTRA_CA_FILE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export PRPM_SOURCE PRPM_EXTRA_CA_FILE

export PATH := $(BIN):$(PATH)
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

.PHONY: help setup venv docker images images-refresh patch up check-source down test lint unit aws sanity molecule bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: venv $(COLLECTION_LINK) ## Python venv and the collection link (no Docker needed)

venv: $(STAMP)

$(STAMP): requirements.txt
	@rm -f $(VENV)/.installed-*
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

# ansible-playbook finds prpm.hobby.* through this link (ansible.cfg collections_path).
$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	@ln -sfn ../../.. $@

docker: ## Make sure a Docker engine answers (installs and starts one on Debian as root)
	$(PYTHON) tools/ensure_docker.py

images: docker ## Build the host and stack images that are missing or stale
	$(PYTHON) tools/images.py build all

images-refresh: docker ## Rebuild the stack images from the current Debian packages (kept only if changed)
	$(PYTHON) tools/images.py refresh all

# The controller's patch window for the local stand-in: the offline images first (the patch
# run's refresh deploys those whose image ID changed, health-gated), then playbooks/patch.yml.
patch: setup images images-refresh ## Refresh the offline images, then run playbooks/patch.yml (health-gated)
	ansible-playbook playbooks/patch.yml $(ANSIBLE_ARGS)

up: setup check-source images ## Set up, then run site.yml on the local stand-in host [PRPM_SOURCE=checkout]
	ansible-playbook site.yml $(ANSIBLE_ARGS)
	@if [ -z "$(PRPM_SOURCE)" ]; then \
	  echo "== make up deployed the registry FIXTURE (images/registry-fixture), not PRPM's registry."; \
	  echo "   For the real registry: make up PRPM_SOURCE=/path/to/prpm (a PRPM checkout; docs/registry.md)"; \
	else echo "== make up deployed the PRPM registry built from $(PRPM_SOURCE)"; fi

# Bad input stops here, before anything changes (the role's module validates it fully).
check-source:
	@if [ -n "$(PRPM_SOURCE)" ] && [ ! -f "$(PRPM_SOURCE)/packages/registry/package.json" ]; then \
	  echo "PRPM_SOURCE=$(PRPM_SOURCE) is not a PRPM checkout: $(PRPM_SOURCE)/packages/registry/package.json is missing" >&2; \
	  exit 2; fi

down: setup docker ## Remove the local stand-in host and its volumes
	ansible-playbook playbooks/down.yml

# The AWS tests (moto, ~6 min, no containers) run beside the molecule scenarios; their log is
# printed at the end, and either failing fails the target.
test: setup images lint unit ## Set up, then run every test
	@mkdir -p .ansible && rm -f .ansible/test-summary.txt
	@echo "== AWS tests on moto, beside molecule at a lower CPU priority (log: .ansible/test-aws.log)"
	@set +e; \
	nice -n 10 $(MAKE) --no-print-directory aws > .ansible/test-aws.log 2>&1 & aws_pid=$$!; \
	$(MAKE) --no-print-directory molecule; molecule_rc=$$?; \
	wait $$aws_pid; aws_rc=$$?; \
	echo "== AWS tests (ran beside molecule): exit $$aws_rc"; cat .ansible/test-aws.log; \
	echo "== molecule: exit $$molecule_rc"; \
	if [ -s .ansible/test-summary.txt ]; then echo "== Not run:"; cat .ansible/test-summary.txt; fi; \
	test $$molecule_rc -eq 0 && test $$aws_rc -eq 0

lint: setup ## yamllint, ansible-lint (production), ruff, ansible-test sanity
	yamllint --strict .
	ansible-lint --offline
	ruff check .
	ruff format --check .
	python tools/role_docs.py --check
	python tools/sanity.py

sanity: setup ## ansible-test sanity only
	python tools/sanity.py

unit: setup ## Unit tests of the Python plugins
	pytest tests/unit

bench: setup images ## Benchmarks: cold/warm converge, footprint, request path -> docs/performance.md
	python bench/run.py

aws: setup ## AWS provisioning and teardown against moto in server mode (no AWS account)
	pytest tests/aws

molecule: setup images ## Every molecule scenario, or one: make molecule SCENARIO=host
	@mkdir -p .ansible; scenarios="$(if $(SCENARIO),$(SCENARIO),$(ORDERED_SCENARIOS))"; \
	test -n "$$scenarios" || { echo "no molecule scenario found" >&2; exit 1; }; \
	for s in $$scenarios; do \
	  if [ "$$s" = registry ] && [ -z "$(PRPM_SOURCE)" ]; then \
	    echo "== molecule test -s registry SKIPPED: PRPM_SOURCE is not set (a PRPM checkout)" | tee -a .ansible/test-summary.txt; \
	    continue; fi; \
	  echo "== molecule test -s $$s"; \
	  molecule test -s $$s; \
	done

clean: ## Remove the venv, caches and the collection link (not images or the stand-in)
	rm -rf $(VENV) .collections .ansible .pytest_cache .ruff_cache
