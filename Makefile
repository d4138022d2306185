# The two quick-start commands of the README:
#   make demo   build everything and run word count on the embedded generator
#   make test   run every test
# `make plugins` builds the example plugins into target/plugins/.

CARGO ?= cargo
GUEST_DIR := target/guest
PLUGINS_DIR := target/plugins

.PHONY: demo test plugins bench setup

setup:
	@scripts/setup.sh

plugins: setup
	CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
	  $(CARGO) build --release --target wasm32-unknown-unknown --target-dir $(GUEST_DIR) -p wordcount -p analytics -p nexmark
	@mkdir -p $(PLUGINS_DIR)
	cp $(GUEST_DIR)/wasm32-unknown-unknown/release/wordcount.wasm \
	   $(GUEST_DIR)/wasm32-unknown-unknown/release/analytics.wasm \
	   $(GUEST_DIR)/wasm32-unknown-unknown/release/nexmark.wasm $(PLUGINS_DIR)/

demo: plugins
	$(CARGO) run --release -p weir -- run examples/pipelines/wordcount.toml --batches 5

test:
	@scripts/setup.sh --tests
	$(CARGO) test --workspace
	$(CARGO) check -p weir-tests --benches

bench: plugins
	$(CARGO) bench -p weir-tests
