# qmlp_nncf: `make demo` runs the main job end to end, `make test` runs the test suite.
# Both install what they need first (into the current Python; set PYTHON to use another).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DATA_DIR := /usr/share/datasets/fashion-mnist
export NNCF_EXTENSION_LOAD_TIMEOUT ?= 0

.PHONY: demo test test-all install data nncf-extension

install:
	$(PIP) install -q -c constraints.txt -e ".[dev]"  # the exact tested set
	$(PIP) install -q --no-deps foolbox==3.3.4  # only its 20 ImageNet sample images are used

# The Debian package, when neither it nor $QMLP_DATA_DIR is there and apt-get is available.
data:
	@if [ -n "$$QMLP_DATA_DIR" ] || [ -f $(DATA_DIR)/t10k-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	else echo "Fashion-MNIST missing: set QMLP_DATA_DIR (see README)"; fi

# NNCF JIT-compiles its CPU quantizer extension on first use (~60-90 s); build it once up front
# and fail loudly instead of letting NNCF fall back to its slow reference functions.
nncf-extension: install
	$(PYTHON) -m qmlp_nncf.nncf_extension

demo: install data nncf-extension
	$(PYTHON) -m qmlp_nncf.demo

# Two pytest-xdist workers, one per core; a test file stays on one worker (its module fixtures are built once).
test: install data nncf-extension
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

test-all: install data nncf-extension
	$(PYTHON) -m pytest -q -n 2 --dist loadfile -m ""
