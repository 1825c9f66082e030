# EmoDet front door. Every target calls importable Python; logic lives in converters/, scripts/, eval/.
# First use of any target sets up .venv (pinned packages) and Debian's darknet: see scripts/setup.sh.
SHELL := /bin/bash
PY := .venv/bin/python
EMODET := .venv/bin/emodet
STAMP := .venv/.emodet-setup-$(shell cat requirements.txt scripts/setup.sh 2>/dev/null | cksum | cut -d' ' -f1)

# Settings: each default is declared once, in the command's own options (emodet <command> --help) or cfg/; a
# target passes only what you set (make convert SPLIT=training SIZES="48 96" CLASSES=8 COLOR=rgb ...). The two
# folders below are also where later targets look for the converted data.
AFFECTNET ?= data/sample/affectnet
OUT ?= data/affectnet
opt = $(if $(strip $(1)),$(2) $(1))

# Training settings
BACKEND ?= ultralytics
MODEL ?= v8n
CFG ?= v8n
EPOCHS ?=
IMGSZ ?=
INIT ?=
CROPS ?= $(OUT)/crops/48
DATA_YAML ?= $(OUT)/yolo/data.yaml

.PHONY: setup sample convert convert-fer2013 scenes grids scenes-bench merge balance test demo bench clean help \
        train train-classifier partial train-detector export predict app darknet kfold label-issues

help:
	@echo "make demo      - the whole pipeline on the embedded synthetic sample (sets everything up first)"
	@echo "make test      - the test suite"
	@echo "make sample    - write the synthetic AffectNet-format sample to $(AFFECTNET)"
	@echo "make convert   - AffectNet CSVs -> crops, Darknet classifier set, FER2013-style table, YOLO set"
	@echo "make convert-fer2013 - FER2013 (+FER+) -> the same classifier formats"
	@echo "make bench     - measure and write BENCHMARKS.md"
	@echo "make darknet   - build AlexeyAB Darknet into build/darknet [DARKNET_SRC=clone-or-tarball GPU=1 CUDNN=1 OPENCV=1]"
	@echo "make train-classifier [BACKEND=ultralytics|torch] / make partial / make train-detector CFG=v8n|11n|vggdet|v3-tiny"

# AlexeyAB Darknet from source into build/darknet (CPU: AVX + OpenMP); the binary Darknet steps prefer.
# DARKNET_SRC= a clone of AlexeyAB/darknet or its tarball (default: ../shared/engines); GPU=1 CUDNN=1 OPENCV=1
darknet: $(STAMP)
	$(EMODET) build-darknet $(call opt,$(DARKNET_SRC),--src) $(if $(filter 1,$(GPU)),--gpu) $(if $(filter 1,$(CUDNN)),--cudnn) \
	  $(if $(filter 1,$(OPENCV)),--opencv)

setup: $(STAMP)
$(STAMP):
	@bash scripts/setup.sh
	@rm -f .venv/.emodet-setup-*; touch $@

sample: $(STAMP)
	$(EMODET) sample --out $(AFFECTNET) $(call opt,$(SAMPLE_TRAIN),--train-images) $(call opt,$(SAMPLE_VAL),--val-images) \
	  $(call opt,$(SEED),--seed)

$(AFFECTNET)/training.csv:
	$(MAKE) sample

convert: $(STAMP) $(if $(INPUT),,$(if $(filter data/sample/affectnet,$(AFFECTNET)),$(AFFECTNET)/training.csv))
	$(EMODET) convert --input $(or $(INPUT),$(AFFECTNET)) --out $(OUT) $(call opt,$(SPLIT),--split) $(call opt,$(SIZES),--sizes) \
	  $(call opt,$(CLASSES),--classes) $(call opt,$(COLOR),--color) $(call opt,$(BOX_SCALE),--box-scale) \
	  $(call opt,$(FORMATS),--formats) $(if $(filter 1,$(ALIGN)),--align) $(call opt,$(NAMES),--names)

convert-fer2013: $(STAMP)
	$(EMODET) convert-fer2013 $(if $(FER2013),--fer2013 $(FER2013)) $(if $(FERPLUS),--ferplus $(FERPLUS))

# train scenes: 3000 use about a third of the FER2013 Training faces; 8200 use each of them once
SCENES_TRAIN ?= 3000
scenes: $(STAMP)
	$(EMODET) scenes --train $(SCENES_TRAIN) $(if $(FER2013),--fer2013 $(FER2013))
	$(EMODET) convert --affectnet data/scenes --out data/scenes-converted --split training validation test \
	  --sizes 48 --formats yolo crops --overwrite

# real face photos (faces-in-the-wild, made by `make convert INPUT=<datasets>/faces-in-the-wild OUT=data/fitw`)
# tiled small into grids: real faces at 20-100 px, the train split's photos for the detector's mix, the
# identity-disjoint val split's for selection (converters/grids.py)
grids: $(STAMP)
	$(EMODET) grids --source data/fitw/yolo/train --out data/grids
	$(EMODET) grids --source data/fitw/yolo/val --out data/grids --split val --images 300 --seed 1
	$(EMODET) convert --affectnet data/grids --out data/grids-converted --split training validation --sizes 48 \
	  --formats yolo --overwrite

# the FER-scenes detector (cfg/recipes/scenes-det.yaml; HOURS=, CLS_PW=, ... override its fields) vs Haar +
# classifier on the test scenes; REUSE=1 scores the last trained one
scenes-bench: $(STAMP)
	$(EMODET) bench --parts scenes $(call opt,$(HOURS),--hours) $(if $(IMGSZ),--imgsz $(IMGSZ)) $(if $(filter 1,$(REUSE)),--reuse) \
	  $(if $(SOFT),--soft $(SOFT)) $(if $(CLS_PW),--cls-pw $(CLS_PW)) $(if $(CLOSE_MOSAIC),--close-mosaic $(CLOSE_MOSAIC)) \
	  $(if $(FREEZE),--freeze $(FREEZE))

merge: $(STAMP)
	$(EMODET) merge --affectnet $(OUT)

balance: $(STAMP)
	$(EMODET) balance --data data/fer2013 --weights --folds 5

# BACKEND=torch GPUS=N: N processes under torchrun (DistributedDataParallel, one GPU each; gloo on CPUs)
train-classifier: $(STAMP)
	$(if $(and $(GPUS),$(filter torch,$(BACKEND))),$(PY) -m torch.distributed.run --nproc_per_node $(GPUS) -m scripts.torch_classifier \
	  $(if $(filter-out v8n,$(MODEL)),--model $(MODEL)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SOFT),--soft $(SOFT)) \
	  $(call opt,$(DEVICE),--device),$(EMODET) train-classifier --backend $(BACKEND) $(if $(filter ultralytics,$(BACKEND)),--crops $(CROPS) --model $(MODEL),$(if $(filter torch,$(BACKEND)),$(if $(filter-out v8n,$(MODEL)),--model $(MODEL)),--darknet-data $(OUT)/darknet/48 $(if $(filter-out v8n,$(MODEL)),--model $(MODEL)))) \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(IMGSZ),--imgsz $(IMGSZ)) $(if $(SOFT),--soft $(SOFT)) $(call opt,$(DEVICE),--device))

# a shipped model from its recipe file: make train RECIPE=cfg/recipes/real-det.yaml [HOURS=0.1]
RECIPE ?= cfg/recipes/real-det.yaml
train: $(STAMP)
	$(EMODET) train --recipe $(RECIPE) $(if $(filter command line,$(origin HOURS)),--hours $(HOURS)) $(call opt,$(DEVICE),--device)

# K classifiers, each trained on K-1 folds of a table's train split with a classify recipe (default
# cfg/recipes/fer2013-tiny.yaml) and scored on the fold it did not see; then the likely label errors
# ranked from the out-of-fold probabilities (TRUTH= a second labelling of the same ids, e.g. FER+, to score them)
kfold: $(STAMP)
	$(EMODET) kfold $(call opt,$(K),--k) $(if $(filter command line,$(origin RECIPE)),--recipe $(RECIPE)) \
	  $(call opt,$(EPOCHS),--epochs) $(call opt,$(TABLE),--table) $(call opt,$(GROUPS),--groups) $(call opt,$(SEED),--seed)

OOF ?= runs/kfold/fer2013-tiny-k$(or $(K),5)/oof.npz
label-issues: $(STAMP)
	$(EMODET) label-issues --oof $(OOF) $(call opt,$(TABLE),--table) $(call opt,$(TRUTH),--truth)

partial: $(STAMP)
	$(EMODET) partial --backend $(BACKEND) --cfg $(CFG) $(call opt,$(CLASSES),--classes) $(if $(filter darknet,$(BACKEND)),$(call opt,$(LAYERS),--layers)) \
	  $(if $(CLS_WEIGHTS),--cls-weights $(CLS_WEIGHTS))

train-detector: $(STAMP)
	$(EMODET) train-detector --backend $(BACKEND) --cfg $(CFG) --data $(DATA_YAML) $(if $(INIT),--init $(INIT)) \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(IMGSZ),--imgsz $(IMGSZ)) $(call opt,$(DEVICE),--device)

WEIGHTS ?= weights/det.pt weights/cls.pt
SOURCE ?= data/affectnet/yolo/val

export: $(STAMP)
	$(EMODET) export $(WEIGHTS) $(if $(IMGSZ),--imgsz $(IMGSZ))

predict: $(STAMP)
	$(EMODET) predict $(SOURCE) $(if $(filter 1,$(TWO_STAGE)),--two-stage $(if $(CLASSIFIER),--classifier $(CLASSIFIER))) \
	  $(if $(filter command line,$(origin WEIGHTS)),--weights $(firstword $(WEIGHTS))) $(if $(IMGSZ),--imgsz $(IMGSZ)) \
	  $(if $(filter 1,$(FLIP)),--flip) $(call opt,$(DEVICE),--device) $(call opt,$(PASSES),--passes)

# the local web app on http://127.0.0.1:$(PORT) (photos, video, webcam); Ctrl-C stops it
PORT ?= 7860
app: $(STAMP)
	$(EMODET) app --port $(PORT) $(if $(filter command line,$(origin WEIGHTS)),--detector $(firstword $(WEIGHTS))) \
	  $(if $(CLASSIFIER),--classifier $(CLASSIFIER))

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(EMODET) demo --backend $(BACKEND)

bench: $(STAMP)
	$(EMODET) bench

clean:
	rm -rf runs data/sample data/affectnet data/fer2013 data/ferplus
