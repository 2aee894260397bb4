# Two set-up-free commands: `make demo` and `make test` (both install everything: the core,
# the extras and the test tools); `make dist` builds the release files and checks them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
FORTUNES := /usr/share/games/fortunes/fortunes

.PHONY: test demo bench data dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@

# Debian's offline Fashion-MNIST (the dataset the demo and CPU reproductions use) and the
# fortunes text (the character corpus of the own-model transformer case).
data:
	@if [ ! -f $(FASHION_MNIST) ] || [ ! -f $(FORTUNES) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist fortunes; \
	  else \
	    echo "Offline data missing: run 'sudo apt-get install dataset-fashion-mnist fortunes'"; \
	  fi; \
	fi

# Static checks first (rules in pyproject.toml), then the tests.
test: $(STAMP) data
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

demo: $(STAMP) data
	$(BIN)/python -m hparams_jax demo --workdir runs/demo

# The sdist and the wheel (in an isolated build, as a release is built), then twine's check of
# both; tests/test_release.py checks their contents and installs the wheel alone in a fresh venv.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) runs .pytest_cache dist build
