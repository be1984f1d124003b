#!/usr/bin/env python3
"""Build NEXUS's real labelled datasets from pinned Debian packages.

Python 3 standard library only.  Sources (install them with
scripts/install-deps.sh):

  fashion_mnist       <- dataset-fashion-mnist  (IDX images/labels)
  wordnet_supersense  <- wordnet-base           (WordNet 3.0 glosses -> lexicographer file)
  fortunes_category   <- fortunes               (fortune quotes -> fortune file / category)
  speech_language     <- espeak-ng (train/val/test: synthesised numbers) and
                         asterisk-core-sounds-{en,es,fr,it,ru}-wav (split "real":
                         human recordings)                 (audio -> language)
  speech_digit        <- the same packages                 (audio -> spoken digit 0-9)

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
import array
import collections
import concurrent.futures
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import wave

SCHEMA_VERSION = 1

# Pinned Debian package versions (Debian 12 "bookworm").  A different installed
# version is refused unless --allow-other-version is given.
PINNED = {
    "dataset-fashion-mnist": "0.0~git20200523.55506a9-1",
    "wordnet-base": "1:3.0-37",
    "fortunes": "1:1.99.1-7.3",
    # the synthesiser (the three come from one source package and move together)
    "espeak-ng": "1.51+dfsg-10+deb12u2",
    "libespeak-ng1": "1.51+dfsg-10+deb12u2",
    "espeak-ng-data": "1.51+dfsg-10+deb12u2",
    "asterisk-core-sounds-en-wav": "1.6.1-1",
    "asterisk-core-sounds-es-wav": "1.6.1-1",
    "asterisk-core-sounds-fr-wav": "1.6.1-1",
    "asterisk-core-sounds-it-wav": "1.6.1-1",
    "asterisk-core-sounds-ru-wav": "1.6.1-1",
}

DATASETS = ("fashion_mnist", "wordnet_supersense", "fortunes_category",
            "speech_language", "speech_digit")
SPEECH_PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data",
                   "asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav",
                   "asterisk-core-sounds-fr-wav", "asterisk-core-sounds-it-wav",
                   "asterisk-core-sounds-ru-wav")
# One package (a string) or several (a tuple; the first is the "source_package" of
# the manifest, all of them are listed in "source_packages").
SOURCE_PACKAGE = {
    "fashion_mnist": "dataset-fashion-mnist",
    "wordnet_supersense": "wordnet-base",
    "fortunes_category": "fortunes",
    "speech_language": SPEECH_PACKAGES,
    "speech_digit": SPEECH_PACKAGES,
}
_SPEECH_LICENSE = (
    "train/val/test: audio synthesised by espeak-ng (the program is GPL-3+, "
    "/usr/share/doc/espeak-ng/copyright; its output is data, not a derivative of the "
    "program); real: Asterisk core sounds (/usr/share/doc/asterisk-core-sounds-en-wav/"
    "copyright): en_US and es_MX (Allison Smith) and fr_CA (June Wallack) CC-BY-SA-3.0, "
    "it_IT (Carlo Flora) and ru_RU (Maxim Topal, ivrvoice.ru) CC-BY-3.0; "
    "attribution required, share-alike for en/es/fr")
LICENSE = {
    "fashion_mnist": "Expat (MIT), Copyright 2017 Zalando SE; see "
                     "/usr/share/doc/dataset-fashion-mnist/copyright",
    "wordnet_supersense": "WordNet 3.0 license (permissive, Princeton University); "
                          "see /usr/share/doc/wordnet-base/copyright",
    "fortunes_category": "BSD (fortune-mod, The Regents of the University of "
                         "California); quotes collected from many sources; see "
                         "/usr/share/doc/fortunes/copyright",
    "speech_language": _SPEECH_LICENSE,
    "speech_digit": _SPEECH_LICENSE,
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

# ------------------------------------------------------------ speech setup
SPEECH_LANGS = ["en", "es", "fr", "it", "ru"]
# espeak-ng voices per language (each language is drawn with equal probability,
# then one of its voices); en-us / es-419 / fr are closest to the real split's
# en_US / es_MX / fr_CA speakers, the others add accent variety.
ESPEAK_VOICES = {
    "en": ["en-us", "en-gb"],
    "es": ["es", "es-419"],
    "fr": ["fr-fr", "fr-be"],
    "it": ["it"],
    "ru": ["ru"],
}
# espeak-ng voice variants (language independent, `espeak-ng --voices=variant`).
# espeak-ng silently ignores an unknown variant, so they are checked before use.
ESPEAK_VARIANTS = ["m2", "m3", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3"]
ESPEAK_SPEED = (130, 210)   # -s, words per minute, inclusive
ESPEAK_PITCH = (30, 70)     # -p, 0..99, inclusive
ESPEAK_RATE = 22050         # what espeak-ng 1.51 writes; anything else fails the build
ASTERISK_DIR = "/usr/share/asterisk/sounds"
# language -> folder under ASTERISK_DIR (package asterisk-core-sounds-<lang>-wav)
ASTERISK_VOICES = {
    "en": "en_US_f_Allison",
    "es": "es_MX_f_Allison",
    "fr": "fr_CA_f_June",
    "it": "it_IT_m_Carlo",
    "ru": "ru_RU_f_IvrvoiceRU",
}
ASTERISK_RATE = 8000
CLIP_MAX_SECONDS = 6
TRIM_THRESHOLD = 1e-3 * 32768   # |x| below this at the ends of a clip is silence
TRIM_MARGIN_MS = 50
DIGIT_CLASSES = [str(d) for d in range(10)]
AUDIO_SPLITS = ("train", "val", "test", "real")


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


# ------------------------------------------------------------ audio datasets

def _samples(pcm):
    """PCM16 little-endian bytes -> array('h') of native ints."""
    a = array.array("h")
    a.frombytes(pcm)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def parse_espeak_wav(blob, what):
    """(rate, pcm bytes) of the RIFF/WAVE that `espeak-ng --stdout` writes.  Its
    RIFF and data sizes are placeholders (it streams), so the data chunk runs to
    the end of the output."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise BuildError("%s: espeak-ng did not write a RIFF/WAVE stream" % what)
    pos, fmt = 12, None
    while pos + 8 <= len(blob):
        cid = blob[pos:pos + 4]
        size = struct.unpack("<I", blob[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", blob[body:body + 16])
        elif cid == b"data":
            if fmt is None:
                raise BuildError("%s: WAV data before its fmt chunk" % what)
            tag, channels, rate, _, _, bits = fmt
            if tag != 1 or channels != 1 or bits != 16:
                raise BuildError("%s: espeak-ng wrote format %d, %d channel(s), %d "
                                 "bits; expected PCM mono 16-bit"
                                 % (what, tag, channels, bits))
            pcm = blob[body:body + min(size, len(blob) - body)]
            return rate, pcm[:len(pcm) - len(pcm) % 2]
        pos = body + size + (size & 1)
    raise BuildError("%s: no data chunk in espeak-ng's output" % what)


def trim_and_cap(pcm, rate, what, trim=True):
    """Trims digital silence (|x| < TRIM_THRESHOLD) at both ends, keeping a
    TRIM_MARGIN_MS margin, and cuts the clip at CLIP_MAX_SECONDS.
    Returns (pcm, n_samples, capped)."""
    a = _samples(pcm)
    n = len(a)
    if trim:
        limit = int(TRIM_THRESHOLD)  # 32: |x| <= 32 is silence
        first = next((i for i in range(n) if a[i] > limit or a[i] < -limit), None)
        if first is None:
            raise BuildError("%s: the clip is silent" % what)
        last = next(i for i in range(n - 1, -1, -1) if a[i] > limit or a[i] < -limit)
        margin = rate * TRIM_MARGIN_MS // 1000
        lo, hi = max(0, first - margin), min(n, last + 1 + margin)
    else:
        lo, hi = 0, n
    if hi <= lo:
        raise BuildError("%s: empty clip" % what)
    cap = CLIP_MAX_SECONDS * rate
    capped = hi - lo > cap
    hi = min(hi, lo + cap)
    return pcm[2 * lo:2 * hi], hi - lo, capped


def espeak_binary():
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise BuildError("espeak-ng not found on PATH; run scripts/install-deps.sh")
    return exe


def check_espeak_voices(exe):
    """Fails unless every voice and variant this builder uses is installed
    (espeak-ng falls back silently on unknown names)."""
    def listing(arg):
        r = subprocess.run([exe, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, check=False)
        if r.returncode != 0:
            raise BuildError("espeak-ng %s failed: %s" % (arg, r.stderr.strip()))
        return r.stdout.splitlines()[1:]
    voices = {l.split()[1] for l in listing("--voices") if len(l.split()) > 1}
    variants = set()
    for l in listing("--voices=variant"):
        for f in l.split():
            if f.startswith("!v/"):
                variants.add(f[3:])
    want_v = sorted({v for vs in ESPEAK_VOICES.values() for v in vs} - voices)
    want_var = sorted(set(ESPEAK_VARIANTS) - variants)
    if want_v or want_var:
        raise BuildError("espeak-ng lacks voice(s) %s / variant(s) %s"
                         % (want_v or "-", want_var or "-"))


def espeak_clip(exe, item):
    """Synthesises one clip; item = (voice, variant, speed, pitch, text, ident).
    Returns (pcm, n_samples, capped)."""
    voice, variant, speed, pitch, text, ident = item
    cmd = [exe, "-v", "%s+%s" % (voice, variant), "-s", str(speed), "-p", str(pitch),
           "--stdout", text]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip()
        raise BuildError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, err))
    rate, pcm = parse_espeak_wav(r.stdout, ident)
    if rate != ESPEAK_RATE:
        raise BuildError("%s: espeak-ng wrote %d Hz, this builder expects %d Hz"
                         % (ident, rate, ESPEAK_RATE))
    return trim_and_cap(pcm, rate, ident)


def ordered_map(fn, items, jobs):
    """fn over items on `jobs` threads (each runs a subprocess), results in input
    order, at most 4*jobs in flight so that memory stays small."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        pending = collections.deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) >= 4 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def number_text(rng):
    """Half the clips say one number of 1..6 digits (digit count uniform), half a
    sequence of 2..4 numbers of 1..3 digits each and at most 6 digits in all (so
    that a clip stays well under CLIP_MAX_SECONDS even at the slowest speed).
    Returns (text for espeak, id part)."""
    def number(d):
        return rng.randint(0 if d == 1 else 10 ** (d - 1), 10 ** d - 1)
    if rng.random() < 0.5:
        nums = [number(rng.randint(1, 6))]
    else:
        k = rng.randint(2, 4)
        while True:
            digits = [rng.randint(1, 3) for _ in range(k)]
            if sum(digits) <= 6:
                break
        nums = [number(d) for d in digits]
    # ", " separates the numbers (a pause); "12,345" would be read as one number
    return ", ".join(map(str, nums)), ",".join(map(str, nums))


def speech_plan(name, classes, sizes, seed, draw):
    """Chooses the synthetic clips of every split.  For each class a
    random.Random(f"{name}:{seed}:{class}") draws clip parameters with draw(rng,
    class_index) -> (voice, variant, speed, pitch, text, ident); the clip goes to
    split_of(ident)'s split while that split still needs clips of the class
    (quota = size / #classes, the remainder to the first classes).  Returns
    {split: [(hash, label, item), ...] in hash order}."""
    k = len(classes)
    quota = {s: [sizes[s] // k + (1 if c < sizes[s] % k else 0) for c in range(k)]
             for s in SPLITS}
    plan = {s: [] for s in SPLITS}
    seen = set()
    for c, cname in enumerate(classes):
        rng = random.Random("%s:%d:%s" % (name, seed, cname))
        need = {s: quota[s][c] for s in SPLITS}
        left = sum(need.values())
        tries = 0
        while left:
            tries += 1
            if tries > 1000 * (sum(sizes.values()) + 10):
                raise BuildError("%s: cannot draw enough distinct clips of class %s"
                                 % (name, cname))
            item = draw(rng, c)
            ident = item[-1]
            if ident in seen:
                continue
            split, h = split_of(ident)
            if need[split] == 0:
                continue
            seen.add(ident)
            need[split] -= 1
            left -= 1
            plan[split].append((h, c, item))
    for s in SPLITS:
        plan[s].sort(key=lambda t: t[0])
    return plan


def espeak_item(voice, rng, text, id_text):
    variant = rng.choice(ESPEAK_VARIANTS)
    speed = rng.randint(*ESPEAK_SPEED)
    pitch = rng.randint(*ESPEAK_PITCH)
    ident = "espeak:%s+%s:s%d:p%d:%s" % (voice, variant, speed, pitch, id_text)
    return (voice, variant, speed, pitch, text, ident)


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def asterisk_clips(digits_only):
    """Real split: (label, path, ident) of the Asterisk recordings in each
    language's digits/ folder (all of them, or 0.wav..9.wav only)."""
    out = []
    for li, lang in enumerate(SPEECH_LANGS):
        folder = os.path.join(ASTERISK_DIR, ASTERISK_VOICES[lang], "digits")
        if not os.path.isdir(folder):
            raise BuildError("%s is missing (package asterisk-core-sounds-%s-wav)"
                             % (folder, lang))
        names = sorted((f for f in os.listdir(folder) if f.endswith(".wav")),
                       key=natural_key)
        if digits_only:
            want = ["%d.wav" % d for d in range(10)]
            missing = [f for f in want if f not in names]
            if missing:
                raise BuildError("%s lacks %s" % (folder, ", ".join(missing)))
            names = want
        if not names:
            raise BuildError("%s holds no .wav files" % folder)
        for f in names:
            ident = "asterisk:%s/digits/%s" % (ASTERISK_VOICES[lang], f[:-4])
            label = int(f[:-4]) if digits_only else li
            out.append((label, os.path.join(folder, f), ident))
    return out


def read_real_clip(item):
    label, path, ident = item
    try:
        w = wave.open(path, "rb")
    except (OSError, wave.Error, EOFError) as e:
        raise BuildError("%s: cannot read WAV (%s)" % (path, e))
    with w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 \
                or w.getframerate() != ASTERISK_RATE or w.getcomptype() != "NONE":
            raise BuildError("%s: %d ch, %d bytes/sample, %d Hz; expected mono PCM16 "
                             "%d Hz" % (path, w.getnchannels(), w.getsampwidth(),
                                        w.getframerate(), ASTERISK_RATE))
        pcm = w.readframes(w.getnframes())
    return trim_and_cap(pcm, ASTERISK_RATE, ident, trim=False)


def write_audio_split(tmp, name, split, rate, labelled, clip_fn, jobs, classes):
    """Writes audio_<split>.wav (every clip back to back) and <split>.tsv.
    labelled = [(label, item)], item[-1] = id.  Returns split statistics."""
    t0 = time.time()
    counts = {c: 0 for c in classes}
    total, capped, shortest, longest = 0, 0, None, 0
    n = len(labelled)
    marks = {n * q // 4 for q in (1, 2, 3, 4)}
    wav_path = os.path.join(tmp, "audio_%s.wav" % split)
    with wave.open(wav_path, "wb") as w, \
            open(os.path.join(tmp, "%s.tsv" % split), "w", encoding="utf-8",
                 newline="\n") as tsv:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        tsv.write("start\tlength\tlabel\tid\n")
        results = ordered_map(clip_fn, [item for _, item in labelled], jobs)
        for i, ((label, item), (pcm, length, was_capped)) in enumerate(
                zip(labelled, results)):
            w.writeframes(pcm)
            tsv.write("%d\t%d\t%d\t%s\n" % (total, length, label, item[-1]))
            total += length
            capped += was_capped
            counts[classes[label]] += 1
            shortest = length if shortest is None else min(shortest, length)
            longest = max(longest, length)
            if i + 1 in marks:
                print("[%s] %s: %d/%d clips (%.1f s)" % (name, split, i + 1, n,
                                                         time.time() - t0), flush=True)
    if total >= 2 ** 31:
        raise BuildError("%s: audio_%s.wav has %d samples, more than a WAV holds"
                         % (name, split, total))
    return counts, {"clips": n, "samples": total, "seconds": round(total / rate, 2),
                    "mean_seconds": round(total / rate / max(1, n), 3),
                    "min_seconds": round((shortest or 0) / rate, 3),
                    "max_seconds": round(longest / rate, 3), "capped": capped}


def build_speech(tmp, args, name, classes, sizes, draw, digits_only, text_rule):
    exe = espeak_binary()
    check_espeak_voices(exe)
    plan = speech_plan(name, classes, sizes, args.speech_seed, draw)
    counts, stats, rates = {}, {}, {}
    for split in SPLITS:
        counts[split], stats[split] = write_audio_split(
            tmp, name, split, ESPEAK_RATE, [(c, item) for _, c, item in plan[split]],
            lambda item: espeak_clip(exe, item), args.jobs, classes)
        rates[split] = ESPEAK_RATE
    real = asterisk_clips(digits_only)
    counts["real"], stats["real"] = write_audio_split(
        tmp, name, "real", ASTERISK_RATE, [(label, (path, ident)) for label, path, ident
                                           in real],
        lambda item: read_real_clip((None,) + item), args.jobs, classes)
    rates["real"] = ASTERISK_RATE
    write_classes(os.path.join(tmp, "classes.txt"), classes)
    return {
        "splits": {s: stats[s]["clips"] for s in AUDIO_SPLITS},
        "classes": classes,
        "class_counts": counts,
        "modality": "audio",
        "sample_rates": rates,
        "format": "audio_{split}.wav: RIFF/WAVE, PCM16 mono, every clip of the split "
                  "back to back (22050 Hz for train/val/test, 8000 Hz for real); "
                  "{split}.tsv: header 'start<TAB>length<TAB>label<TAB>id', start and "
                  "length in samples of that WAV, label = line index in classes.txt "
                  "(0-based), UTF-8",
        "split_rule": "train/val/test: espeak-ng clips drawn per class from "
                      "random.Random('%s:<seed>:<class>'); h = sha256(id) as integer, "
                      "h %% 10: 0 -> test, 1 -> val, else train; a clip is kept while "
                      "its split still needs clips of its class (balanced); rows in h "
                      "order.  real: Asterisk recordings, never for training" % name,
        "train_on": ["train"],
        "real_split": "human recordings (Asterisk core sounds; en and es are the same "
                      "speaker, Allison Smith): a test of synthetic-to-real transfer, "
                      "never to be trained or tuned on",
        "synthesis": {
            "espeak_voices": ESPEAK_VOICES, "variants": ESPEAK_VARIANTS,
            "speed_wpm": list(ESPEAK_SPEED), "pitch": list(ESPEAK_PITCH),
            "text": text_rule,
            "trim": "leading/trailing samples with |x| < %g (1e-3 of full scale) "
                    "removed, %d ms margin kept" % (TRIM_THRESHOLD, TRIM_MARGIN_MS),
        },
        "real_source": {lang: os.path.join(ASTERISK_DIR, ASTERISK_VOICES[lang],
                                           "digits") for lang in SPEECH_LANGS},
        "real_rule": ("every .wav of each language's digits/ folder (numbers, "
                      "number words, days, months, ...), label = language"
                      if not digits_only else
                      "digits/0.wav..9.wav of each language, label = the digit"),
        "clip_max_seconds": CLIP_MAX_SECONDS,
        "audio_stats": stats,
    }


def build_speech_language(tmp, args):
    def draw(rng, c):
        voice = rng.choice(ESPEAK_VOICES[SPEECH_LANGS[c]])
        text, id_text = number_text(rng)
        return espeak_item(voice, rng, text, id_text)
    sizes = {"train": args.speech_language_train, "val": args.speech_language_val,
             "test": args.speech_language_test}
    return build_speech(tmp, args, "speech_language", list(SPEECH_LANGS), sizes, draw,
                        False, "half: one number of 1-6 digits (digit count uniform); "
                        "half: 2-4 numbers of 1-3 digits, at most 6 digits in all, "
                        "separated by ', ' (the id writes them joined by ',')")


def build_speech_digit(tmp, args):
    def draw(rng, c):
        lang = rng.choice(SPEECH_LANGS)
        voice = rng.choice(ESPEAK_VOICES[lang])
        return espeak_item(voice, rng, str(c), str(c))
    sizes = {"train": args.speech_digit_train, "val": args.speech_digit_val,
             "test": args.speech_digit_test}
    return build_speech(tmp, args, "speech_digit", list(DIGIT_CLASSES), sizes, draw,
                        True, "one digit; language uniform over en/es/fr/it/ru, then "
                        "one of its voices")


BUILDERS = {
    "fashion_mnist": build_fashion_mnist,
    "wordnet_supersense": build_wordnet_supersense,
    "fortunes_category": build_fortunes_category,
    "speech_language": build_speech_language,
    "speech_digit": build_speech_digit,
}


def dataset_options(name, args):
    """Options that change a dataset's content; part of its dataset_id."""
    if name == "fashion_mnist":
        return {"val_size": FASHION_VAL}
    if name == "speech_language":
        return {"train": args.speech_language_train, "val": args.speech_language_val,
                "test": args.speech_language_test, "seed": args.speech_seed}
    if name == "speech_digit":
        return {"train": args.speech_digit_train, "val": args.speech_digit_val,
                "test": args.speech_digit_test, "seed": args.speech_seed}
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


def packages_of(name):
    p = SOURCE_PACKAGE[name]
    return (p,) if isinstance(p, str) else tuple(p)


def version_key(versions):
    """The package version(s) as they enter the dataset_id: the version itself for
    a single package, else 'pkg=version' lines."""
    if len(versions) == 1:
        return next(iter(versions.values()))
    return "\n".join("%s=%s" % (p, v) for p, v in versions.items())


def build_one(name, args, versions, bsha, out):
    """versions: {package: installed version} of packages_of(name), in order."""
    version = version_key(versions)
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
        pkgs = packages_of(name)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "dataset_id": dataset_id,
            "source_package": pkgs[0],
            "source_version": versions[pkgs[0]],
            "pinned_version": PINNED[pkgs[0]],
        }
        if len(pkgs) > 1:
            manifest["source_packages"] = dict(versions)
            manifest["pinned_versions"] = {p: PINNED[p] for p in pkgs}
        manifest.update({
            "license": LICENSE[name],
            "builder": "scripts/build_datasets.py",
            "builder_sha256": bsha,
            "options": options,
            "splits": info.pop("splits"),
            "num_classes": len(info["classes"]),
            "classes": info.pop("classes"),
            "class_counts": info.pop("class_counts"),
            "files": files,
        })
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
    for ds, sizes in (("language", (3000, 600, 600)), ("digit", (2000, 400, 400))):
        for split, size in zip(SPLITS, sizes):
            p.add_argument("--speech-%s-%s" % (ds, split), type=int, default=size,
                           help="synthetic %s clips of speech_%s, balanced over the "
                                "classes (default %d)" % (split, ds, size))
    p.add_argument("--speech-seed", type=int, default=0,
                   help="seed of the synthetic speech clips (default 0)")
    p.add_argument("--jobs", type=int, default=min(4, max(2, os.cpu_count() or 1)),
                   help="espeak-ng processes run in parallel (default %(default)s; "
                        "does not change the output)")
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
    for ds, k in (("language", len(SPEECH_LANGS)), ("digit", len(DIGIT_CLASSES))):
        for split in SPLITS:
            opt = "speech_%s_%s" % (ds, split)
            if getattr(args, opt) < k:
                p.error("--%s must be >= %d (one clip per class)"
                        % (opt.replace("_", "-"), k))
    if args.speech_seed < 0:
        p.error("--speech-seed must be >= 0")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
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
        try:
            versions = collections.OrderedDict(
                (pkg, check_package(pkg, args.allow_other_version))
                for pkg in packages_of(name))
            pkgs = list(versions.items())
            more = "" if len(pkgs) == 1 else " + %d more packages%s" % (
                len(pkgs) - 1, "".join(", %s %s" % pv for pv in pkgs[1:]
                                       if pv[1] != PINNED[pv[0]]) or " at their pins")
            print("[%s] %s %s%s: checking/building ..." % (name, pkgs[0][0], pkgs[0][1],
                                                          more), flush=True)
            t0 = time.time()
            status, reason, m = build_one(name, args, versions, bsha, out)
            took = "" if status == "skipped" else " in %.1f s" % (time.time() - t0)
            print("[%s] %s (%s) -> %s%s" % (name, status, reason,
                                             os.path.join(out, name), took), flush=True)
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
    hdr = "%-20s %-8s %7s %7s %7s %7s %7s  %s" % ("dataset", "status", "train", "val",
                                                   "test", "real", "classes",
                                                   "dataset_id")
    print(hdr)
    print("-" * len(hdr))
    for name, status, m in results:
        if m is None:
            print("%-20s %-8s %7s %7s %7s %7s %7s  %s" % (name, status, "-", "-", "-", "-",
                                                         "-", "-"))
        else:
            s = m["splits"]
            print("%-20s %-8s %7d %7d %7d %7s %7d  %s" % (
                name, status, s["train"], s["val"], s["test"], s.get("real", "-"),
                m["num_classes"], m["dataset_id"][:16]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
