#!/usr/bin/env python3
"""Tests for scripts/build_datasets.py on the real Debian packages.

Plain unittest (no pytest):  python3 tests/scripts/test_datasets.py
Needs the packages from scripts/install-deps.sh.  Without them the tests are
skipped, unless NEXUS_REQUIRE_DATA=1 is set, in which case they fail.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(ROOT, "scripts", "build_datasets.py")
PACKAGES = ("dataset-fashion-mnist", "wordnet-base", "fortunes", "espeak-ng") + tuple(
    f"asterisk-core-sounds-{lang}-wav" for lang in ("en", "es", "fr", "it", "ru"))
TEXT = ("wordnet_supersense", "fortunes_category")
SPEECH = ("speech_language", "speech_digit")
ALL = ("fashion_mnist",) + TEXT + SPEECH
CAPS = ["--max-train", "2000", "--max-val", "500", "--max-test", "500",
        "--speech-language-train", "50", "--speech-language-val", "10", "--speech-language-test", "10",
        "--speech-digit-train", "20", "--speech-digit-val", "10", "--speech-digit-test", "10"]


def packages_missing():
    missing = []
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           universal_newlines=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def run_builder(out, *extra):
    return subprocess.run([sys.executable, BUILDER, "--out", out] + CAPS + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[0] == "text\tlabel\tid", lines[0]
    rows = []
    for line in lines[1:]:
        if not line:
            continue
        text, label, ident = line.split("\t")
        rows.append((text, int(label), ident))
    return rows


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, (zero, dtype)
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return list(dims), data[4 + 4 * ndim:]


_missing = packages_missing()
if _missing and os.environ.get("NEXUS_REQUIRE_DATA") != "1":
    raise unittest.SkipTest("Debian packages missing: %s (run scripts/install-deps.sh)"
                            % ", ".join(_missing))


class BuildDatasetsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if _missing:
            raise AssertionError("Debian packages missing: %s (run "
                                 "scripts/install-deps.sh)" % ", ".join(_missing))
        cls.tmp = tempfile.mkdtemp(prefix="nexus-datasets-test-")
        cls.out = os.path.join(cls.tmp, "data")
        r = run_builder(cls.out)
        if r.returncode != 0:
            raise AssertionError("builder failed (%d):\n%s\n%s"
                                 % (r.returncode, r.stdout, r.stderr))
        cls.first_stdout = r.stdout
        cls.manifests = {}
        for name in ALL:
            with open(os.path.join(cls.out, name, "manifest.json"), encoding="utf-8") as f:
                cls.manifests[name] = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def classes(self, name):
        with open(os.path.join(self.out, name, "classes.txt"), encoding="utf-8") as f:
            return [l for l in f.read().split("\n") if l]

    def test_first_run_built_everything(self):
        for name in ALL:
            self.assertRegex(self.first_stdout, r"\[%s\] built" % name)

    def test_manifest_fields(self):
        for name, m in self.manifests.items():
            for key in ("name", "dataset_id", "source_package", "source_version",
                        "builder_sha256", "splits", "classes", "class_counts", "files"):
                self.assertIn(key, m, "%s manifest lacks %s" % (name, key))
            self.assertEqual(m["name"], name)
            self.assertEqual(m["builder_sha256"], sha256(BUILDER))
            self.assertEqual(m["classes"], self.classes(name))
            self.assertEqual(len(m["dataset_id"]), 64)
            for split in ("train", "val", "test"):
                self.assertEqual(sum(m["class_counts"][split].values()), m["splits"][split])

    def test_speech_clips_lie_in_their_wavs_and_real_split_is_separate(self):
        import wave
        for name, classes, languages in (("speech_language", 5, 5), ("speech_digit", 10, 5)):
            m, ddir = self.manifests[name], os.path.join(self.out, name)
            self.assertEqual(m["modality"], "audio")
            self.assertEqual(len(self.classes(name)), classes)
            ids = set()
            for split in ("train", "val", "test", "real"):
                with wave.open(os.path.join(ddir, "audio_%s.wav" % split)) as w:
                    frames, rate = w.getnframes(), w.getframerate()
                    self.assertEqual((w.getnchannels(), w.getsampwidth()), (1, 2))
                self.assertEqual(rate, 8000 if split == "real" else 22050)
                with open(os.path.join(ddir, split + ".tsv"), encoding="utf-8") as f:
                    rows = [l.split("\t") for l in f.read().splitlines()[1:]]
                self.assertEqual(len(rows), m["splits"][split])
                end = 0
                for start, length, label, clip_id in rows:
                    self.assertEqual(int(start), end)  # back to back, inside the WAV
                    end += int(length)
                    self.assertLess(int(label), classes)
                    self.assertNotIn(clip_id, ids)
                    ids.add(clip_id)
                self.assertEqual(end, frames)
                real = split == "real"
                self.assertTrue(all(r[3].startswith("asterisk:" if real else "espeak:") for r in rows))
                if not real:  # balanced
                    counts = [sum(1 for r in rows if int(r[2]) == c) for c in range(classes)]
                    self.assertLessEqual(max(counts) - min(counts), 1)
            langs = {r.split(":")[1].split("/")[0] for r in ids if r.startswith("asterisk:")}
            self.assertEqual(len(langs), languages)

    def test_manifest_checksums_match_files(self):
        for name, m in self.manifests.items():
            ddir = os.path.join(self.out, name)
            listed = set(m["files"])
            present = set(os.listdir(ddir)) - {"manifest.json"}
            self.assertEqual(listed, present, name)
            for rel, digest in m["files"].items():
                self.assertEqual(sha256(os.path.join(ddir, rel)), digest, rel)

    def test_fashion_mnist_splits_and_labels(self):
        d = os.path.join(self.out, "fashion_mnist")
        expect = {"train": 55000, "val": 5000, "test": 10000}
        self.assertEqual(self.manifests["fashion_mnist"]["splits"], expect)
        seen = set()
        for split, n in expect.items():
            dims, img = read_idx(os.path.join(d, "images_%s.idx" % split))
            self.assertEqual(dims, [n, 28, 28])
            self.assertEqual(len(img), n * 784)
            dims, lab = read_idx(os.path.join(d, "labels_%s.idx" % split))
            self.assertEqual(dims, [n])
            self.assertLess(max(lab), 10)
            if split == "train":
                seen = set(lab)
        self.assertEqual(seen, set(range(10)))  # every class appears in train
        self.assertEqual(len(self.classes("fashion_mnist")), 10)

    def test_text_split_sizes_ids_labels_classes(self):
        caps = {"train": 2000, "val": 500, "test": 500}
        for name in TEXT:
            m = self.manifests[name]
            classes = self.classes(name)
            self.assertGreaterEqual(len(classes), 10, name)
            ids = {}
            for split in ("train", "val", "test"):
                rows = read_tsv(os.path.join(self.out, name, "%s.tsv" % split))
                self.assertEqual(len(rows), m["splits"][split], (name, split))
                self.assertLessEqual(len(rows), caps[split], (name, split))
                self.assertGreater(len(rows), 0, (name, split))
                for text, label, ident in rows:
                    self.assertTrue(text.strip(), (name, ident))
                    self.assertGreaterEqual(label, 0)
                    self.assertLess(label, len(classes))
                    self.assertNotIn(ident, ids, "%s: id %s in %s and %s"
                                     % (name, ident, ids.get(ident), split))
                    ids[ident] = split
                if split == "train":
                    self.assertEqual(set(l for _, l, _ in rows), set(range(len(classes))),
                                     "%s: some class missing from train" % name)
            # the caps bound the big split
            self.assertEqual(m["splits"]["train"], 2000, name)

    def test_wordnet_classes(self):
        classes = self.classes("wordnet_supersense")
        self.assertTrue(all(c.startswith(("noun.", "verb.")) for c in classes))
        self.assertIn("noun.animal", classes)
        self.assertIn("verb.motion", classes)
        for c, n in self.manifests["wordnet_supersense"]["class_totals_before_split"].items():
            self.assertGreaterEqual(n, 200, c)

    def test_fortunes_rules(self):
        m = self.manifests["fortunes_category"]
        for c, n in m["class_totals_before_split"].items():
            self.assertGreaterEqual(n, 150, c)
        for split in ("train", "val", "test"):
            for text, _, _ in read_tsv(os.path.join(self.out, "fortunes_category",
                                                    "%s.tsv" % split)):
                self.assertLessEqual(len(text), 600)
                self.assertEqual(text, " ".join(text.split()))

    def test_deterministic(self):
        other = os.path.join(self.tmp, "again")
        r = run_builder(other, *TEXT)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in TEXT:
            with open(os.path.join(other, name, "manifest.json"), encoding="utf-8") as f:
                m2 = json.load(f)
            self.assertEqual(m2["files"], self.manifests[name]["files"], name)
            self.assertEqual(m2["dataset_id"], self.manifests[name]["dataset_id"], name)

    def test_other_options_change_dataset_id(self):
        other = os.path.join(self.tmp, "opts")
        r = subprocess.run([sys.executable, BUILDER, "--out", other, "--max-train", "1500",
                            "--max-val", "500", "--max-test", "500", "fortunes_category"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(other, "fortunes_category", "manifest.json")) as f:
            m2 = json.load(f)
        self.assertNotEqual(m2["dataset_id"], self.manifests["fortunes_category"]["dataset_id"])
        self.assertEqual(m2["splits"]["train"], 1500)

    def test_bad_usage_exit_2(self):
        r = run_builder(os.path.join(self.tmp, "bad"), "no_such_dataset")
        self.assertEqual(r.returncode, 2)
        r = run_builder(os.path.join(self.tmp, "bad"), "--max-train", "0")
        self.assertEqual(r.returncode, 2)

    def test_zz_second_run_skips_then_corruption_rebuilds(self):
        # (named zz_ so that it runs last: it rewrites files of the shared build)
        before = {name: os.stat(os.path.join(self.out, name, "manifest.json")).st_mtime_ns
                  for name in ALL}
        r = run_builder(self.out)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ALL:
            self.assertRegex(r.stdout, r"\[%s\] skipped" % name)
            self.assertEqual(os.stat(os.path.join(self.out, name, "manifest.json")).st_mtime_ns,
                             before[name])
        # corrupt one output file: checksum mismatch -> rebuilt and restored
        victim = os.path.join(self.out, "wordnet_supersense", "val.tsv")
        good = self.manifests["wordnet_supersense"]["files"]["val.tsv"]
        with open(victim, "a", encoding="utf-8") as f:
            f.write("corrupted\t0\tx\n")
        self.assertNotEqual(sha256(victim), good)
        r = run_builder(self.out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[wordnet_supersense] rebuilt (checksum mismatch in val.tsv)", r.stdout)
        self.assertRegex(r.stdout, r"\[fortunes_category\] skipped")
        self.assertEqual(sha256(victim), good)
        # a deleted file is also detected
        os.remove(os.path.join(self.out, "fortunes_category", "classes.txt"))
        r = run_builder(self.out, "fortunes_category")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("rebuilt (missing file classes.txt)", r.stdout)
        # --force rebuilds even when up to date
        r = run_builder(self.out, "--force", "fortunes_category")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[fortunes_category] rebuilt (--force)", r.stdout)
        # no temporary build folders are left behind
        self.assertEqual(sorted(os.listdir(self.out)), sorted(ALL))


if __name__ == "__main__":
    unittest.main(verbosity=2)
