# cloudefigo.core — one entry point per job. `make demo` and `make test` are the two that matter.
SHELL := /bin/bash
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
LAB := $(ROOT)/lab/lab
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.cache/collections
export PATH := $(VENV)/bin:$(PATH)
# tests get their own labs (.cache/test-lab, .cache/test-lab-vm) so a running demo lab is left alone
PYTEST_ARGS ?=

.PHONY: help bootstrap test sanity units integration lint changelog demo bench lab-up lab-down build ee clean

help:
	@echo "make demo        bootstrap, lab up, secure launch + audit against the lab, lab down"
	@echo "make test        sanity + unit + integration (brings up its own lab)"
	@echo "make lint        ansible-lint, production profile, and the changelog fragments"
	@echo "make changelog   re-render CHANGELOG.md from changelogs/changelog.yaml"
	@echo "make bench       benchmarks in bench/ (ratios against same-run baselines)"
	@echo "make build       the collection tarball in .cache/dist; make ee: the AWX EE build context"

bootstrap:
	@bash tools/bootstrap.sh

sanity: bootstrap
	bash tools/sanity.sh

units: bootstrap
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

integration: bootstrap
	@bash tools/integration.sh $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ansible-lint -q
	bash tools/changelog.sh lint

changelog: bootstrap
	bash tools/changelog.sh generate

test: bootstrap
	bash tools/sanity.sh
	$(VENV)/bin/ansible-lint -q
	bash tools/changelog.sh lint
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)
	@bash tools/integration.sh $(PYTEST_ARGS)

demo: bootstrap
	@bash tools/demo.sh

bench: bootstrap
	@bash tools/with-lab.sh $(ROOT)/.cache/bench-lab bash bench/run

lab-up: bootstrap
	$(LAB) up

lab-down:
	$(LAB) down

build: bootstrap
	$(VENV)/bin/ansible-galaxy collection build --force --output-path $(ROOT)/.cache/dist

# the AWX execution environment's build context (awx/context), from the tarball built above;
# then `ansible-builder build -c awx/context ...` where podman or docker is available
ee: build
	$(VENV)/bin/ansible-builder create -f awx/execution-environment.yml -c awx/context

clean:
	-$(LAB) down
	rm -rf .cache tests/output
