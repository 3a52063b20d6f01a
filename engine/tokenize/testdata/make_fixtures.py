#!/usr/bin/python3
"""Builds the tokenizer.json fixtures for engine/tokenize and records
reference token ids from implementations that share no code with the Go one.

  sp_bpe/tokenizer.json        SentencePiece BPE (byte_fallback) trained on
                               corpus.txt, converted the way Hugging Face's
                               LlamaConverter does (legacy Llama-2 layout).
                               Reference ids: sentencepiece's own encode.
  bytelevel_bpe/tokenizer.json byte-level BPE (GPT-2 / Llama-3 layout) whose
                               merges come from the small trainer below.
                               Reference ids: the GPT-2 rank loop below, with
                               pre-tokenization by the `regex` module (which
                               has the (?!\\S) lookahead Go's regexp lacks).
  expected.json                the test strings and the ids for each, and
                               the regex splits of random whitespace-heavy
                               strings under both patterns.

Needs Debian's python3-sentencepiece and python3-regex. Output is
deterministic: TestFixturesRegenerate reruns this into a temp dir and
compares byte for byte.

Usage: make_fixtures.py [--out DIR] [--refresh-corpus]
  --refresh-corpus rebuilds corpus.txt from the repository's README.md and
  engine/tokenize/tokenize.go (then regenerate and commit everything).
"""

import argparse
import collections
import json
import os
import random
import sys
import tempfile

import regex
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))

SP_VOCAB_SIZE = 600
BL_MERGES = 400

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Test strings: ASCII, accents, CJK, emoji, characters absent from the
# corpus (byte fallback), whitespace edge cases for the lookahead, newlines,
# the empty string, and text that spells special tokens.
CASES = [
    "",
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "LoRA fine-tuning experiments scripted in Starlark",
    "func Load(dir string) (Tokenizer, error) {\n\treturn nil, nil\n}\n",
    "naïve café, résumé, Ångström, façade",
    "日本語のテキストと中文",
    "emoji 🎉🚀 done 👍🏽",
    "Ωμέγα ж ק ऄ ﬁ",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "multiple   spaces   inside",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "line1\nline2\r\nline3",
    "tab\there\t\tand\t",
    "x  \n  y",
    "a \n\n b",
    "end with spaces and newline  \n",
    "word   ",
    "no\u00a0break and ideographic\u3000space",
    "numbers 12345 and 3.14159, 1000000",
    "don't we'll they're I'M YOU'VE",
    "<s> not special </s> <unk> <|begin_of_text|>",
    "Hello,World!How are you?",
    "----------==========",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "\u2581literal meta space",
    "control \x00\x07\x1b chars",
    "`kv.Store` with `db.Update(func(txn *badger.Txn) error {...})`",
]


def bytes_to_unicode():
    """GPT-2's printable stand-in for every byte (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()


def to_units(word):
    return "".join(B2U[b] for b in word.encode("utf-8"))


# ---------------------------------------------------------------- corpus

def refresh_corpus():
    root = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
    parts = []
    for rel in ("README.md", "engine/tokenize/tokenize.go"):
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            parts.append(f.read())
    with open(os.path.join(HERE, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(parts))


def read_corpus():
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- SentencePiece

def train_sentencepiece(corpus_path, workdir):
    prefix = os.path.join(workdir, "sp")
    spm.SentencePieceTrainer.train(
        input=corpus_path,
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=SP_VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=1.0,
        # Llama-2's settings: no normalization, whitespace kept as is.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def llama_converter(sp):
    """tokenizer.json as transformers' LlamaConverter (legacy=True) writes it:
    vocab from the pieces, merges from SentencePieceExtractor.extract with
    the piece scores, Prepend+Replace normalizer, no pre-tokenizer, and the
    Replace/ByteFallback/Fuse/Strip decoder."""
    n = sp.get_piece_size()
    vocab_scores = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(n)]
    vocab = {sp.id_to_piece(i): i for i in range(n)}

    # SentencePieceExtractor.extract(vocab_scores): every split of a piece
    # into two pieces is a merge, ordered by the score of the merged piece.
    merges = []
    for piece, score in dict(vocab_scores).items():
        local = []
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)

    added = []
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            added.append({"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
    bos = sp.id_to_piece(sp.bos_id())
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [sp.bos_id()], "tokens": [bos]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": sp.id_to_piece(sp.unk_id()),
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "vocab": vocab,
            # The string form "a b", as Llama-2's tokenizer.json has it.
            "merges": ["%s %s" % (m[0], m[1]) for m in merges],
        },
    }


# ---------------------------------------------------------------- byte-level BPE

def train_bytelevel(text, n_merges):
    """Plain BPE on GPT-2 pre-tokenized words: count adjacent pairs, merge the
    most frequent (ties: smallest pair), repeat."""
    counts = collections.Counter(to_units(w) for w in regex.findall(GPT2_PATTERN, text))
    words = [(list(w), c) for w, c in sorted(counts.items())]
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for syms, _ in words:
            i = 0
            while i < len(syms) - 1:
                if syms[i] == best[0] and syms[i + 1] == best[1]:
                    syms[i:i + 2] = [best[0] + best[1]]
                i += 1
    # Ids: the 256 byte stand-ins in code point order (as GPT-2's
    # encoder.json), so ids differ from byte values, then the merges.
    vocab = {}
    for u in sorted(B2U.values()):
        vocab[u] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    return vocab, merges


def bytelevel_json(vocab, merges):
    n = len(vocab)
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    added = [{"id": n + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": specials[0], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": specials[0], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": specials[0], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {specials[0]: {"id": specials[0], "ids": [n], "tokens": [specials[0]]}}},
        ]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            # The pair form ["a", "b"], as newer tokenizers write it.
            "merges": [[a, b] for a, b in merges],
        },
    }


def bpe_word(units, ranks):
    """GPT-2's encoder.py loop: merge the lowest-ranked adjacent pair, all
    occurrences left to right, until no pair has a rank."""
    word = list(units)
    while len(word) > 1:
        pairs = set(zip(word, word[1:]))
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        out = []
        i = 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def encode_bytelevel(text, pattern, vocab, ranks):
    ids = []
    for piece in regex.findall(pattern, text):
        ids.extend(vocab[t] for t in bpe_word(to_units(piece), ranks))
    return ids


def random_split_cases(n):
    """Short strings over an alphabet rich in the whitespace, letters, digits
    and apostrophes the patterns treat specially, with their splits."""
    alphabet = [" ", " ", " ", "\t", "\n", "\r", "a", "B", "z", "1", "7", "'", "s", "M", ".", "!", "\u00e9",
                "\u00a0", "\u3000", "\u65e5", "\U0001f389", "\x0b"]
    rng = random.Random(20240601)
    out = []
    for _ in range(n):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        out.append({"text": s, "gpt2": regex.findall(GPT2_PATTERN, s), "llama3": regex.findall(LLAMA3_PATTERN, s)})
    return out


# ---------------------------------------------------------------- main

def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--refresh-corpus", action="store_true")
    args = ap.parse_args()
    if args.refresh_corpus:
        refresh_corpus()
    text = read_corpus()

    with tempfile.TemporaryDirectory() as tmp:
        sp = train_sentencepiece(os.path.join(HERE, "corpus.txt"), tmp)
    write_json(os.path.join(args.out, "sp_bpe", "tokenizer.json"), llama_converter(sp))

    vocab, merges = train_bytelevel(text, BL_MERGES)
    ranks = {m: i for i, m in enumerate(merges)}
    write_json(os.path.join(args.out, "bytelevel_bpe", "tokenizer.json"), bytelevel_json(vocab, merges))

    cases = []
    # The last case is long: a stretch of the corpus, one word of thousands
    # of symbols in the SentencePiece layout.
    for s in CASES + [text[:3000]]:
        cases.append({
            "text": s,
            "sp": sp.encode(s),
            "bytelevel_llama3": encode_bytelevel(s, LLAMA3_PATTERN, vocab, ranks),
            "bytelevel_gpt2": encode_bytelevel(s, GPT2_PATTERN, vocab, ranks),
        })
    # One case a line keeps the file small and its diffs readable.
    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        f.write('{"generator": %s,\n "cases": [\n' % json.dumps({"sentencepiece": spm.__version__}))
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write('\n ],\n "splits": [\n')
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in random_split_cases(300)))
        f.write("\n]}\n")


if __name__ == "__main__":
    sys.exit(main())
