# Set-up and checks. `make setup` installs the system packages (Debian/Ubuntu, as root)
# and the Python package; `make test` is the command CI runs.
PYTHON ?= python3
APT_PACKAGES = mesa-vulkan-drivers libvulkan1 spirv-tools spirv-headers

.PHONY: setup demo test test-lp1 lint grammar

setup:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else echo "skipping apt: install $(APT_PACKAGES) with your package manager"; fi
	$(PYTHON) -m pip install -q -e ".[test]"

demo:
	$(PYTHON) -m asyncwarp demo

# The whole suite on every backend present (sim, vulkan on lavapipe here) at W = 32 and 64,
# then the device tests again with lavapipe on one thread (no forward progress between
# workgroups: what `auto` picks must not spin).
test:
	$(PYTHON) -m pytest -q -n 2
	LP_NUM_THREADS=1 ASYNCWARP_TEST_BACKENDS=vulkan $(PYTHON) -m pytest -q -n 2 -m device

lint:
	ruff check asyncwarp tests conformance benchmarks examples tools

grammar:
	$(PYTHON) tools/gen_spirv_grammar.py
