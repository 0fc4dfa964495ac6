"""Portable sentiment model: numpy-only inference from a directory of plain files.

This module needs nothing but the standard library and numpy, so it runs alone inside a
SageMaker container (it is copied into the artifact's ``code/`` next to ``inference.py``). In its
package with pyarrow installed (the stream workers, the local endpoint server), word blocks
tokenise the ASCII texts of a batch from their bytes (:mod:`endpoint.tokens`), with the same
tokens as ``re``.

Model directory (no pickle anywhere)::

    model.json    name, version, classes [-1, 0, 1], labels, feature settings, class priors
                  of the training data, validation confusion matrix (counts and row-normalised),
                  validation metrics, training provenance, and optionally ``calibration``:
                  ``{"temperature": T | [T, T, T], "bias": [b, b, b], ...}``, and the
                  scoring ``speed`` measured at training (machine-dependent)
    weights.npz   per feature block ``block{i}_terms`` (UTF-8 bytes of the terms joined by
                  newlines, in column order) and ``block{i}_idf``; ``coef`` (3, n_features) and
                  ``intercept`` (3,) of a multinomial linear model

Features are the column-wise concatenation of blocks, each a TF-IDF vectoriser that reproduces
scikit-learn's ``TfidfVectorizer`` exactly (analyzer ``word``, ``char`` or ``char_wb``,
``lowercase``, ``token_pattern``, ``ngram_range``, ``sublinear_tf``, ``norm``): probabilities
are ``softmax(X @ coef.T + intercept)``, equal to scikit-learn's ``predict_proba`` of the
trained pipeline, and then calibrated when the model carries a calibration (vector scaling or
bias-corrected temperature scaling, fitted at training by ``endpoint.calibration``):
``softmax((X @ coef.T + intercept) / T + b)``, ``T`` one temperature or one per class.
Predicted classes are the argmax of the calibrated probabilities.

Public API::

    CLASSES = (-1, 0, 1); LABELS = ("negative", "neutral", "positive")
    class InvalidInput(ValueError)          # a bad request: servers answer 400
    class FeatureBlock                      # one TF-IDF block (settings, terms, idf)
    class SentimentModel:
        SentimentModel.load(model_dir) -> SentimentModel
        SentimentModel(blocks, coef, intercept, metadata)     # e.g. tiny hand-made models
        .save(model_dir) -> Path
        .name, .version, .classes (ndarray [-1, 0, 1]), .labels, .metadata (dict),
        .class_priors (ndarray (3,)), .confusion_matrix (ndarray (3, 3) counts | None,
        rows = true class, columns = predicted class), .confusion_matrix_normalised,
        .n_features
        .calibration -> (temperature: float | ndarray (3,), bias (3,)) | None
        .predict_proba(texts, calibrated=True) -> ndarray (n, 3)   columns in order [-1, 0, 1]
        .predict(texts) -> ndarray (n,) of -1 | 0 | 1   (argmax of the calibrated scores)
        .decision_function(texts) -> ndarray (n, 3)
        .transform(texts) -> SparseRows (CSR parts of the feature matrix)
        .vocabulary -> frozenset[str]      # single-word terms: OOV reference for monitors
        .tokenize(text) -> list[str]       # word tokens as the word block sees them
        .oov_rate(texts) -> ndarray (n,)   # share of word tokens outside .vocabulary (NaN: none)
    calibrated_softmax(scores, temperature, bias) -> ndarray   # softmax(scores / T + b)
"""

from __future__ import annotations

import io
import itertools
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

if __package__:
    from . import tokens as _tokens

    #: word blocks with the default pattern tokenise ASCII texts from their bytes
    _VECTOR_TOKENS = _tokens.available()
else:  # loaded by path inside the model container: numpy only, ``re`` tokenises
    _VECTOR_TOKENS = False

__all__ = [
    "CLASSES",
    "LABELS",
    "MODEL_FILE",
    "WEIGHTS_FILE",
    "FeatureBlock",
    "InvalidInput",
    "ModelInfo",
    "SentimentModel",
    "SparseRows",
    "calibrated_softmax",
    "temperatures",
]

#: Class values in column order of every probability matrix.
CLASSES: tuple[int, int, int] = (-1, 0, 1)
#: Names of the classes, same order.
LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"
#: Version of the on-disk format written by :meth:`SentimentModel.save`.
FORMAT = 1

#: scikit-learn's default ``token_pattern``.
DEFAULT_WORD_PATTERN = r"(?u)\b\w\w+\b"
#: scikit-learn's whitespace normalisation before character n-grams.
_WHITE_SPACES = re.compile(r"\s\s+")

Analyzer = Literal["word", "char", "char_wb"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


#: Texts a TF-IDF model scores in one vectorised step. A step's token lists and features are
#: what scoring holds at once: a micro-batch of 2,000 texts in one step held about 30 MB of
#: them in a worker, and steps of 256 scored about 1.2 times faster (they stay in cache).
SCORE_STEP = 256
#: Texts tokenised at once where a block tokenises from bytes (:mod:`endpoint.tokens`): its
#: vocabulary lookup builds a hash table of the block's words each call (about 1 ms for the
#: shipped model's 28,000), so a call covers several steps; its byte masks and token arrays
#: take a few bytes a character, bounded by this many texts.
TOKENISE_STEP = 4 * SCORE_STEP


class InvalidInput(ValueError):
    """A request the model cannot answer (bad body, content type, encoding or shape).

    Servers answer it with HTTP 400; retrying the same request cannot help."""


class SparseRows(NamedTuple):
    """A feature matrix in CSR form: row ``i`` holds ``values[indptr[i]:indptr[i+1]]`` at
    columns ``indices[indptr[i]:indptr[i+1]]`` (columns sorted within a row)."""

    indptr: IntArray
    indices: IntArray
    values: FloatArray
    shape: tuple[int, int]

    def toarray(self) -> FloatArray:
        out = np.zeros(self.shape, dtype=np.float64)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out


@dataclass(frozen=True, eq=False)
class FeatureBlock:
    """One TF-IDF block: scikit-learn ``TfidfVectorizer`` settings plus its fitted terms (in
    column order) and idf weights. Only the settings below are supported; ``strip_accents``,
    ``stop_words`` and ``binary`` must have their defaults (None, None, False) at training."""

    terms: tuple[str, ...]
    idf: FloatArray | None = None
    analyzer: Analyzer = "word"
    ngram_range: tuple[int, int] = (1, 1)
    lowercase: bool = True
    token_pattern: str = DEFAULT_WORD_PATTERN
    sublinear_tf: bool = False
    norm: Literal["l1", "l2"] | None = "l2"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _words: _WordTerms | None = field(init=False, repr=False, compare=False)
    _vector: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lo, hi = self.ngram_range
        if not 1 <= lo <= hi:
            raise ValueError(f"ngram_range must satisfy 1 <= min <= max, got {self.ngram_range}")
        if self.analyzer not in ("word", "char", "char_wb"):
            raise ValueError(f"unsupported analyzer {self.analyzer!r}")
        if self.norm not in ("l1", "l2", None):
            raise ValueError(f"unsupported norm {self.norm!r}")
        index = {t: i for i, t in enumerate(self.terms)}
        if len(index) != len(self.terms):
            raise ValueError("feature terms must be unique")
        if self.idf is not None and self.idf.shape != (len(self.terms),):
            raise ValueError(f"idf has shape {self.idf.shape}, expected ({len(self.terms)},)")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_pattern", re.compile(self.token_pattern))
        words = (
            _WordTerms.of(self.terms)
            if self.analyzer == "word" and self.ngram_range in ((1, 1), (1, 2))
            else None
        )
        object.__setattr__(self, "_words", words)
        vector = _VECTOR_TOKENS and words is not None and self.token_pattern == DEFAULT_WORD_PATTERN
        object.__setattr__(self, "_vector", vector)

    @property
    def size(self) -> int:
        return len(self.terms)

    @property
    def index(self) -> Mapping[str, int]:
        """Term -> column within this block."""
        return self._index

    def settings(self) -> dict[str, Any]:
        """The JSON-able settings (everything but terms and idf)."""
        return {
            "analyzer": self.analyzer,
            "ngram_range": list(self.ngram_range),
            "lowercase": self.lowercase,
            "token_pattern": self.token_pattern,
            "sublinear_tf": self.sublinear_tf,
            "norm": self.norm,
            "use_idf": self.idf is not None,
            "n_terms": self.size,
        }

    # -- analysis: exactly scikit-learn's analyzers ---------------------------------------

    def tokens(self, text: str) -> list[str]:
        """Word tokens (after lower-casing when configured), as ``build_tokenizer`` gives."""
        return self._pattern.findall(text.lower() if self.lowercase else text)

    def analyze(self, text: str) -> list[str]:
        """The terms (n-grams) of ``text``, as ``TfidfVectorizer.build_analyzer()`` gives."""
        if self.lowercase:
            text = text.lower()
        lo, hi = self.ngram_range
        if self.analyzer == "word":
            return _word_ngrams(self._pattern.findall(text), lo, hi)
        if self.analyzer == "char_wb":
            return _char_wb_ngrams(text, lo, hi)
        return _char_ngrams(text, lo, hi)

    def term_ids(self, text: str) -> list[int]:
        """Columns (within this block) of the known terms of ``text``, with repetitions."""
        get = self._index.get
        if self.analyzer == "word" and self.ngram_range in ((1, 1), (1, 2)):
            # The common case, without building the n-gram list first.
            toks = self._pattern.findall(text.lower() if self.lowercase else text)
            ids = [get(t, -1) for t in toks]
            if self.ngram_range[1] == 2:
                ids += [get(a + " " + b, -1) for a, b in itertools.pairwise(toks)]
        else:
            ids = [get(t, -1) for t in self.analyze(text)]
        return ids

    def _word_numbers(self, terms: _WordTerms, texts: Sequence[str]) -> tuple[IntArray, IntArray]:
        """(text, word number) of every token of ``texts``, in text order (``terms``: this
        word block's)."""
        lower, findall = self.lowercase, self._pattern.findall
        column = _tokens.to_column(texts) if self._vector else None
        if column is None:
            return terms.word_numbers([findall(t.lower() if lower else t) for t in texts])
        found = _tokens.ascii_word_ids(column, terms.value_set, lowercase=lower)
        docs, words = found.rows, found.ids
        others = np.flatnonzero(~found.ascii_rows)
        if not len(others):
            return docs, words
        # the other texts' tokens by ``re`` (Unicode word characters), merged in text order
        more_docs, more_words = terms.word_numbers(
            [findall(texts[i].lower() if lower else texts[i]) for i in others.tolist()]
        )
        docs = np.concatenate([docs, others[more_docs]])
        order = np.argsort(docs, kind="stable")
        return docs[order], np.concatenate([words, more_words])[order]

    def batch_numbers(self, texts: Sequence[str]) -> tuple[IntArray, IntArray] | None:
        """(text, word number) of every token of ``texts`` in text order, for
        :meth:`transform_numbers`, when this block tokenises a batch at once (a word block
        tokenising from bytes: one vocabulary lookup for all the texts, whose hash table is
        built afresh each call); None otherwise."""
        if self._words is None or not self._vector:
            return None
        return self._word_numbers(self._words, texts)

    def transform_numbers(
        self, docs: IntArray, words: IntArray, n: int
    ) -> tuple[IntArray, IntArray, FloatArray]:
        """:meth:`transform` of ``n`` texts from their :meth:`batch_numbers`."""
        if self._words is None:
            raise TypeError("only a word block's features come from word numbers")
        docs, ids = self._words.columns(docs, words, pairs=self.ngram_range[1] == 2)
        return self._weigh(docs, ids, n)

    def transform(self, texts: Sequence[str]) -> tuple[IntArray, IntArray, FloatArray]:
        """(rows, columns, values) of the non-zero features, sorted by row then column."""
        n = len(texts)
        if self._words is not None:
            return self.transform_numbers(*self._word_numbers(self._words, texts), n)
        per_doc = [self.term_ids(t) for t in texts]
        lengths = np.fromiter(map(len, per_doc), dtype=np.int64, count=n)
        ids = np.fromiter(itertools.chain.from_iterable(per_doc), np.int64, int(lengths.sum()))
        docs = np.repeat(np.arange(n, dtype=np.int64), lengths)
        return self._weigh(docs, ids, n)

    def _weigh(
        self, docs: IntArray, ids: IntArray, n: int
    ) -> tuple[IntArray, IntArray, FloatArray]:
        """The TF-IDF (rows, columns, values) of ``n`` texts whose terms are at columns
        ``ids`` (-1: unknown) of texts ``docs``, sorted by row then column."""
        known = ids >= 0
        width = max(self.size, 1)
        keys, counts = np.unique(docs[known] * width + ids[known], return_counts=True)
        rows = keys // width
        cols = keys - rows * width
        values = counts.astype(np.float64)
        if self.sublinear_tf:
            values = np.log(values) + 1.0
        if self.idf is not None:
            values *= self.idf[cols]
        if self.norm is not None:
            mass = values * values if self.norm == "l2" else np.abs(values)
            norms = np.bincount(rows, weights=mass, minlength=n)
            if self.norm == "l2":
                norms = np.sqrt(norms)
            norms[norms == 0.0] = 1.0
            values /= norms[rows]
        return rows, cols, values


@dataclass(frozen=True)
class _WordTerms:
    """A word block's terms by word number: each word of a term gets a number, a unigram's
    column is found by its word's number and a bigram's by the pair's, in numpy, so a batch
    costs one dict lookup per token instead of a lookup per token and a joined string and a
    lookup per pair."""

    words: dict[str, int]  # every word of a term -> its number
    unigram: IntArray  # word number -> column of that unigram, or -1
    pair_keys: IntArray  # sorted: first word * len(words) + second word, of each bigram
    pair_columns: IntArray  # the column of each of those bigrams
    _value_set: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, terms: Sequence[str]) -> _WordTerms:
        numbers: dict[str, int] = {}
        unigrams: list[tuple[int, int]] = []
        pairs: list[tuple[int, int, int]] = []
        for column, term in enumerate(terms):
            words = [numbers.setdefault(w, len(numbers)) for w in term.split(" ")]
            if len(words) == 1:
                unigrams.append((words[0], column))
            else:
                pairs.append((words[0], words[1], column))
        width = len(numbers)
        unigram = np.full(width, -1, np.int64)
        for word, column in unigrams:
            unigram[word] = column
        keys = np.array([a * width + b for a, b, _c in pairs], np.int64)
        order = np.argsort(keys)
        columns = np.array([c for _a, _b, c in pairs], np.int64)
        return cls(numbers, unigram, keys[order], columns[order])

    @property
    def value_set(self) -> Any:
        """The words in number order, as :func:`endpoint.tokens.lookup` takes them."""
        if self._value_set is None:
            object.__setattr__(self, "_value_set", _tokens.value_set(list(self.words)))
        return self._value_set

    def word_numbers(self, tokens: Sequence[list[str]]) -> tuple[IntArray, IntArray]:
        """(document, word number) of every token of each document's ``tokens`` (-1: a word
        of no term)."""
        get = self.words.get
        per_doc = [[get(t, -1) for t in doc] for doc in tokens]
        lengths = np.fromiter(map(len, per_doc), np.int64, len(per_doc))
        words = np.fromiter(itertools.chain.from_iterable(per_doc), np.int64, int(lengths.sum()))
        return np.repeat(np.arange(len(per_doc), dtype=np.int64), lengths), words

    def columns(self, docs: IntArray, words: IntArray, *, pairs: bool) -> tuple[IntArray, IntArray]:
        """(document, column) of every unigram (and with ``pairs``, every bigram) of the
        tokens with these documents and word numbers (:meth:`word_numbers`, in text order);
        the column is -1 for a term the block does not know."""
        if not len(self.words):  # a block without terms: every token is unknown
            return docs, np.full(len(words), -1, np.int64)
        known = words >= 0
        ids = np.where(known, self.unigram[np.where(known, words, 0)], -1)
        if not pairs or len(words) < 2 or not len(self.pair_keys):
            return docs, ids
        first, second = words[:-1], words[1:]
        within = (docs[:-1] == docs[1:]) & (first >= 0) & (second >= 0)
        keys = first * len(self.words) + second
        at = np.minimum(np.searchsorted(self.pair_keys, keys), len(self.pair_keys) - 1)
        found = within & (self.pair_keys[at] == keys)
        pair_ids = np.where(found, self.pair_columns[at], -1)
        return np.concatenate([docs, docs[:-1]]), np.concatenate([ids, pair_ids])


def _word_ngrams(tokens: list[str], lo: int, hi: int) -> list[str]:
    out = list(tokens) if lo == 1 else []
    for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
        out += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return out


def _char_ngrams(text: str, lo: int, hi: int) -> list[str]:
    text = _WHITE_SPACES.sub(" ", text)
    out: list[str] = []
    for n in range(lo, min(hi, len(text)) + 1):
        out += [text[i : i + n] for i in range(len(text) - n + 1)]
    return out


def _char_wb_ngrams(text: str, lo: int, hi: int) -> list[str]:
    out: list[str] = []
    for word in text.split():
        w = " " + word + " "
        for n in range(lo, hi + 1):
            if len(w) <= n:  # the whole padded word, counted once for this and larger sizes
                out.append(w)
                break
            out += [w[i : i + n] for i in range(len(w) - n + 1)]
    return out


def _write_npz(path: Path, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """``np.savez_compressed`` with fixed timestamps: the same arrays give the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _softmax(z: FloatArray) -> FloatArray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def temperatures(value: object, k: int) -> float | tuple[float, ...]:
    """A calibration's temperature as stored or given: one float, or one per class (a list,
    tuple or array of ``k``), each finite and > 0; raises ValueError otherwise."""
    try:
        t = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be numbers, got {value!r}") from None
    if t.ndim > 1 or (t.ndim == 1 and t.shape != (k,)):
        raise ValueError(f"temperature must be one float or one per class ({k}), got {value!r}")
    if not (np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError(f"temperature must be finite and > 0, got {value!r}")
    return float(t) if t.ndim == 0 else tuple(float(x) for x in t)


def calibrated_softmax(
    scores: npt.ArrayLike,
    temperature: float | npt.ArrayLike = 1.0,
    bias: npt.ArrayLike | None = None,
) -> FloatArray:
    """Calibrated softmax of linear scores (n, k): ``softmax(scores / T + b)`` row by row,
    ``T`` one temperature or one per class (column). ``T = 1`` and no bias give the plain
    softmax. With one temperature per class the result depends on the scores' common offset
    (plain softmax does not): the multinomial models here give scores that sum to zero in
    every row, and a calibration is fitted and applied on such scores."""
    z = np.array(scores, dtype=np.float64, ndmin=2)
    z /= np.asarray(temperatures(temperature, z.shape[1]), dtype=np.float64)
    if bias is not None:
        z += np.asarray(bias, dtype=np.float64)
    return _softmax(z)


class ModelInfo:
    """What every model flavour has in common: its metadata (``model.json``) and what is read
    from it, the word vocabulary monitors measure out-of-vocabulary rates against, and
    calibrated probabilities from the subclass's :meth:`decision_function`."""

    metadata: dict[str, Any]
    #: The word tokeniser and its terms (single words are the vocabulary); None: no words.
    _word_block: FeatureBlock | None = None
    _vocabulary: frozenset[str] | None = None

    def _write_metadata(self, root: Path, format_: int, **extra: Any) -> None:
        """``model.json``: format, name, version, classes and labels from the model, every
        other metadata key as given, then ``extra``."""
        meta = {
            "format": format_,
            "name": self.name,
            "version": self.version,
            "classes": list(CLASSES),
            "labels": list(LABELS),
            **{k: v for k, v in self.metadata.items() if k not in ("format", "classes")},
            **extra,
        }
        (root / MODEL_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @property
    def flavour(self) -> str:
        """``tfidf`` (this module), or a transformer flavour (``endpoint.transformer``)."""
        return str(self.metadata.get("flavour", "tfidf"))

    def decision_function(self, texts: Sequence[str]) -> FloatArray:
        """Scores (n, 3) whose softmax is the uncalibrated probabilities."""
        raise NotImplementedError

    @property
    def size_text(self) -> str:
        """What the model is made of, in a few words (for reports)."""
        raise NotImplementedError

    def save(self, model_dir: str | Path) -> Path:
        """Write the model directory (created if missing) and return its path."""
        raise NotImplementedError

    @property
    def backend(self) -> str:
        """What computes the scores."""
        return "numpy"

    # -- description ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "sentiment"))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "0"))

    @property
    def classes(self) -> IntArray:
        return np.array(CLASSES, dtype=np.int64)

    @property
    def labels(self) -> tuple[str, str, str]:
        return LABELS

    @property
    def class_priors(self) -> FloatArray:
        """Class shares of the training data, order [-1, 0, 1] (uniform when unknown)."""
        priors = self.metadata.get("class_priors")
        if priors is None:
            return np.full(len(CLASSES), 1.0 / len(CLASSES))
        return np.asarray(priors, dtype=np.float64)

    @property
    def calibration(self) -> tuple[float | tuple[float, ...], FloatArray] | None:
        """``(temperature, bias)`` of the stored calibration: one temperature (BCTS) or one
        per class (vector scaling); None: probabilities are the plain softmax of the linear
        scores."""
        cal = self.metadata.get("calibration")
        if cal is None:
            return None
        try:
            t = temperatures(cal["temperature"], len(CLASSES))
        except ValueError as err:
            raise ValueError(f"calibration: {err}") from None
        b = np.asarray(cal["bias"], dtype=np.float64)
        if b.shape != (len(CLASSES),) or not np.all(np.isfinite(b)):
            raise ValueError(f"calibration needs 3 finite biases, got {cal!r}")
        return t, b

    @property
    def confusion_matrix(self) -> IntArray | None:
        """Validation confusion matrix of counts, ``[true class, predicted class]`` in class
        order [-1, 0, 1] (scikit-learn's orientation; transpose it for ``[predicted, true]``),
        or None when the model has none."""
        cm = self.metadata.get("validation", {}).get("confusion_matrix")
        return None if cm is None else np.asarray(cm["counts"], dtype=np.int64)

    @property
    def confusion_matrix_normalised(self) -> FloatArray | None:
        """Rows of :attr:`confusion_matrix` divided by their sums: ``P(predicted | true)``."""
        cm = self.confusion_matrix
        if cm is None:
            return None
        sums = cm.sum(axis=1, keepdims=True).astype(np.float64)
        out: FloatArray = np.divide(cm, sums, out=np.zeros(cm.shape), where=sums > 0)
        return out

    @property
    def vocabulary(self) -> frozenset[str]:
        """Single-word terms of the word block: what :meth:`oov_rate` counts as known."""
        if self._vocabulary is None:
            b = self._word_block
            self._vocabulary = frozenset(() if b is None else (t for t in b.terms if " " not in t))
        return self._vocabulary

    def tokenize(self, text: str) -> list[str]:
        """Word tokens of ``text`` as the model's word block sees them (lower-cased)."""
        if self._word_block is None:
            return text.lower().split()
        return self._word_block.tokens(text)

    def oov_rate(self, texts: Sequence[str]) -> FloatArray:
        """Per text, the share of its word tokens outside :attr:`vocabulary` (NaN: no
        tokens)."""
        vocab = self.vocabulary
        out = np.full(len(texts), np.nan)
        for i, text in enumerate(texts):
            toks = self.tokenize(text)
            if toks:
                out[i] = sum(1 for t in toks if t not in vocab) / len(toks)
        return out

    def predict_proba(self, texts: Sequence[str], *, calibrated: bool = True) -> FloatArray:
        """Class probabilities, shape (n, 3), columns in class order [-1, 0, 1]; with the
        stored calibration applied unless ``calibrated=False`` (scikit-learn's output)."""
        scores = self.decision_function(texts)
        cal = self.calibration if calibrated else None
        return _softmax(scores) if cal is None else calibrated_softmax(scores, *cal)

    def predict(self, texts: Sequence[str]) -> IntArray:
        """Most probable class per text (calibrated probabilities): -1, 0 or 1."""
        out: IntArray = self.classes[np.argmax(self.predict_proba(texts), axis=1)]
        return out


class SentimentModel(ModelInfo):
    """A three-class linear model over TF-IDF features; see the module docstring."""

    def __init__(
        self,
        blocks: Sequence[FeatureBlock],
        coef: npt.ArrayLike,
        intercept: npt.ArrayLike,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not blocks:
            raise ValueError("a model needs at least one feature block")
        self.blocks: tuple[FeatureBlock, ...] = tuple(blocks)
        self.coef: FloatArray = np.ascontiguousarray(coef, dtype=np.float64)
        self.intercept: FloatArray = np.ascontiguousarray(intercept, dtype=np.float64)
        n_features = sum(b.size for b in self.blocks)
        if self.coef.shape != (len(CLASSES), n_features):
            raise ValueError(
                f"coef has shape {self.coef.shape}, expected ({len(CLASSES)}, {n_features})"
            )
        if self.intercept.shape != (len(CLASSES),):
            raise ValueError(f"intercept has shape {self.intercept.shape}, expected (3,)")
        offsets = np.cumsum([0] + [b.size for b in self.blocks])
        self._offsets: tuple[int, ...] = tuple(int(o) for o in offsets)
        self._coef_t: FloatArray = np.ascontiguousarray(self.coef.T)
        self.metadata: dict[str, Any] = json.loads(json.dumps(dict(metadata or {})))
        self._word_block = next((b for b in self.blocks if b.analyzer == "word"), None)
        _ = self.calibration  # a malformed calibration fails here, not at the first request

    # -- persistence ------------------------------------------------------------------------

    @classmethod
    def load(cls, model_dir: str | Path) -> SentimentModel:
        """Load ``model.json`` and ``weights.npz`` from ``model_dir``."""
        root = Path(model_dir)
        meta_path, weights_path = root / MODEL_FILE, root / WEIGHTS_FILE
        for p in (meta_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"model file missing: {p}")
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unsupported model format {meta.get('format')!r}")
        if list(meta.get("classes", [])) != list(CLASSES):
            raise ValueError(f"{meta_path}: classes must be {list(CLASSES)}")
        with np.load(weights_path, allow_pickle=False) as w:
            arrays = {k: w[k] for k in w.files}
        blocks = []
        for i, settings in enumerate(meta["features"]):
            raw = arrays[f"block{i}_terms"].tobytes().decode("utf-8")
            terms = tuple(raw.split("\n")) if raw else ()
            idf = arrays.get(f"block{i}_idf")
            blocks.append(
                FeatureBlock(
                    terms=terms,
                    idf=None if idf is None else idf.astype(np.float64),
                    analyzer=settings["analyzer"],
                    ngram_range=(int(settings["ngram_range"][0]), int(settings["ngram_range"][1])),
                    lowercase=bool(settings["lowercase"]),
                    token_pattern=str(settings["token_pattern"]),
                    sublinear_tf=bool(settings["sublinear_tf"]),
                    norm=settings["norm"],
                )
            )
        return cls(blocks, arrays["coef"], arrays["intercept"], meta)

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.json`` and ``weights.npz`` into ``model_dir`` (created if needed).

        ``features``, ``classes``, ``labels`` and ``format`` of the metadata are written from
        the model itself; every other metadata key is kept as given."""
        root = Path(model_dir)
        root.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, npt.NDArray[Any]] = {
            "coef": self.coef,
            "intercept": self.intercept,
        }
        for i, b in enumerate(self.blocks):
            if any("\n" in t for t in b.terms):
                raise ValueError("terms must not contain newlines")
            arrays[f"block{i}_terms"] = np.frombuffer(
                "\n".join(b.terms).encode("utf-8"), dtype=np.uint8
            )
            if b.idf is not None:
                arrays[f"block{i}_idf"] = b.idf
        _write_npz(root / WEIGHTS_FILE, arrays)
        self._write_metadata(root, FORMAT, features=[b.settings() for b in self.blocks])
        return root

    @property
    def n_features(self) -> int:
        return self._offsets[-1]

    @property
    def size_text(self) -> str:
        return f"{self.n_features} features"

    # -- inference --------------------------------------------------------------------------

    def _parts(
        self,
        texts: Sequence[str],
        at_once: Sequence[tuple[IntArray, IntArray] | None] = (),
        start: int = 0,
    ) -> Iterable[tuple[IntArray, IntArray, FloatArray]]:
        """Each block's features of ``texts``; ``at_once``: per block, the token numbers
        (:meth:`FeatureBlock.batch_numbers`) of a larger sequence whose texts from ``start`` on
        these are (None: tokenise these)."""
        found_all = at_once or [None] * len(self.blocks)
        for block, offset, found in zip(self.blocks, self._offsets, found_all, strict=False):
            if found is None:
                rows, cols, values = block.transform(texts)
            else:
                docs, words = found
                lo, hi = np.searchsorted(docs, (start, start + len(texts))).tolist()
                rows, cols, values = block.transform_numbers(
                    docs[lo:hi] - start, words[lo:hi], len(texts)
                )
            yield rows, cols + offset, values

    def transform(self, texts: Sequence[str]) -> SparseRows:
        """The feature matrix of ``texts`` (same as the training pipeline's ``transform``)."""
        n = len(texts)
        parts = list(self._parts(texts))
        rows = np.concatenate([p[0] for p in parts])
        cols = np.concatenate([p[1] for p in parts])
        values = np.concatenate([p[2] for p in parts])
        order = np.lexsort((cols, rows))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return SparseRows(indptr, cols[order], values[order], (n, self.n_features))

    def decision_function(self, texts: Sequence[str]) -> FloatArray:
        """Linear scores ``X @ coef.T + intercept``, shape (n, 3), :data:`SCORE_STEP` texts
        at a time (each row's sum is the same in any step)."""
        n = len(texts)
        scores = np.tile(self.intercept, (n, 1))
        for first in range(0, n, TOKENISE_STEP):
            chunk = texts[first : first + TOKENISE_STEP]
            at_once = [block.batch_numbers(chunk) for block in self.blocks]
            for start in range(0, len(chunk), SCORE_STEP):
                step = chunk[start : start + SCORE_STEP]
                out = scores[first + start : first + start + len(step)]
                for rows, cols, values in self._parts(step, at_once, start):
                    contrib = self._coef_t[cols] * values[:, None]
                    for k in range(len(CLASSES)):
                        out[:, k] += np.bincount(rows, weights=contrib[:, k], minlength=len(step))
        return scores

    def __repr__(self) -> str:
        return (
            f"SentimentModel(name={self.name!r}, version={self.version!r}, "
            f"features={self.n_features})"
        )
