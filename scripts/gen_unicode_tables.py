#!/usr/bin/env python3
"""Generates plugins/support/src/unicode_tables.hpp: the Unicode facts the WordPiece and BPE
tokenizers need to behave exactly like Hugging Face's BertTokenizer and `tokenizers`, without
linking ICU.

Tables from Python's `unicodedata` (BertTokenizer runs on it; its version is in the header):
  - control ranges:     category C* (BertTokenizer drops these, except \\t \\n \\r)
  - whitespace ranges:  category Zs (plus \\t \\n \\r and space, handled in code)
  - punctuation ranges: category P* (ASCII symbol ranges are handled in code)
  - mark ranges:        category Mn (removed by accent stripping)
  - lowercase map:      code point -> str.lower() of that one character where it differs
                        (BertTokenizer lower-cases character by character before basic
                        tokenization, so Python's final-sigma rule never applies)
  - strip map:          code point -> NFD decomposition with Mn marks removed, where it differs
                        (Hangul syllables are decomposed algorithmically in code)
  - combining classes:  ranges of equal non-zero canonical combining class (NFC)
  - decompositions:     code point -> full canonical decomposition (NFD of that one character),
                        in one flat array (Hangul again algorithmic)
  - compositions:       (first, second) -> primary composite, for every two-character canonical
                        decomposition whose composite survives NFC (composition exclusions,
                        singletons and non-starter decompositions do not)
  (the NFC tables leave out what Unicode assigned after 9.0: POST_9_DECOMPOSITIONS, POST_9_MARKS)
Tables from `unicodedata2` (the Unicode version of Oniguruma inside `tokenizers`, pinned below):
  - letter ranges:      category L* (\\p{L} in the byte-level BPE pre-tokenizer regexes)
  - number ranges:      category N* (\\p{N}; also Rust's char::is_numeric for the Digits
                        pre-tokenizer)

Unicode versions. Hugging Face `tokenizers` 0.23.3 (the BPE reference) takes \\p{L}, \\p{N} and \\s
from Oniguruma (Unicode 16.0), char::is_numeric from Rust's std (Unicode 17.0) and NFC from the
unicode-normalization-alignments crate (Unicode 9.0). `scripts/make_bpe_reference.py --unicode`
compares them all with these tables' sources. With the choices above the only difference left is 13
digits new in Unicode 17.0 (U+11DE0-U+11DE9 and three more), which the Digits pre-tokenizer
isolates and NEXUS does not. BERT's tables stay on Python's version (14.0 for Python 3.11).

Run from the repository root, with unicodedata2 installed beside the system Python:
    /usr/bin/python3 -m pip install --target /tmp/ud2 --no-deps unicodedata2==16.0.0
    PYTHONPATH=/tmp/ud2 /usr/bin/python3 scripts/gen_unicode_tables.py
"""
import os
import sys
import unicodedata

import unicodedata2

UNICODEDATA2_VERSION = "16.0.0"  # Oniguruma's Unicode version in tokenizers 0.23.3
# tokenizers' NFC (the unicode-normalization-alignments crate) carries Unicode 9.0 data, and canonical
# decompositions and combining classes never change once assigned, so the NFC tables are Python's
# less what Unicode assigned after 9.0 (Python 3.6's unicodedata, which is Unicode 9.0, lists it):
# one decomposition (U+11938 DIVES AKURU VOWEL SIGN O) and the combining class of these 98 marks.
# tokenizers treats the marks as starters (class 0) and neither decomposes U+11938 nor composes it.
POST_9_DECOMPOSITIONS = {0x11938}
POST_9_MARKS = [
    (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8D3), (0x9FE, 0x9FE), (0xC3C, 0xC3C), (0xD3B, 0xD3C),
    (0xEBA, 0xEBA), (0x1715, 0x1715), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFA), (0xA82C, 0xA82C),
    (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070),
    (0x1133B, 0x1133B), (0x1145E, 0x1145E), (0x11839, 0x1183A), (0x1193D, 0x1193E), (0x11943, 0x11943),
    (0x119E0, 0x119E0), (0x11A34, 0x11A34), (0x11A47, 0x11A47), (0x11A99, 0x11A99), (0x11D42, 0x11D42),
    (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x16FF0, 0x16FF1), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE),
    (0x1E2EC, 0x1E2EF),
]


def post_9_mark(cp):
    return any(a <= cp <= b for a, b in POST_9_MARKS)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "support", "src", "unicode_tables.hpp")
MAX_CP = 0x110000
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def chars():
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never come out of a UTF-8 decoder
            continue
        yield cp


def ranges(pred):
    out, start, prev = [], None, None
    for cp in chars():
        if pred(cp):
            if start is None:
                start = cp
            elif cp != prev + 1:
                out.append((start, prev))
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    return out


def cat(cp):
    return unicodedata.category(chr(cp))


def strip_accents(s):
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


def emit_ranges(f, name, rs):
    f.write(f"inline constexpr CodeRange {name}[] = {{\n")
    for i in range(0, len(rs), 6):
        f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in rs[i:i + 6]) + "\n")
    f.write("};\n\n")


def emit_map(f, name, pairs):
    f.write(f"inline constexpr CodeMap {name}[] = {{\n")
    for cp, s in pairs:
        cps = [ord(c) for c in s]
        assert len(cps) <= 3, (hex(cp), s)
        cps += [0] * (3 - len(cps))
        f.write(f"    {{0x{cp:X}, {len(s)}, {{0x{cps[0]:X}, 0x{cps[1]:X}, 0x{cps[2]:X}}}}},\n")
    f.write("};\n\n")


def emit_valued_ranges(f, name, rs):
    f.write(f"inline constexpr CodeRangeValue {name}[] = {{\n")
    for i in range(0, len(rs), 4):
        f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}, {v}}}," for a, b, v in rs[i:i + 4]) + "\n")
    f.write("};\n\n")


def combining_classes():
    out = []
    for cp in chars():
        v = unicodedata.combining(chr(cp))
        if v == 0 or post_9_mark(cp):
            continue
        if out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1] = (out[-1][0], cp, v)
        else:
            out.append((cp, cp, v))
    return out


def decompositions():
    """(cp, offset, length) entries and the flat data they index."""
    entries, data = [], []
    for cp in chars():
        if HANGUL_FIRST <= cp <= HANGUL_LAST or cp in POST_9_DECOMPOSITIONS:
            continue
        d = unicodedata.normalize("NFD", chr(cp))
        if d != chr(cp):
            entries.append((cp, len(data), len(d)))
            data.extend(ord(c) for c in d)
    assert len(data) < 65536 and max(n for _, _, n in entries) < 256  # CodeSpan's field widths
    return entries, data


def compositions():
    out = []
    for cp in chars():
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp) and \
                cp not in POST_9_DECOMPOSITIONS:
            out.append((parts[0], parts[1], cp))
    return sorted(out)


def emit_nfc(f):
    emit_valued_ranges(f, "kCombiningClass", combining_classes())
    entries, data = decompositions()
    f.write("inline constexpr uint32_t kDecompositionData[] = {\n")
    for i in range(0, len(data), 10):
        f.write("    " + " ".join(f"0x{c:X}," for c in data[i:i + 10]) + "\n")
    f.write("};\n\n")
    f.write("inline constexpr CodeSpan kDecomposition[] = {\n")
    for i in range(0, len(entries), 4):
        f.write("    " + " ".join(f"{{0x{cp:X}, {o}, {n}}}," for cp, o, n in entries[i:i + 4]) + "\n")
    f.write("};\n\n")
    pairs = compositions()
    f.write("inline constexpr CodePair kComposition[] = {\n")
    for i in range(0, len(pairs), 4):
        f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in pairs[i:i + 4]) + "\n")
    f.write("};\n\n")
    return len(entries), len(pairs)


def main():
    control = ranges(lambda cp: cat(cp).startswith("C"))
    whitespace = ranges(lambda cp: cat(cp) == "Zs")
    punct = ranges(lambda cp: cat(cp).startswith("P"))
    marks = ranges(lambda cp: cat(cp) == "Mn")
    if unicodedata2.unidata_version != UNICODEDATA2_VERSION:
        sys.exit(f"unicodedata2 {unicodedata2.unidata_version} found, {UNICODEDATA2_VERSION} needed")
    letters = ranges(lambda cp: unicodedata2.category(chr(cp)).startswith("L"))
    numbers = ranges(lambda cp: unicodedata2.category(chr(cp)).startswith("N"))
    lower = [(cp, chr(cp).lower()) for cp in chars() if chr(cp).lower() != chr(cp)]
    strip = []
    for cp in chars():
        if HANGUL_FIRST <= cp <= HANGUL_LAST or cat(cp) == "Mn":
            continue
        s = strip_accents(chr(cp))
        if s != chr(cp):
            strip.append((cp, s))
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("// GENERATED by scripts/gen_unicode_tables.py from Python %s unicodedata (Unicode %s);\n"
                "// kLetter and kNumber from unicodedata2 (Unicode %s), as tokenizers' regex engine.\n"
                % (sys.version.split()[0], unicodedata.unidata_version, unicodedata2.unidata_version))
        f.write("// Do not edit; re-run the script. Sorted tables, searched with binary search.\n")
        f.write("#pragma once\n\n#include <cstdint>\n\nnamespace nexus::support::unicode {\n\n")
        f.write(f'inline constexpr const char* kUnicodeVersion = "{unicodedata.unidata_version}";\n\n')
        f.write("struct CodeRange {\n  uint32_t first, last;\n};\n")
        f.write("struct CodeMap {\n  uint32_t cp;\n  uint8_t n;\n  uint32_t to[3];\n};\n")
        f.write("struct CodeRangeValue {\n  uint32_t first, last;\n  uint8_t value;\n};\n")
        f.write("struct CodeSpan {  // kDecompositionData[offset, offset + n)\n  uint32_t cp;\n"
                "  uint16_t offset;\n  uint8_t n;\n};\n")
        f.write("struct CodePair {  // first + second compose to composite\n  uint32_t first, second, composite;\n};\n\n")
        emit_ranges(f, "kControl", control)
        emit_ranges(f, "kWhitespace", whitespace)
        emit_ranges(f, "kPunctuation", punct)
        emit_ranges(f, "kNonspacingMark", marks)
        emit_map(f, "kLower", lower)
        emit_map(f, "kStripAccents", strip)
        emit_ranges(f, "kLetter", letters)
        emit_ranges(f, "kNumber", numbers)
        n_decomp, n_comp = emit_nfc(f)
        f.write("}  // namespace nexus::support::unicode\n")
    print(f"wrote {OUT}: {len(control)} control, {len(whitespace)} whitespace, {len(punct)} punctuation, "
          f"{len(marks)} mark, {len(letters)} letter, {len(numbers)} number ranges; {len(lower)} lowercase, "
          f"{len(strip)} strip mappings; {n_decomp} decompositions, {n_comp} compositions")


if __name__ == "__main__":
    main()
