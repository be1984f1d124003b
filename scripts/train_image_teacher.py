#!/usr/bin/env python3
"""Trains NEXUS's image teacher: a small CNN on Fashion-MNIST, exported as TorchScript for the
`torchscript` teacher plugin. No registry (PyPI, Debian) ships a pretrained Fashion-MNIST model,
so this pinned recipe trains one during set-up (docs/plugins.md, "Image teacher").

Recipe (RECIPE_VERSION below; any change to it must bump the version):
  data     data/fashion_mnist from scripts/build_datasets.py: the *train* split (55,000 images)
           for training, the *val* split (5,000) for the reported accuracy; test is not read.
  input    float [B, 1, 28, 28], pixel / 255 in [0, 1]: exactly what NEXUS feeds a teacher
           (core/data/src/dataset.cpp, DatasetSplit::batch). The module standardises internally with
           the train split's mean and std, which are baked into the exported file.
  network  conv3x3(1->16)+BN+ReLU+maxpool2 -> conv3x3(16->32)+BN+ReLU+maxpool2 ->
           linear(1568->128)+ReLU  = the 128-d embedding (exported)  -> linear(128->10) (training only)
  training AdamW (lr 3e-3, weight decay 1e-4), one-cycle schedule, batch 128, EPOCHS epochs,
           cross-entropy; seed 20240607; torch.use_deterministic_algorithms(True); THREADS threads;
           shuffling from a seeded torch.Generator; no augmentation.
  export   torch.jit.script of the feature extractor in eval mode (BatchNorm uses running stats),
           forward(x [B,1,28,28] float) -> [B,128] (after ReLU, not logits), to
           .cache/models/fmnist-cnn/model.pt, plus meta.json (recipe version, seed, epochs,
           val accuracy, sha256 of model.pt, dataset_id of the data it was trained on, ...).

Idempotent: skipped when model.pt and meta.json exist, meta.json has this RECIPE_VERSION and the
dataset's current dataset_id, and model.pt's sha256 matches meta.json. --force retrains.
Deterministic: one thread, deterministic algorithms, and PYTHONHASHSEED=0 (the script re-executes
itself with it) give the same model.pt bytes run after run on one machine; another CPU (other SIMD
kernels) may give slightly different weights and accuracy, which meta.json records.

Needs Debian's python3-torch (1.13) and python3-numpy: run it with /usr/bin/python3.
Exit codes: 0 ok (trained or skipped), 1 failure, 2 bad usage.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import time

RECIPE_VERSION = "fmnist-cnn-1"
SEED = 20240607
EPOCHS = 4
THREADS = 1  # more OpenMP threads than free cores (a busy 2-core CI box) makes it several times slower
BATCH = 128
LR = 3e-3
WEIGHT_DECAY = 1e-4
EMBED = 128

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path):
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not a uint8 IDX file")
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated")
    return arr.reshape(dims)


def load_split(data_dir, split):
    import torch
    images = torch.from_numpy(read_idx(os.path.join(data_dir, f"images_{split}.idx")).copy())
    labels = torch.from_numpy(read_idx(os.path.join(data_dir, f"labels_{split}.idx")).copy()).long()
    # Exactly NEXUS's image input: uint8 -> float / 255, [N, 1, 28, 28].
    return images.to(torch.float32).div_(255.0).unsqueeze(1), labels


def build_modules(mean, std):
    import torch
    from torch import nn

    class FashionFeatures(nn.Module):
        """Fashion-MNIST CNN feature extractor: [B,1,28,28] pixels in [0,1] -> [B,128] (ReLU)."""

        def __init__(self, mean: float, std: float):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(32)
            self.fc = nn.Linear(32 * 7 * 7, EMBED)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - self.mean) / self.std
            x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
            x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
            return torch.relu(self.fc(x.flatten(1)))

    features = FashionFeatures(mean, std)
    head = nn.Linear(EMBED, 10)
    return features, head


def accuracy(features, head, images, labels, batch=1000):
    import torch
    features.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, images.size(0), batch):
            correct += (head(features(images[i:i + batch])).argmax(1) == labels[i:i + batch]).sum().item()
    return correct / images.size(0)


def up_to_date(out_dir, dataset_id):
    model, meta_path = os.path.join(out_dir, "model.pt"), os.path.join(out_dir, "meta.json")
    if not (os.path.isfile(model) and os.path.isfile(meta_path)):
        return False, "no model yet"
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False, "unreadable meta.json"
    if meta.get("recipe_version") != RECIPE_VERSION:
        return False, f"recipe {meta.get('recipe_version')} != {RECIPE_VERSION}"
    if meta.get("dataset_id") != dataset_id:
        return False, "dataset_id changed"
    if meta.get("model_sha256") != sha256_file(model):
        return False, "model.pt does not match meta.json"
    return True, f"val accuracy {meta.get('val_accuracy')}"


def main():
    # TorchScript writes a module's constants in set order, which follows Python's per-process string
    # hash seed: pin it so that the same weights give the same model.pt bytes (and sha256).
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "fashion_mnist"),
                    help="Fashion-MNIST folder written by scripts/build_datasets.py")
    ap.add_argument("--out", default=os.path.join(os.environ.get("NEXUS_MODELS_DIR", os.path.join(ROOT, ".cache", "models")),
                                                  "fmnist-cnn"))
    ap.add_argument("--force", action="store_true", help="retrain even if an up-to-date model exists")
    args = ap.parse_args()

    manifest_path = os.path.join(args.data, "manifest.json")
    if not os.path.isfile(manifest_path):
        print(f"train_image_teacher: {manifest_path} not found: run scripts/build_datasets.py first", file=sys.stderr)
        return 1
    with open(manifest_path) as f:
        manifest = json.load(f)
    dataset_id = manifest["dataset_id"]
    ok, why = up_to_date(args.out, dataset_id)
    if ok and not args.force:
        print(f"train_image_teacher: {args.out} up to date ({RECIPE_VERSION}, {why})")
        return 0
    if ok:
        why = "--force"

    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"train_image_teacher: {e} (apt-get install python3-torch; run with /usr/bin/python3)", file=sys.stderr)
        return 1

    for split in ("train", "val"):
        for kind in ("images", "labels"):
            name = f"{kind}_{split}.idx"
            if sha256_file(os.path.join(args.data, name)) != manifest["files"][name]:
                print(f"train_image_teacher: {name} does not match its manifest: "
                      "rebuild with scripts/build_datasets.py --force", file=sys.stderr)
                return 1

    print(f"train_image_teacher: training {RECIPE_VERSION} ({why}); {EPOCHS} epochs, {THREADS} threads")
    start = time.time()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    train_x, train_y = load_split(args.data, "train")
    val_x, val_y = load_split(args.data, "val")
    mean, std = train_x.mean().item(), train_x.std().item()
    features, head = build_modules(mean, std)
    params = list(features.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = (train_x.size(0) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=EPOCHS * steps_per_epoch)
    gen = torch.Generator().manual_seed(SEED)
    history = []
    for epoch in range(EPOCHS):
        features.train()
        order = torch.randperm(train_x.size(0), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, train_x.size(0), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(head(features(train_x[idx])), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
            seen += idx.numel()
        val_acc = accuracy(features, head, val_x, val_y)
        history.append({"epoch": epoch + 1, "train_loss": round(total / seen, 4), "val_accuracy": round(val_acc, 4)})
        print(f"train_image_teacher: epoch {epoch + 1}/{EPOCHS} train loss {total / seen:.4f} "
              f"val accuracy {val_acc:.4f} ({time.time() - start:.0f} s)", flush=True)

    features.eval()
    scripted = torch.jit.script(features)
    with torch.no_grad():
        probe = val_x[:8]
        if not torch.equal(scripted(probe), features(probe)):
            print("train_image_teacher: scripted module disagrees with the eager one", file=sys.stderr)
            return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    model_path = os.path.join(tmp, "model.pt")
    scripted.save(model_path)
    meta = {
        "recipe_version": RECIPE_VERSION,
        "recipe": "scripts/train_image_teacher.py",
        "seed": SEED,
        "epochs": EPOCHS,
        "threads": THREADS,
        "batch_size": BATCH,
        "optimizer": f"AdamW lr={LR} weight_decay={WEIGHT_DECAY}, one-cycle",
        "dataset": "fashion_mnist",
        "dataset_id": dataset_id,
        "train_split": "train",
        "train_size": int(train_x.size(0)),
        "val_size": int(val_x.size(0)),
        "val_accuracy": round(history[-1]["val_accuracy"], 4),
        "history": history,
        "input": "float [B,1,28,28], pixel/255 (NEXUS image batches); standardised inside with "
                 f"mean={mean:.6f} std={std:.6f} of the train split",
        "output": f"[B,{EMBED}] penultimate-layer embedding after ReLU (not logits)",
        "embedding_dim": EMBED,
        "torch": torch.__version__,
        "train_seconds": round(time.time() - start, 1),
        "model_sha256": sha256_file(model_path),
    }
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    if os.path.isdir(args.out):
        for name in os.listdir(args.out):
            os.remove(os.path.join(args.out, name))
        os.rmdir(args.out)
    os.rename(tmp, args.out)
    print(f"train_image_teacher: {args.out}/model.pt: val accuracy {meta['val_accuracy']:.4f}, "
          f"{meta['train_seconds']} s, sha256 {meta['model_sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
