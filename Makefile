# Two set-up-free commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: test demo bench data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# Debian's offline Fashion-MNIST (the dataset the demo and CPU reproductions use).
data:
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'"; \
	  fi; \
	fi

# Static checks first (rules in pyproject.toml), then the tests.
test: $(STAMP) data
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

demo: $(STAMP) data
	$(BIN)/python -m hparams_jax demo --workdir runs/demo

clean:
	rm -rf $(VENV) runs .pytest_cache
