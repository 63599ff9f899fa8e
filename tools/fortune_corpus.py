#!/usr/bin/python3
"""fortune_corpus.py: the fortune corpus of examples/fortune, as documents.

The corpus functions of tools/train_fortune.py (which imports them from here):
the Debian `fortunes` and `fortunes-min` text files, cleaned, deduplicated,
shuffled with seed 1337 and split 95/5 into training and validation fortunes.

    /usr/bin/python3 tools/fortune_corpus.py OUTDIR

writes OUTDIR/train.txt and OUTDIR/val.txt in `gqac train`'s text format:
documents separated by lines holding only `%` (as examples/fortune/eval.txt).
Standard library only.
"""
import glob
import os
import random
import re
import sys

CORPUS = "/usr/share/games/fortunes"
SEED = 1337
MAX_CHARS = 600


def log(*a):
    print(*a, flush=True)


def corpus_files():
    """The fortune text files (no .dat index, no .u8 links), sorted; no
    offensive ones (their paths contain "off") and no ascii-art, which is
    pictures rather than text."""
    files = []
    for f in sorted(glob.glob(os.path.join(CORPUS, "**", "*"), recursive=True)):
        if not os.path.isfile(f) or os.path.islink(f) or f.endswith((".dat", ".u8")):
            continue
        if "off" in os.path.relpath(f, CORPUS) or os.path.basename(f) == "ascii-art":
            continue
        files.append(f)
    return files


def clean(text):
    """Light cleanup of one fortune; None if it should be dropped."""
    # Some fortunes are UTF-8 that was decoded as Latin-1 and encoded again.
    if re.search("[\u0080-\u009f]", text):
        try:
            text = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    text = re.sub(".\x08", "", text)                    # overstrike: "_\bX" -> "X"
    text = re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text)  # other control chars
    lines = [ln.expandtabs(8).rstrip() for ln in text.split("\n")]
    text = "\n".join(lines).strip("\n")
    text = re.sub(r"\n{3,}", "\n\n", text)
    if not text.strip() or len(text) > MAX_CHARS:
        return None
    return text


def load_corpus():
    """(train fortunes, validation fortunes, files read)."""
    fortunes, files = [], corpus_files()
    for f in files:
        with open(f, "rb") as fh:
            raw = fh.read().decode("utf-8", errors="replace")
        for part in re.split(r"(?m)^%[ \t]*$", raw):
            c = clean(part)
            if c is not None:
                fortunes.append(c)
    n_raw = len(fortunes)
    fortunes = list(dict.fromkeys(fortunes))  # drop exact duplicates, keep order
    random.Random(SEED).shuffle(fortunes)
    n_val = len(fortunes) // 20
    val, train = fortunes[:n_val], fortunes[n_val:]
    log(f"corpus: {len(files)} files, {n_raw} fortunes <= {MAX_CHARS} chars, "
        f"{len(fortunes)} unique; train {len(train)}, val {len(val)}, "
        f"{sum(map(len, train))} train chars")
    return train, val, files


def write_docs(docs, path):
    """One text file of documents separated by "%" lines; a document holding
    such a line would split in two when read back, so it is an error."""
    for i, d in enumerate(docs):
        assert not re.search(r"(?m)^%$", d), f"document {i} has a line holding only %"
    text = "\n%\n".join(docs) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return len(text.encode("utf-8"))


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: fortune_corpus.py OUTDIR  (writes OUTDIR/train.txt and OUTDIR/val.txt)",
              file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    if not os.path.isdir(CORPUS):
        print(f"fortune_corpus.py: {CORPUS} not found (apt-get install fortunes fortunes-min)",
              file=sys.stderr)
        sys.exit(1)
    train, val, _ = load_corpus()
    os.makedirs(out, exist_ok=True)
    for name, docs in (("train.txt", train), ("val.txt", val)):
        path = os.path.join(out, name)
        n = write_docs(docs, path)
        log(f"wrote {path}: {len(docs)} documents, {n} bytes")


if __name__ == "__main__":
    main()
