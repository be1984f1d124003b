#!/usr/bin/env bash
# Installs the Debian packages that scripts/build_datasets.py builds its datasets
# from (see docs/data.md).  Versions are pinned in build_datasets.py (PINNED); the
# builder refuses other versions unless --allow-other-version is given.
set -euo pipefail
packages=(
  dataset-fashion-mnist   # Fashion-MNIST IDX files -> fashion_mnist
  wordnet-base            # WordNet 3.0 database    -> wordnet_supersense
  fortunes                # fortune-mod quotes      -> fortunes_category
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-data-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-data-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
