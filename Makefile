# onnxplain — every target sets up what it needs (a virtualenv in .venv) on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
EXTRA ?= cpu
STAMP := $(VENV)/.installed-$(EXTRA)
# Triton's own client for the Open Inference Protocol tests: it pins protobuf < 7, so it lives apart.
TRITON_VENV := .venv-tritonclient
TRITON_STAMP := $(TRITON_VENV)/.installed
# KServe's ModelServer as a real OIP server to explain a remote model against: it pins protobuf < 7 too.
KSERVE_VENV := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.installed
PORT ?= 50051

.PHONY: setup proto serve demo test bench bench-peers lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRA),dev]"
	touch $@

proto: setup
	$(BIN)/python tools/gen_proto.py

serve: setup
	$(BIN)/onnxplain serve --models models --port $(PORT)

demo: setup
	$(BIN)/python tools/demo.py --port $(PORT) --out out

$(TRITON_STAMP):
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet "tritonclient[grpc]==2.73.0"
	touch $@

$(KSERVE_STAMP):
	test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet "kserve==0.21.0" "onnxruntime==1.32.0" numpy
	touch $@

test: setup $(TRITON_STAMP) $(KSERVE_STAMP)
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run.py --out bench

# onnxplain next to Captum, pytorch-grad-cam and LIME on torch (its own .venv-peers; bench/README.md, Peers).
bench-peers: setup
	bash bench/peers/run.sh

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(KSERVE_VENV) out .pytest_cache
