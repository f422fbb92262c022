"""Classic text classifiers for the baseline: TF-IDF word and character n-grams, linear SVM.

Topic reads headline and body; stance reads the target and the text through separate
vectorizers plus their cosine similarity (how much the text talks about the target, which is
what tells "unrelated" apart). Texts are normalized the way the model's are and cut to a fixed
length, and training rows are capped, so a baseline trains in about a minute on 2 cores.
"""
from __future__ import annotations

import hashlib

import numpy as np

from khabar.models.normalize import normalize

# Upper bounds on baseline training rows, above the shared datasets' sizes (ant21: 24,030
# articles, about 2 minutes on 2 cores), so the baseline sees all of a task's training data.
MAX_TRAIN_ROWS = {"topic": 30000, "stance": 20000}
MAX_CHARS = 3000


def cap_rows(examples: list, limit: int, seed: int = 13) -> list:
    """A fixed subset of at most ``limit`` examples, chosen by hash of id (not by file order)."""
    if len(examples) <= limit:
        return list(examples)
    key = lambda e: hashlib.sha1(f"{seed}:{e.id}".encode()).digest()  # noqa: E731
    keep = {e.id for e in sorted(examples, key=key)[:limit]}
    return [e for e in examples if e.id in keep]


def _clean(text: str) -> str:
    return normalize(text[: MAX_CHARS * 2]).text[:MAX_CHARS]


def _vectorizers(n_rows: int):
    """A word 1-2-gram and a char 2-5-gram TF-IDF vectorizer (rare n-grams dropped when the
    training set is big enough to have them)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    min_df = 2 if n_rows >= 200 else 1
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=min_df, max_features=200_000,
                           sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df,
                           max_features=300_000, sublinear_tf=True)
    return word, char


class TopicBaseline:
    """TF-IDF (word + char n-grams) and a linear SVM over headline and body."""

    def fit(self, examples: list) -> "TopicBaseline":
        from scipy.sparse import hstack
        from sklearn.svm import LinearSVC

        texts = [self.text(e) for e in examples]
        self.word, self.char = _vectorizers(len(texts))
        x = hstack([self.word.fit_transform(texts), self.char.fit_transform(texts)]).tocsr()
        self.clf = LinearSVC(C=0.5, class_weight="balanced").fit(x, [e.label for e in examples])
        return self

    @staticmethod
    def text(example) -> str:
        return _clean(f"{example.title}\n{example.text}" if example.title else example.text)

    def predict(self, examples: list) -> list[str]:
        from scipy.sparse import hstack

        texts = [self.text(e) for e in examples]
        x = hstack([self.word.transform(texts), self.char.transform(texts)]).tocsr()
        return [str(y) for y in self.clf.predict(x)]


class StanceBaseline:
    """Target and text TF-IDF side by side plus their cosine similarity, linear SVM."""

    def fit(self, examples: list) -> "StanceBaseline":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        targets = [_clean(e.target) for e in examples]
        texts = [_clean(e.text) for e in examples]
        self.t_word, self.t_char = _vectorizers(len(examples))
        self.x_word, self.x_char = _vectorizers(len(examples))
        # One shared vocabulary to measure how much of the target the text repeats.
        self.shared = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True)
        self.shared.fit(targets + texts)
        x = self._features(targets, texts, fit=True)
        self.clf = LinearSVC(C=0.5, class_weight="balanced").fit(x, [e.label for e in examples])
        return self

    def _features(self, targets: list[str], texts: list[str], fit: bool = False):
        from scipy.sparse import csr_matrix, hstack

        a, b = self.shared.transform(targets), self.shared.transform(texts)
        cosine = np.asarray(a.multiply(b).sum(axis=1)).reshape(-1, 1)
        parts = [(self.t_word, targets), (self.t_char, targets), (self.x_word, texts), (self.x_char, texts)]
        # fit_transform once while training: vectorizing is most of a baseline's time.
        blocks = [v.fit_transform(x) if fit else v.transform(x) for v, x in parts]
        return hstack(blocks + [csr_matrix(cosine * 3.0)]).tocsr()  # scaled: one dense signal among many

    def predict(self, examples: list) -> list[str]:
        x = self._features([_clean(e.target) for e in examples], [_clean(e.text) for e in examples])
        return [str(y) for y in self.clf.predict(x)]
