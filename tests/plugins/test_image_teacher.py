#!/usr/bin/env python3
"""Checks the Fashion-MNIST image teacher that scripts/train_image_teacher.py exports to
.cache/models/fmnist-cnn/ (scripts/test.sh trains it during set-up, after build_datasets.py).

Plain unittest:  /usr/bin/python3 tests/plugins/test_image_teacher.py [NEXUS_BINARY]
Needs Debian's python3-torch. A missing model fails (it is not skipped): run
scripts/train_image_teacher.py. With NEXUS_BINARY (ctest passes it) the model is also run through
the `torchscript` teacher plugin by `nexus validate` and `nexus forward`.
"""
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.environ.get("NEXUS_MODELS_DIR", os.path.join(ROOT, ".cache", "models"))
MODEL_DIR = os.path.join(MODELS, "fmnist-cnn")
DATA = os.path.join(ROOT, "data", "fashion_mnist")
VAL_ACCURACY_FLOOR = 0.88
NEXUS = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None


def load_recipe():
    spec = importlib.util.spec_from_file_location("train_image_teacher", os.path.join(ROOT, "scripts", "train_image_teacher.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ImageTeacherTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.recipe = load_recipe()
        cls.model_path = os.path.join(MODEL_DIR, "model.pt")
        missing = [p for p in (cls.model_path, os.path.join(MODEL_DIR, "meta.json")) if not os.path.isfile(p)]
        if missing:
            raise AssertionError(f"missing {', '.join(missing)}: run /usr/bin/python3 scripts/train_image_teacher.py")
        with open(os.path.join(MODEL_DIR, "meta.json")) as f:
            cls.meta = json.load(f)
        torch.set_num_threads(1)
        cls.model = torch.jit.load(cls.model_path)
        cls.model.eval()

    def test_meta_matches_recipe_data_and_file(self):
        m = self.meta
        self.assertEqual(m["recipe_version"], self.recipe.RECIPE_VERSION)
        self.assertEqual(m["seed"], self.recipe.SEED)
        self.assertEqual(m["epochs"], self.recipe.EPOCHS)
        with open(self.model_path, "rb") as f:
            self.assertEqual(m["model_sha256"], hashlib.sha256(f.read()).hexdigest())
        with open(os.path.join(DATA, "manifest.json")) as f:
            self.assertEqual(m["dataset_id"], json.load(f)["dataset_id"], "trained on other data: retrain")
        self.assertEqual(m["train_split"], "train")
        self.assertEqual(m["embedding_dim"], 128)

    def test_val_accuracy_floor(self):
        self.assertGreaterEqual(self.meta["val_accuracy"], VAL_ACCURACY_FLOOR)

    def test_output_shape_dtype_and_determinism(self):
        gen = torch.Generator().manual_seed(0)
        for b in (1, 5, 64):
            x = torch.rand(b, 1, 28, 28, generator=gen)
            with torch.no_grad():
                y1, y2 = self.model(x), self.model(x)
            self.assertEqual(tuple(y1.shape), (b, 128))
            self.assertEqual(y1.dtype, torch.float32)
            self.assertTrue(torch.equal(y1, y2), "two forward passes differ")
            self.assertTrue(bool(torch.isfinite(y1).all()))
            self.assertGreaterEqual(float(y1.min()), 0.0, "the embedding is taken after ReLU")
        # A row does not depend on the rest of the batch (BatchNorm is in eval mode).
        x = torch.rand(6, 1, 28, 28, generator=gen)
        with torch.no_grad():
            self.assertTrue(torch.allclose(self.model(x)[2:3], self.model(x[2:3]), atol=1e-5))

    def test_features_separate_the_classes(self):
        """Independent of meta.json: nearest class mean of the 128-d features, centroids from 10,000
        training images, accuracy on the val split."""
        recipe = self.recipe
        train_x, train_y = recipe.load_split(DATA, "train")
        val_x, val_y = recipe.load_split(DATA, "val")
        with torch.no_grad():
            ft = torch.cat([self.model(train_x[i:i + 1000]) for i in range(0, 10000, 1000)])
            fv = torch.cat([self.model(val_x[i:i + 1000]) for i in range(0, val_x.size(0), 1000)])
        centroids = torch.stack([ft[train_y[:10000] == c].mean(0) for c in range(10)])
        acc = (torch.cdist(fv, centroids).argmin(1) == val_y).double().mean().item()
        print(f"\nnearest-centroid val accuracy on the exported features: {acc:.4f}", file=sys.stderr)
        self.assertGreaterEqual(acc, 0.85)

    @unittest.skipUnless(NEXUS, "no nexus binary given")
    def test_runs_in_the_torchscript_teacher_plugin(self):
        with tempfile.TemporaryDirectory() as tmp:
            comp = os.path.join(tmp, "fmnist.yaml")
            with open(comp, "w") as f:
                f.write(f"""nexus: 1
name: fmnist-teacher-check
shared_dim: 32
teachers:
  - name: fmnist_cnn
    plugin: torchscript
    modality: image
    width: 128
    options: {{path: {self.model_path}, modality: image, input_shape: [1, 28, 28]}}
    tower: {{plugin: linear}}
router: {{plugin: softmax}}
heads:
  - {{name: classes, task: fashion, outputs: 10, plugin: linear}}
losses:
  - {{plugin: cross_entropy, head: classes}}
""")
            env = dict(os.environ, NEXUS_CACHE_DIR=os.path.join(tmp, "cache"))
            r = subprocess.run([NEXUS, "validate", comp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, env=env)
            self.assertEqual(r.returncode, 0, r.stdout)
            r = subprocess.run([NEXUS, "forward", comp, "--json", "--batch", "4"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            b = json.loads(r.stdout)["batches"][0]
            self.assertEqual(b["teachers_run"], ["fmnist_cnn"])
            self.assertEqual(b["shared"], [4, 32])
            self.assertEqual(b["heads"]["classes"], [4, 10])
            self.assertTrue(b["shared_finite"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
