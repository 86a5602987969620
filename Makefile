# make run   - run the agent in the foreground on its built-in defaults (creates .venv)
# make test  - install what the tests need (pip, Debian packages), lint, type-check, run pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo test lint servers bench profile fuzz mutate deps deb k8s-stubs nvml-shim clean

$(BIN)/dsagent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml $(BIN)/dsagent
	$(BIN)/pip install -q -e '.[test]'
	touch $@

deps: $(VENV)/.test-deps

run: $(BIN)/dsagent
	$(BIN)/dsagent run $(ARGS)

demo: $(BIN)/dsagent
	$(BIN)/dsagent demo

servers:
	sh tests/install-servers.sh

lint: deps
	$(BIN)/ruff check agent tests bench
	$(BIN)/ruff format --check agent tests bench
	$(BIN)/mypy

test: servers lint nvml-shim
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

bench: deps servers nvml-shim
	$(BIN)/python -m bench.overhead $(ARGS)

profile: deps nvml-shim
	$(BIN)/pip install -q -e '.[profile]'
	$(BIN)/python -m bench.profile $(ARGS)

fuzz: deps
	$(BIN)/python -m bench.fuzz $(ARGS)

# mutation testing of the core modules ([tool.mutmut] in pyproject.toml): the surviving mutants
# are lines no test notices broken; `mutmut show NAME` shows one
mutate: deps
	$(BIN)/pip install -q 'mutmut>=3.8'
	rm -rf mutants
	$(BIN)/mutmut run; $(BIN)/mutmut results

deb:
	sh packaging/build-deb.sh

# the kubelet pod-resources stubs, from agent/k8s/podresources.proto (checked in; a test compares)
k8s-stubs: deps
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. agent/k8s/podresources.proto

# the NVML stand-in (C, from NVIDIA's nvml.h in the nvidia-nvml-dev wheel): docs/gpu.md
SHIM := build/nvml-shim/libnvidia-ml.so.1
SHIM_SRC := $(wildcard agent/sim/nvml_shim/*.c agent/sim/nvml_shim/*.h)
nvml-shim: $(SHIM)

$(SHIM): $(SHIM_SRC) $(VENV)/.test-deps
	@if [ ! -f /usr/include/cjson/cJSON.h ]; then \
	  echo "nvml-shim: needs libcjson-dev (make servers installs it as root); its tests skip" >&2; \
	else \
	  mkdir -p $(dir $@) && \
	  $(CC) -O2 -Wall -Wextra -Werror -Wno-deprecated-declarations -Wno-format-truncation \
	    -fPIC -shared -Wl,-soname,libnvidia-ml.so.1 \
	    -I"$$($(BIN)/python -c 'import nvidia; print(list(nvidia.__path__)[0])')/cu13/include" \
	    -o $@ $(filter %.c,$(SHIM_SRC)) -lcjson -lpthread -lm; \
	fi

clean:
	rm -rf $(VENV) build dist mutants *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
