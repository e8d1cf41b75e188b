"""Write a real-English word2vec corpus of about 6M tokens from two dictionaries Debian ships.

The texts are those of two dictd databases from Debian's package registry:

- ``gcide``: the GNU Collaborative International Dictionary of English (Webster's Revised Unabridged
  Dictionary of 1913 with later additions), package ``dict-gcide``: 4.2M tokens as made here;
- ``wn``: WordNet 3.0's glosses and usage examples, package ``dict-wn``: 1.7M tokens once each sense's
  text is kept once (dictd's WordNet repeats a synset's gloss under every word of the synset).

GCIDE alone gives 4.2M tokens under gensim's tokenization (5.4M whitespace-separated strings, many of
them punctuation, numbers and pronunciation codes); WordNet brings the corpus past 5M words::

    apt-get install dict-gcide dict-wn        # /usr/share/dictd/{gcide,wn}.{dict.dz,index}
    python scripts/real_corpus.py /tmp/dict-corpus.txt
    python scripts/compare_gensim.py --corpus /tmp/dict-corpus.txt

The corpus is not kept in the repository: this script rebuilds it from the installed packages.

What is done to the dictionaries' text, in order:

1. Entries are read at the offsets of each ``.index`` (each entry once, in file order), leaving out the
   ``00-database-*`` / ``00-gcide-*`` header entries (licence and provenance text). GCIDE first, then
   WordNet.
2. GCIDE markup that is not English text is removed: the pronunciation between backslashes on each headword
   line (``\\Lar"i*at\\``) and a parenthesized respelling right after it (``(l[a^]r"[i^]*[a^]t)``), and
   source tags in brackets (``[1913 Webster]``, ``[WordNet 1.5]``, ``[PJC]`` ...). Accented letters,
   written as bracketed codes, become their plain letters (``[e^]`` -> ``e``, ``['e]`` -> ``e``,
   ``[ae]`` -> ``ae``, ``[aum]`` -> ``a``), other symbol codes (``[root]``, ``[deg]`` ...) a space.
   Etymologies, labels such as ``[Obs.]`` and quotations are kept: they are the dictionary's text.
3. Each GCIDE paragraph (text between blank lines) becomes one line: a headword with its definitions,
   a "Syn:" list, a "Note:" paragraph. Each WordNet sense (``n 1: gloss; "example" [syn: {word},
   ...]``) becomes one line, without the entry's headword line.
4. Each line is tokenized as gensim's ``simple_preprocess`` and ``WikiCorpus`` (the tokenizer of the
   default corpus of compare_gensim.py) tokenize: lower-cased, runs of letters (Unicode word characters
   that are not digits: digits and punctuation separate tokens), tokens of 2 to 15 characters, none
   starting with ``_``. Empty lines are dropped, and so is a line equal to one already written (this
   keeps each WordNet synset's gloss once; in GCIDE it drops short repeated lines such as "syn zero").

The result: one paragraph or sense per line, tokens separated by single spaces, UTF-8. Prints the number of
lines and tokens.
"""
from __future__ import annotations

import argparse
import gzip
import os
import re
import sys

DICTD = "/usr/share/dictd"
#: The dictionaries, by name: (Debian package, how an entry is cut into lines).
SOURCES = {"gcide": "dict-gcide", "wn": "dict-wn"}

#: dictd's base-64 digits for offsets and lengths in the index.
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

#: gensim's PAT_ALPHABETIC: a run of word characters that are not digits.
TOKEN = re.compile(r"(?:(?!\d)\w)+")
MIN_LEN, MAX_LEN = 2, 15

#: The headword's pronunciation, and a parenthesized respelling right after it.
PRONUNCIATION = re.compile(r'\\[^\\\n]*\\(?:[ \t]*\([^)\n]*\))?')
#: Source tags: who wrote or revised the definition.
SOURCE = re.compile(r"\[[^\]\n]*(?:Webster|WordNet|PJC|RDH|RHUD|MW10|AS)[^\]\n]*\]")
#: An accent mark (before the letters) or a caret (after them) on one or two letters.
ACCENT = re.compile(r"""\[[\^='.~\-"`,*]+([A-Za-z]{1,2})\]|\[([A-Za-z]{1,2})\^\]""")
#: Named codes: ligatures and special letters become letters, other symbols a space.
NAMED = {"ae": "ae", "AE": "AE", "oe": "oe", "OE": "OE", "aum": "a", "imac": "i", "eth": "th",
         "thorn": "th", "ng": "ng", "th": "th", "yogh": "y"}
SYMBOLS = re.compile(r"\[(root|add|asl|deg|sect|udd|dsdot|bprime|pounds|beta|alpha|phi|Delta|bar|prime|"
                     r"cent|frac\w*|sharp|flat|natural|middot|minus|times|div|pm|hand|lsquo|rsquo|"
                     r"ldquo|rdquo|mdash|ndash)\]")


#: A WordNet sense starts on a line of its own with an optional part of speech and its number.
WN_SENSE = re.compile(r"\n\s+(?=(?:[a-z]+ )?\d+: )")


def entries(dict_path, index_path):
    """Yield each entry's text once, in file order, without the header entries."""
    def number(s):
        n = 0
        for ch in s:
            n = n * 64 + B64.index(ch)
        return n

    spans = set()
    with open(index_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00-") or parts[0].startswith("00database"):
                continue
            spans.add((number(parts[1]), number(parts[2])))
    with gzip.open(dict_path, "rb") as f:
        data = f.read()
    for offset, length in sorted(spans):
        yield data[offset:offset + length].decode("utf-8", errors="replace")


def clean(text):
    text = PRONUNCIATION.sub(" ", text)
    text = SOURCE.sub(" ", text)
    text = ACCENT.sub(lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"\[(%s)\]" % "|".join(NAMED), lambda m: NAMED[m.group(1)], text)
    return SYMBOLS.sub(" ", text)


def paragraphs(source, entry):
    """The lines of one entry: GCIDE's paragraphs, or WordNet's senses (without the headword line)."""
    if source == "wn":
        return WN_SENSE.split(clean(entry.split("\n", 1)[1] if "\n" in entry else ""))
    return re.split(r"\n[ \t]*\n", clean(entry))


def tokenize(text):
    return [t for t in TOKEN.findall(text.lower()) if MIN_LEN <= len(t) <= MAX_LEN and not t.startswith("_")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="text file to write (one paragraph or sense per line)")
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                        help="dictionaries to take, in this order (default: all)")
    parser.add_argument("--dictd", default=DICTD, help=f"where the dictd files are (default {DICTD})")
    args = parser.parse_args(argv)
    for source in args.sources:
        for ext in (".dict.dz", ".index"):
            path = os.path.join(args.dictd, source + ext)
            if not os.path.exists(path):
                sys.exit(f"real_corpus: {path} not found; install it with `apt-get install {SOURCES[source]}`")
    seen = set()
    tmp = args.output + ".part"
    with open(tmp, "w", encoding="utf-8") as out:
        for source in args.sources:
            lines = tokens = 0
            stem = os.path.join(args.dictd, source)
            for entry in entries(stem + ".dict.dz", stem + ".index"):
                for paragraph in paragraphs(source, entry):
                    line = " ".join(tokenize(paragraph))
                    if line and line not in seen:
                        seen.add(line)
                        out.write(line + "\n")
                        lines += 1
                        tokens += line.count(" ") + 1
            print(f"{source} ({SOURCES[source]}): {lines} lines, {tokens} tokens")
    os.replace(tmp, args.output)
    print(f"{args.output}: {len(seen)} lines")


if __name__ == "__main__":
    main()
