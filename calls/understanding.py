"""What a spoken answer means: risk-word rules first, then a small classifier trained at start.

The classifier is character n-gram TF-IDF + logistic regression over calls/data/utterances_ko.tsv,
a hand-written set of colloquial, dialect and elderly Korean answers. It is trained from that
text when first used (well under a second); nothing binary is shipped or loaded.
Rules guard both ends: a risk word always escalates, and the model alone never says OK unless
it is confident and nothing in the answer sounds unwell or doubtful.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from core.domain import CallOutcome

DATA_FILE = "utterances_ko.tsv"
OK_CONFIDENCE = 0.5  # the model must be this sure before silence on risk becomes reassurance

# Checked in order before the model; the first match decides.
RISK_RULES: tuple[tuple[re.Pattern[str], CallOutcome], ...] = (
    (
        re.compile(
            r"살려|119|일일구|구급|앰뷸|응급|위급|쓰러|숨이|숨을|숨\s*막|호흡|의식|마비|"
            r"피가|가슴이|심장|발작|경련|불이\s*났|불났|불이야|가스\s*냄새"
        ),
        CallOutcome.EMERGENCY,
    ),
    (
        re.compile(r"\b(ambulance|emergency|can'?t breathe|chest pain|fell|fallen)\b", re.I),
        CallOutcome.EMERGENCY,
    ),
    (re.compile(r"도와|도움|와\s*주|와\s*줘|다쳤|다쳐"), CallOutcome.HELP),
    (re.compile(r"\b(help|hurt)\b", re.I), CallOutcome.HELP),
    (re.compile(r"안\s*괜찮|괜찮지\s*않|not\s+(ok|okay|fine|good)", re.I), CallOutcome.UNWELL),
)

# After the model: words that never let an answer be OK.
UNWELL_WORDS = re.compile(
    r"아파|아프|아퍼|안\s*좋|편찮|어지러|힘들|쑤셔|\b(sick|pain|dizzy)\b", re.I
)
DOUBT_WORDS = re.compile(r"모르|글쎄|\?|\b(no|maybe|not sure)\b", re.I)
ENGLISH_OK = re.compile(r"\b(yes|yeah|fine|ok|okay|good|all right|alright)\b", re.I)
ENGLISH_LATER = re.compile(r"\b(later|busy|call (me )?back)\b", re.I)


def load_utterances() -> list[tuple[str, CallOutcome]]:
    """The shipped (text, outcome) pairs; '#' lines are comments."""
    text = resources.files("calls").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    pairs: list[tuple[str, CallOutcome]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, _, utterance = line.partition("\t")
        pairs.append((utterance.strip(), CallOutcome(label.strip())))
    return pairs


def _pipeline() -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)),
            ("clf", LogisticRegression(C=8.0, max_iter=2000)),
        ]
    )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Held-out accuracy of the model alone and of rules + model."""

    train: int
    test: int
    model_accuracy: float
    accuracy: float


class SpeechModel:
    """The classifier; fit() learns, predict() answers. Nothing happens in the constructor."""

    def __init__(self) -> None:
        self._pipeline: Pipeline | None = None

    def fit(self, pairs: list[tuple[str, CallOutcome]]) -> SpeechModel:
        pipeline = _pipeline()
        pipeline.fit([t for t, _ in pairs], [o.value for _, o in pairs])
        self._pipeline = pipeline
        return self

    @property
    def fitted(self) -> bool:
        return self._pipeline is not None

    def predict(self, text: str) -> tuple[CallOutcome, float]:
        """The most likely outcome and its probability."""
        if self._pipeline is None:
            raise RuntimeError("SpeechModel.fit() first")
        probs: Any = self._pipeline.predict_proba([text])[0]
        classes = list(self._pipeline.classes_)
        best = int(probs.argmax())
        return CallOutcome(classes[best]), float(probs[best])


def rule_outcome(text: str) -> CallOutcome | None:
    """The outcome a risk rule forces, if any."""
    for pattern, outcome in RISK_RULES:
        if pattern.search(text):
            return outcome
    return None


def understand(text: str, model: SpeechModel | None) -> CallOutcome:
    """Rules, then the model, then the guards; UNCLEAR when nothing is understood."""
    text = text.strip()
    if not text:
        return CallOutcome.UNCLEAR
    ruled = rule_outcome(text)
    if ruled is not None:
        return ruled
    if model is not None and model.fitted and re.search(r"[가-힣]", text):
        outcome, confidence = model.predict(text)
        if outcome is CallOutcome.OK and confidence < OK_CONFIDENCE:
            outcome = CallOutcome.UNCLEAR
    elif ENGLISH_LATER.search(text):
        outcome = CallOutcome.CALL_BACK_LATER
    elif ENGLISH_OK.search(text) or re.search(r"괜찮|(^|\s)(네|예)($|\s)", text):
        outcome = CallOutcome.OK
    else:
        outcome = CallOutcome.UNCLEAR
    never_fine = (CallOutcome.OK, CallOutcome.UNCLEAR, CallOutcome.CALL_BACK_LATER)
    if outcome in never_fine and UNWELL_WORDS.search(text):
        return CallOutcome.UNWELL
    if outcome is CallOutcome.OK and DOUBT_WORDS.search(text):
        return CallOutcome.UNCLEAR
    return outcome


def evaluate(
    pairs: list[tuple[str, CallOutcome]], test_share: float = 0.25, seed: int = 13
) -> Evaluation:
    """Stratified held-out split: accuracy of the model alone and of understand()."""
    rng = random.Random(seed)
    by_label: dict[CallOutcome, list[tuple[str, CallOutcome]]] = {}
    for pair in pairs:
        by_label.setdefault(pair[1], []).append(pair)
    train: list[tuple[str, CallOutcome]] = []
    test: list[tuple[str, CallOutcome]] = []
    for items in by_label.values():
        items = sorted(items)
        rng.shuffle(items)
        cut = max(1, round(len(items) * test_share))
        test += items[:cut]
        train += items[cut:]
    model = SpeechModel().fit(train)
    model_hits = sum(model.predict(t)[0] is o for t, o in test)
    hits = sum(understand(t, model) is o for t, o in test)
    return Evaluation(len(train), len(test), model_hits / len(test), hits / len(test))
