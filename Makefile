# Two commands on a fresh machine: `make demo` runs the main job, `make test` the tests.
# Each creates .venv if missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
POOL ?= resnet
OUT ?= out
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test bench install data lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,zoo,ray,openvino]'
	touch $(STAMP)

install: $(STAMP) data

# Fashion-MNIST (labelled images for the fashion pool) from Debian, where apt is available.
data:
	@if [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist);" \
		"the fashion pool's tests and demo will say so"; fi

test: install
	$(BIN)/mypy --strict src/gearshift
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/gearshift demo --pool $(POOL) --out $(OUT)/demo/$(POOL)

# gearshift beside Ray Serve, MLServer, Triton (PyTriton) and a bare Starlette endpoint: each
# peer in its own venv under $(OUT)/bench/peers, servers and load in a loopback-only network
# namespace (needs root). In turn: the front end on a trivial model (table, peers.json,
# frontend.png), ResNet-18 through each system against raw ONNX Runtime with each one's
# effective capacity (and gearshift's switching over the whole pool at the same rates), and
# each ResNet deployed statically on Ray Serve (its defaults; a bounded queue) and MLServer
# against gearshift's switching on the demo's arrivals (the demo runs first if it has not,
# as the switching parts use its plan). Then one line per benchmark of our own (pool/raw,
# simulator, planner, send lag, switching over seeds and at cluster scale). About 40 minutes
# on 2 cores; nothing else should run beside it.
BENCH := $(OUT)/bench
bench: install
	$(BIN)/python benchmarks/peers.py --out $(BENCH)/peers
	$(BIN)/gearshift zoo build resnet --out $(BENCH)/zoo/resnet
	@[ -f $(OUT)/demo/resnet/summary.json ] || $(MAKE) demo POOL=resnet
	$(BIN)/python benchmarks/peers_resnet.py --pool $(BENCH)/zoo/resnet/pool.yaml \
		--peers-out $(BENCH)/peers --json $(BENCH)/resnet.json \
		--switching $(OUT)/demo/resnet --switching-pool $(OUT)/demo/zoo/resnet/pool.yaml
	$(BIN)/python benchmarks/peers_switching.py $(OUT)/demo/resnet \
		--pool $(OUT)/demo/zoo/resnet/pool.yaml --peers-out $(BENCH)/peers \
		--json $(BENCH)/switching.json
	$(BIN)/python benchmarks/headlines.py --pool $(BENCH)/zoo/resnet/pool.yaml \
		--experiment $(OUT)/demo/resnet

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
