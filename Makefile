# Spot optimizer: every target works on a fresh machine (it installs what it needs first).
#
#   make demo    run the whole system locally against the embedded AWS emulator
#   make test    lint + unit + integration tests (what CI runs)
#   make build   release Lambda binaries (arm64, as deployed)
#   make bench   cold start, latency, memory, API calls per event (release x86_64, local Runtime API)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
TOOLS     := infra/local/node_modules
CDK       := infra/cdk
BED       := infra/local/bed.sh
# The Lambda functions: one per `functions/<concern>/src/bin/<function>.rs`, the only list of them
# (the template, Cargo and the README are checked against it by tests/src/functions.rs).
FUNCTIONS := $(sort $(basename $(notdir $(wildcard functions/*/src/bin/*.rs))))
# What `make bench` measures: five functions and the three sagas (each step function, cold).
BENCHES   := interruption-handler waste-scanner security-enforcer hibernation-reconciler savings-refresh atomic-switch asg-swap emergency-failover fanout
ASL       := $(wildcard statemachines/*.asl.json)

export AWS_EC2_METADATA_DISABLED := true
export CARGO_TERM_COLOR ?= never

.PHONY: help setup build-debug build build-x86 test unit integration lint demo bench bed-start bed-stop clean

help:
	@sed -n '3,7p' Makefile | sed 's/^# *//'

## ---- installation (stamp files make these run once) -------------------------------------------

$(VENV)/.installed: infra/local/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements.txt
	touch $@

# Cloud Custodian for the benchmark's side-by-side scan; its own venv (it pins an older boto3).
.venv-c7n/.installed: infra/local/requirements-bench.txt
	python3 -m venv .venv-c7n
	.venv-c7n/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements-bench.txt
	touch $@

# checkov, in its own venv: it pins other versions of shared libraries than SAM CLI.
.venv-checkov/.installed: infra/local/requirements-checkov.txt
	python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements-checkov.txt
	touch $@

$(TOOLS)/.installed: infra/local/package.json
	npm install --prefix infra/local --no-audit --no-fund --silent
	touch $@

# The CDK app's packages (aws-cdk-lib, cargo-lambda-cdk, the cdk CLI), pinned by its lock file.
$(CDK)/node_modules/.installed: $(CDK)/package.json $(CDK)/package-lock.json
	npm ci --prefix $(CDK) --no-audit --no-fund --silent
	touch $@

setup: $(VENV)/.installed $(TOOLS)/.installed .venv-checkov/.installed $(CDK)/node_modules/.installed

## ---- builds ---------------------------------------------------------------------------------

# Debug binaries the bed runs: the functions, spotctl and the bed's own gateway/demo/bench tool.
build-debug:
	cargo build --workspace --bins

# Release, arm64 (provided.al2023 on Graviton, as infra/template.yaml deploys): cargo-lambda
# cross-compiles with its bundled zig. Output: target/lambda/arm64/<function>/bootstrap.
# Release builds use their own target dir so they never wait on (or evict) the debug build.
LAMBDA_BUILD = PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CARGO_TARGET_DIR=target/release-lambda \
	cargo lambda build --release $(addprefix --bin ,$(FUNCTIONS))

build: $(VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu >/dev/null
	$(LAMBDA_BUILD) --arm64 --lambda-dir target/lambda/arm64

# Release, x86_64: arm64 binaries cannot run on this machine, so the benchmark measures these.
build-x86: $(VENV)/.installed
	$(LAMBDA_BUILD) --x86-64 --lambda-dir target/lambda/x86_64

## ---- checks ---------------------------------------------------------------------------------

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/cfn-lint infra/template.yaml infra/member-account.yaml
	$(VENV)/bin/sam validate --lint --template infra/template.yaml --region us-east-1 >/dev/null
	@# checkov after the SAM transform, so it reads the IAM statements of the roles SAM generates;
	@# every skip is in the template, next to its resource, with its reason.
	@mkdir -p target
	$(PY) infra/local/sam_to_cfn.py infra/template.yaml > target/template.cfn.json
	.venv-checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f target/template.cfn.json -f infra/member-account.yaml
	@for f in $(ASL); do echo "asl-validator $$f"; $(TOOLS)/.bin/asl-validator --json-path $$f; done
	@# The CDK app: type-checked, synthesised without AWS credentials and without building the
	@# binaries, then compared with the SAM template after its transform (infra/cdk/test).
	cd $(CDK) && npx tsc -p .
	cd $(CDK) && env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
		npx cdk synth -c build=false --quiet --strict --no-notices
	cd $(CDK) && npx tsx --test test/*.test.ts

unit:
	cargo test --workspace --lib --bins --quiet

# Integration tests need the bed (moto + gateway); it is started and stopped around them.
integration: setup build-debug
	$(BED) run -- cargo test --workspace --quiet

test: lint build-debug
	$(BED) run -- cargo test --workspace

## ---- demo and benchmark ----------------------------------------------------------------------

demo: setup build-debug
	$(BED) run -- target/debug/testbed demo

# Without the bed's IAM evaluation: it costs moto CPU on every call, which on two cores leaks into
# the functions' own timings (init p50 3.5 ms without, 16 ms with). The tests keep it on.
bench: setup .venv-c7n/.installed build-debug build-x86
	BED_IAM=off $(BED) run -- target/debug/testbed bench --bin-dir target/lambda/x86_64 $(addprefix --function ,$(BENCHES)) \
		--custodian .venv-c7n/bin/custodian

## ---- bed by hand ---------------------------------------------------------------------------

bed-start: setup build-debug
	$(BED) start

bed-stop:
	$(BED) stop

clean: bed-stop
	cargo clean
	rm -rf $(VENV) .venv-c7n .venv-checkov $(TOOLS) $(CDK)/node_modules .bed
