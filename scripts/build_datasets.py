#!/usr/bin/env python3
"""Build NEXUS's real labelled datasets from pinned Debian packages.

Python 3 standard library only.  Sources (install them with
scripts/install-deps.sh):

  fashion_mnist       <- dataset-fashion-mnist  (IDX images/labels)
  wordnet_supersense  <- wordnet-base           (WordNet 3.0 glosses -> lexicographer file)
  fortunes_category   <- fortunes               (fortune quotes -> fortune file / category)

Each dataset is written to OUT/<name>/ together with a manifest.json that records
the source package and its exact version, split sizes, classes and per-split class
counts, the sha256 of every output file, the sha256 of this script and a
dataset_id (the cache key).  A dataset whose manifest exists, whose dataset_id is the
one this run would produce and whose files all match their recorded checksums is
skipped; anything else (missing/corrupted file, other options, other builder) is
rebuilt.  Builds go to a temporary sibling folder that replaces the old one only
when complete, so an interrupted run never leaves a half-written dataset behind.

Exit codes: 0 ok, 1 failure, 2 bad usage.  See docs/data.md.
"""

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

SCHEMA_VERSION = 1

# Pinned Debian package versions (Debian 12 "bookworm").  A different installed
# version is refused unless --allow-other-version is given.
PINNED = {
    "dataset-fashion-mnist": "0.0~git20200523.55506a9-1",
    "wordnet-base": "1:3.0-37",
    "fortunes": "1:1.99.1-7.3",
}

DATASETS = ("fashion_mnist", "wordnet_supersense", "fortunes_category")
SOURCE_PACKAGE = {
    "fashion_mnist": "dataset-fashion-mnist",
    "wordnet_supersense": "wordnet-base",
    "fortunes_category": "fortunes",
}
LICENSE = {
    "fashion_mnist": "Expat (MIT), Copyright 2017 Zalando SE; see "
                     "/usr/share/doc/dataset-fashion-mnist/copyright",
    "wordnet_supersense": "WordNet 3.0 license (permissive, Princeton University); "
                          "see /usr/share/doc/wordnet-base/copyright",
    "fortunes_category": "BSD (fortune-mod, The Regents of the University of "
                         "California); quotes collected from many sources; see "
                         "/usr/share/doc/fortunes/copyright",
}

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_VAL = 5000  # last 5,000 of the official training set

WORDNET_DIR = "/usr/share/wordnet"
# Standard WordNet lexicographer file names, index = lex_filenum (lexnames(5WN)).
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception",
    "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
]
FORTUNES_DIR = "/usr/share/games/fortunes"

SPLITS = ("train", "val", "test")


class BuildError(Exception):
    """A failure that should end the run with exit code 1 and a clear message."""


# ----------------------------------------------------------------- helpers

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def builder_sha256():
    return sha256_file(os.path.abspath(__file__))


def split_of(key):
    """Deterministic split from sha256(key) % 10: 0 -> test, 1 -> val, else train.
    Returns (split, hash_int); hash_int orders examples for the caps."""
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16)
    r = h % 10
    return ("test" if r == 0 else "val" if r == 1 else "train"), h


def installed_version(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, check=False)
    except FileNotFoundError:
        raise BuildError("dpkg-query not found: this builder needs a Debian system")
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip()


def package_files(pkg):
    out = subprocess.run(["dpkg", "-L", pkg], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if out.returncode != 0:
        raise BuildError("dpkg -L %s failed: %s" % (pkg, out.stderr.strip()))
    return [l for l in out.stdout.splitlines() if l.strip()]


def check_package(pkg, allow_other):
    ver = installed_version(pkg)
    if ver is None:
        raise BuildError("Debian package '%s' is not installed; run "
                         "scripts/install-deps.sh (pinned version %s)"
                         % (pkg, PINNED[pkg]))
    if ver != PINNED[pkg] and not allow_other:
        raise BuildError("Debian package '%s' is installed at version %s but this "
                         "builder is pinned to %s; refusing (pass "
                         "--allow-other-version to build anyway, the version is "
                         "recorded in the manifest and the dataset_id)"
                         % (pkg, ver, PINNED[pkg]))
    return ver


def cap_split(items, cap, label_of, min_per_class):
    """Keep at most `cap` items, deterministically.  `items` are (hash_int, ...)
    tuples.  The first min(min_per_class, available) lowest-hash items of every
    class are reserved (so no class vanishes from a small split), the remaining
    room is filled with the lowest-hash items overall.  Returns the kept items in
    hash order."""
    items = sorted(items, key=lambda t: t[0])
    if cap is None or len(items) <= cap:
        return items
    keep = set()
    per_class = {}
    if min_per_class > 0:
        for i, it in enumerate(items):
            c = label_of(it)
            if per_class.get(c, 0) < min_per_class:
                per_class[c] = per_class.get(c, 0) + 1
                keep.add(i)
        if len(keep) > cap:  # floors alone overflow the cap: keep lowest hashes
            keep = set(sorted(keep)[:cap])
    for i in range(len(items)):
        if len(keep) >= cap:
            break
        keep.add(i)
    return [items[i] for i in sorted(keep)]


def write_idx(path, dims, payload):
    """IDX file of unsigned bytes (type 0x08) with the given dims."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, len(dims)))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(payload)


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BuildError("%s: not an IDX file" % path)
    dtype, ndim = data[2], data[3]
    if dtype != 0x08:
        raise BuildError("%s: expected unsigned byte IDX data, got type 0x%02x"
                         % (path, dtype))
    dims = list(struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim]))
    body = data[4 + 4 * ndim:]
    expected = 1
    for d in dims:
        expected *= d
    if len(body) != expected:
        raise BuildError("%s: payload has %d bytes, header says %d"
                         % (path, len(body), expected))
    return dims, body


def write_tsv(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("text\tlabel\tid\n")
        for text, label, ident in rows:
            f.write("%s\t%d\t%s\n" % (text, label, ident))


def write_classes(path, classes):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for c in classes:
            f.write(c + "\n")


# --------------------------------------------------------- dataset builders
# Each builder writes into `tmp` and returns a dict with
# splits {split: size}, classes [...], class_counts {split: {class: n}},
# and optionally extra manifest fields.

def build_fashion_mnist(tmp, args):
    files = package_files("dataset-fashion-mnist")
    want = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    src = {}
    for key, base in want.items():
        hits = [p for p in files if os.path.basename(p) == base]
        if not hits or not os.path.isfile(hits[0]):
            raise BuildError("dataset-fashion-mnist does not provide %s" % base)
        src[key] = hits[0]
    tr_dims, tr_img = read_idx_gz(src["train_images"])
    trl_dims, tr_lab = read_idx_gz(src["train_labels"])
    te_dims, te_img = read_idx_gz(src["test_images"])
    tel_dims, te_lab = read_idx_gz(src["test_labels"])
    if tr_dims != [60000, 28, 28] or trl_dims != [60000] \
            or te_dims != [10000, 28, 28] or tel_dims != [10000]:
        raise BuildError("unexpected Fashion-MNIST shapes: %s %s %s %s"
                         % (tr_dims, trl_dims, te_dims, tel_dims))
    px = 28 * 28
    ntr = 60000 - FASHION_VAL
    parts = {
        "train": (tr_img[:ntr * px], tr_lab[:ntr]),
        "val": (tr_img[ntr * px:], tr_lab[ntr:]),
        "test": (te_img, te_lab),
    }
    counts = {}
    for split, (img, lab) in parts.items():
        n = len(lab)
        if max(lab) >= len(FASHION_CLASSES):
            raise BuildError("Fashion-MNIST label out of range in %s" % split)
        write_idx(os.path.join(tmp, "images_%s.idx" % split), [n, 28, 28], img)
        write_idx(os.path.join(tmp, "labels_%s.idx" % split), [n], lab)
        counts[split] = {c: lab.count(bytes([i]))
                         for i, c in enumerate(FASHION_CLASSES)}
    write_classes(os.path.join(tmp, "classes.txt"), FASHION_CLASSES)
    return {
        "splits": {s: len(parts[s][1]) for s in SPLITS},
        "classes": FASHION_CLASSES,
        "class_counts": counts,
        "format": "IDX (uncompressed): images_{split}.idx uint8 [N,28,28], "
                  "labels_{split}.idx uint8 [N]; classes.txt line i = label i",
        "split_rule": "train = official train[0:55000], val = official "
                      "train[55000:60000], test = official t10k (10000)",
        "source_files": {os.path.basename(p): sha256_file(p) for p in src.values()},
    }


_EXAMPLE_SPLIT = re.compile(r';\s*"')


def wordnet_records(args):
    """Yields (id, text, class_name) for every noun and verb synset."""
    for pos_file, pos in (("data.noun", "n"), ("data.verb", "v")):
        path = os.path.join(WORDNET_DIR, pos_file)
        if not os.path.isfile(path):
            raise BuildError("wordnet-base does not provide %s" % path)
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or not line.strip():
                    continue  # license header
                head, sep, gloss = line.partition("|")
                if not sep:
                    continue
                fields = head.split()
                offset, lex_filenum = fields[0], int(fields[1])
                name = LEXNAMES[lex_filenum] if lex_filenum < len(LEXNAMES) else None
                if name is None or not (name.startswith("noun.")
                                        or name.startswith("verb.")):
                    continue
                gloss = gloss.strip()
                if args.wordnet_text == "definition":
                    text = _EXAMPLE_SPLIT.split(gloss, 1)[0].strip()
                    if not text:  # gloss that is only an example
                        text = gloss
                else:
                    text = gloss
                text = " ".join(text.split())
                if text:
                    yield pos + offset, text, name


def fortunes_records(args):
    """Yields (id, text, class_name) for every usable quote of package `fortunes`."""
    files = []
    for p in package_files("fortunes"):
        if not p.startswith(FORTUNES_DIR + "/"):
            continue
        base = os.path.basename(p)
        if base.endswith(".dat") or base.endswith(".u8") or os.path.islink(p):
            continue
        if os.path.isfile(p):
            files.append(p)
    if not files:
        raise BuildError("package fortunes provides no fortune files under %s"
                         % FORTUNES_DIR)
    seen = {}  # text -> category of its first occurrence, or None if ambiguous
    order = []
    for path in sorted(files):
        cat = os.path.basename(path)
        with open(path, "rb") as f:
            raw = f.read()
        quotes, cur = [], []
        for line in raw.split(b"\n"):
            if line.rstrip(b"\r") == b"%":
                quotes.append(b"\n".join(cur))
                cur = []
            else:
                cur.append(line)
        quotes.append(b"\n".join(cur))
        for q in quotes:
            try:
                s = q.decode("utf-8")
            except UnicodeDecodeError:
                s = q.decode("latin-1")
            s = re.sub(r".\x08", "", s)            # overstriking (x BS y -> y)
            s = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in s)
            s = " ".join(s.split())                # single-line whitespace
            if not s or len(s) > args.fortune_max_chars:
                continue
            if s in seen:
                if seen[s] != cat:
                    seen[s] = None                 # same quote, two categories
                continue
            seen[s] = cat
            order.append(s)
    for s in order:
        if seen[s] is not None:
            yield sha256_text(s)[:16], s, seen[s]


def build_text_dataset(tmp, args, records, min_per_class_total, key_of):
    by_class = {}
    recs = list(records)
    ids = set()
    for ident, text, cname in recs:
        if ident in ids:
            raise BuildError("duplicate example id %s" % ident)
        ids.add(ident)
        by_class[cname] = by_class.get(cname, 0) + 1
    classes = sorted(c for c, n in by_class.items() if n >= min_per_class_total)
    dropped = {c: n for c, n in sorted(by_class.items()) if n < min_per_class_total}
    index = {c: i for i, c in enumerate(classes)}
    pools = {s: [] for s in SPLITS}
    for ident, text, cname in recs:
        if cname not in index:
            continue
        split, h = split_of(key_of(ident, text))
        pools[split].append((h, text, index[cname], ident))
    caps = {"train": args.max_train, "val": args.max_val, "test": args.max_test}
    counts, sizes, uncapped = {}, {}, {}
    for split in SPLITS:
        uncapped[split] = len(pools[split])
        kept = cap_split(pools[split], caps[split], lambda t: t[2],
                         args.min_per_class)
        write_tsv(os.path.join(tmp, "%s.tsv" % split),
                  [(t, lab, ident) for _, t, lab, ident in kept])
        sizes[split] = len(kept)
        c = {name: 0 for name in classes}
        for _, _, lab, _ in kept:
            c[classes[lab]] += 1
        counts[split] = c
    write_classes(os.path.join(tmp, "classes.txt"), classes)
    return {
        "splits": sizes,
        "classes": classes,
        "class_counts": counts,
        "format": "{split}.tsv: header 'text<TAB>label<TAB>id', label = line index "
                  "in classes.txt (0-based), UTF-8",
        "available_before_caps": uncapped,
        "class_totals_before_split": {c: by_class[c] for c in classes},
        "dropped_classes": dropped,
    }


def build_wordnet_supersense(tmp, args):
    info = build_text_dataset(tmp, args, wordnet_records(args), args.wordnet_min_class,
                              key_of=lambda ident, text: ident)
    info["split_rule"] = ("h = sha256(synset id, e.g. 'n02084071') as integer; "
                          "h % 10: 0 -> test, 1 -> val, else train; caps keep "
                          "lowest h (with a per-class floor)")
    info["text"] = ("gloss definition: text after '|' up to the first '; \"' "
                    "example quote" if args.wordnet_text == "definition"
                    else "full gloss after '|' including example quotes")
    return info


def build_fortunes_category(tmp, args):
    info = build_text_dataset(tmp, args, fortunes_records(args), args.fortune_min_class,
                              key_of=lambda ident, text: text)
    info["split_rule"] = ("h = sha256(normalised quote text) as integer; "
                          "h % 10: 0 -> test, 1 -> val, else train; caps keep "
                          "lowest h (with a per-class floor)")
    info["text"] = ("quote with whitespace collapsed to single spaces, overstrike "
                    "and control characters removed; quotes > %d chars skipped; "
                    "exact duplicates kept once, dropped if in two categories"
                    % args.fortune_max_chars)
    return info


BUILDERS = {
    "fashion_mnist": build_fashion_mnist,
    "wordnet_supersense": build_wordnet_supersense,
    "fortunes_category": build_fortunes_category,
}


def dataset_options(name, args):
    """Options that change a dataset's content; part of its dataset_id."""
    if name == "fashion_mnist":
        return {"val_size": FASHION_VAL}
    common = {"max_train": args.max_train, "max_val": args.max_val,
              "max_test": args.max_test, "min_per_class": args.min_per_class}
    if name == "wordnet_supersense":
        common.update(text=args.wordnet_text, min_class=args.wordnet_min_class)
    else:
        common.update(max_chars=args.fortune_max_chars,
                      min_class=args.fortune_min_class)
    return common


def compute_dataset_id(name, version, builder_sha, options):
    blob = "\n".join([name, version, builder_sha,
                      json.dumps(options, sort_keys=True, separators=(",", ":"))])
    return sha256_text(blob)


# ------------------------------------------------------------ cache checks

def check_existing(ddir, dataset_id):
    """Returns (ok, reason).  ok means the dataset can be skipped."""
    mpath = os.path.join(ddir, "manifest.json")
    if not os.path.isfile(mpath):
        return False, "no manifest"
    try:
        with open(mpath, "r", encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        return False, "unreadable manifest (%s)" % e
    if m.get("dataset_id") != dataset_id:
        return False, "dataset_id changed (package, builder or options differ)"
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        return False, "manifest lists no files"
    for rel, want in sorted(files.items()):
        p = os.path.join(ddir, rel)
        if not os.path.isfile(p):
            return False, "missing file %s" % rel
        if sha256_file(p) != want:
            return False, "checksum mismatch in %s" % rel
    return True, "checksums match"


def build_one(name, args, version, bsha, out):
    options = dataset_options(name, args)
    dataset_id = compute_dataset_id(name, version, bsha, options)
    ddir = os.path.join(out, name)
    reason = "--force"
    if not args.force:
        ok, reason = check_existing(ddir, dataset_id)
        if ok:
            with open(os.path.join(ddir, "manifest.json"), encoding="utf-8") as f:
                return "skipped", reason, json.load(f)
    existed = os.path.isdir(ddir)
    tmp = tempfile.mkdtemp(prefix=".%s.tmp-" % name, dir=out)
    try:
        info = BUILDERS[name](tmp, args)
        files = {}
        for fn in sorted(os.listdir(tmp)):
            files[fn] = sha256_file(os.path.join(tmp, fn))
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "dataset_id": dataset_id,
            "source_package": SOURCE_PACKAGE[name],
            "source_version": version,
            "pinned_version": PINNED[SOURCE_PACKAGE[name]],
            "license": LICENSE[name],
            "builder": "scripts/build_datasets.py",
            "builder_sha256": bsha,
            "options": options,
            "splits": info.pop("splits"),
            "num_classes": len(info["classes"]),
            "classes": info.pop("classes"),
            "class_counts": info.pop("class_counts"),
            "files": files,
        }
        manifest.update(info)
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=False)
            f.write("\n")
        old = None
        if existed:
            old = ddir + ".old-%d" % os.getpid()
            os.rename(ddir, old)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        os.rename(tmp, ddir)
        tmp = None
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    status = "rebuilt" if existed else "built"
    return status, reason, manifest


# -------------------------------------------------------------------- main

def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "data"))
    p = argparse.ArgumentParser(
        description="Build NEXUS datasets from pinned Debian packages "
                    "(see docs/data.md).")
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="datasets to build (default: all of %s)" % ", ".join(DATASETS))
    p.add_argument("--out", default=default_out,
                   help="output folder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--allow-other-version", action="store_true",
                   help="build even if an installed package differs from the pin")
    p.add_argument("--max-train", type=int, default=24000,
                   help="cap on train examples of the text datasets (default 24000)")
    p.add_argument("--max-val", type=int, default=3000,
                   help="cap on val examples of the text datasets (default 3000)")
    p.add_argument("--max-test", type=int, default=3000,
                   help="cap on test examples of the text datasets (default 3000)")
    p.add_argument("--min-per-class", type=int, default=10,
                   help="when a cap applies, keep at least this many of each class "
                        "in the split if available (default 10)")
    p.add_argument("--wordnet-text", choices=("definition", "gloss"),
                   default="definition",
                   help="WordNet text: definition before the first example quote "
                        "(default) or the full gloss")
    p.add_argument("--wordnet-min-class", type=int, default=200,
                   help="drop WordNet supersenses with fewer examples (default 200)")
    p.add_argument("--fortune-min-class", type=int, default=150,
                   help="drop fortune categories with fewer quotes (default 150)")
    p.add_argument("--fortune-max-chars", type=int, default=600,
                   help="skip quotes longer than this after normalisation (default 600)")
    args = p.parse_args(argv)
    for d in args.datasets:
        if d not in DATASETS:
            p.error("unknown dataset %r (choose from %s)" % (d, ", ".join(DATASETS)))
    for opt in ("max_train", "max_val", "max_test"):
        if getattr(args, opt) < 1:
            p.error("--%s must be >= 1" % opt.replace("_", "-"))
    for opt in ("min_per_class", "wordnet_min_class", "fortune_min_class"):
        if getattr(args, opt) < 0:
            p.error("--%s must be >= 0" % opt.replace("_", "-"))
    if args.fortune_max_chars < 1:
        p.error("--fortune-max-chars must be >= 1")
    if not args.datasets:
        args.datasets = list(DATASETS)
    else:  # keep canonical order, no duplicates
        args.datasets = [d for d in DATASETS if d in args.datasets]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = os.path.abspath(args.out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        print("build_datasets: cannot create %s: %s" % (out, e), file=sys.stderr)
        return 1
    bsha = builder_sha256()
    results = []
    failed = False
    for name in args.datasets:
        pkg = SOURCE_PACKAGE[name]
        try:
            version = check_package(pkg, args.allow_other_version)
            print("[%s] %s %s: checking/building ..." % (name, pkg, version), flush=True)
            status, reason, m = build_one(name, args, version, bsha, out)
            print("[%s] %s (%s) -> %s" % (name, status, reason,
                                           os.path.join(out, name)), flush=True)
            results.append((name, status, m))
        except BuildError as e:
            print("[%s] FAILED: %s" % (name, e), file=sys.stderr, flush=True)
            results.append((name, "failed", None))
            failed = True
        except (OSError, ValueError) as e:
            print("[%s] FAILED: %s: %s" % (name, type(e).__name__, e),
                  file=sys.stderr, flush=True)
            results.append((name, "failed", None))
            failed = True
    print()
    hdr = "%-20s %-8s %7s %7s %7s %7s  %s" % ("dataset", "status", "train", "val",
                                               "test", "classes", "dataset_id")
    print(hdr)
    print("-" * len(hdr))
    for name, status, m in results:
        if m is None:
            print("%-20s %-8s %7s %7s %7s %7s  %s" % (name, status, "-", "-", "-", "-", "-"))
        else:
            s = m["splits"]
            print("%-20s %-8s %7d %7d %7d %7d  %s" % (
                name, status, s["train"], s["val"], s["test"], m["num_classes"],
                m["dataset_id"][:16]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
