"""Personal data found with Microsoft Presidio's recognizers and Google's phonenumbers.

:func:`spans` gives where one kind (a Presidio entity) occurs in a text. The kinds and their checks:

- ``CREDIT_CARD``: the Luhn checksum and a card brand's prefix and length (Visa, Mastercard, Amex,
  Discover, Diners, JCB, UnionPay). Digits written in groups (``4111 1111 1111 1111``) are enough;
  digits in one block (``4111111111111111``) also need a card word before them (``card``, ``visa``,
  ``cvv``, ``payment``, ...), so an order id that happens to pass the checksum is left alone.
- ``IBAN_CODE``: the ISO 7064 checksum and the country's format; ``US_SSN``: the SSA's rules (no
  area 000, 666 or 9xx, no group 00, no serial 0000); written ``123-45-6789`` it is enough, with
  spaces, dots or no separator it needs ``ssn``/``social security`` before it.
- ``IP_ADDRESS``: IPv4 and IPv6 (``::1``, ``2606:4700:4700::1111``) that the standard library
  parses, except after a version word (``version 1.2.3.4``, ``v1.2.3.4``, ``==1.2.3.4``), inside a
  longer dotted sequence (``1.3.6.1.4.1``) or as a slice (``a[::2]``).
- ``EMAIL_ADDRESS``: a known top-level domain (tldextract's bundled list: nothing is downloaded).
- ``PHONE_NUMBER``: phonenumbers' valid numbers for the regions in ``FLYWHEEL_PII_PHONE_REGIONS``
  (default ``US,GB,DE,FR,IN``; any region's number written with ``+`` or ``00``). A national number
  grouped as no number of those regions is (``0-306-40615-2``, an ISBN) is left; one in bare digits
  or spaces without a trunk ``0`` (``256 512 1024``) needs a phone word before it.
- ``PERSON`` and ``LOCATION`` (places: cities, streets, buildings): only with an NER model, an
  installed spaCy pipeline named (or its folder) in ``FLYWHEEL_PII_NER_MODEL``. Without one, names
  and postal addresses are not found, and a warning says so once.

The context words are Presidio's (its lemma context enhancer over the tokens before a match);
without an NER model the tokens come from spaCy's blank English tokenizer, so no model weights are
needed, and a text is tokenized only when a weak match needs its context.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass

import phonenumbers
import spacy
import tldextract
from presidio_analyzer import AnalysisExplanation, AnalyzerEngine, LocalRecognizer
from presidio_analyzer import Pattern as PresidioPattern
from presidio_analyzer import RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                      IpRecognizer, SpacyRecognizer, UsSsnRecognizer)
from spacy.tokens import Doc

log = logging.getLogger(__name__)

NER_MODEL_VARIABLE = "FLYWHEEL_PII_NER_MODEL"
PHONE_REGIONS_VARIABLE = "FLYWHEEL_PII_PHONE_REGIONS"
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN")
#: A match counts from this score: a sure one (checksum-validated or well formatted) is above it, a
#: weak one below it until a context word raises it (Presidio adds 0.35, to at least 0.4).
THRESHOLD = 0.4
WEAK = 0.3
SURE = 0.6
LANGUAGE = "en"

_CARD_BRANDS = re.compile(
    r"4(?:\d{12}|\d{15}|\d{18})"                            # Visa
    r"|(?:5[1-5]\d\d|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720))\d{12}"  # Mastercard
    r"|3[47]\d{13}"                                          # American Express
    r"|3(?:0[0-5]|[689]\d)\d{11}"                            # Diners Club
    r"|(?:35(?:2[89]|[3-8]\d)|6(?:011|4[4-9]\d|5\d\d)|62\d\d)\d{12,15}")  # JCB, Discover, UnionPay


class _CardRecognizer(CreditCardRecognizer):
    """Presidio's card numbers, with a brand's prefix and length: sure in groups, weak in one block."""

    CONTEXT = ["credit", "card", "visa", "mastercard", "amex", "discover", "jcb", "diners", "maestro", "unionpay",
               "debit", "cvv", "cvc", "expir", "payment", "paid", "charge", "billing"]

    #: Presidio's pattern, with Mastercard's 2-series and 19 digits.
    PATTERNS = [PresidioPattern("card", r"\b(?:4\d{3}|5[0-5]\d\d|2[2-7]\d\d|3\d{3}|6\d{3})"
                                        r"[- ]?\d{3,4}[- ]?\d{3,4}[- ]?\d{3,5}(?:[- ]?\d{3})?\b", WEAK)]

    def __init__(self) -> None:
        super().__init__(patterns=self.PATTERNS, context=self.CONTEXT)

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = pattern_text.replace(" ", "").replace("-", "")
        if not (super().validate_result(pattern_text) and _CARD_BRANDS.fullmatch(digits)):
            return False
        return True if digits != pattern_text else None  # None keeps the pattern's weak score


class _SsnRecognizer(UsSsnRecognizer):
    """US SSNs: sure as ``123-45-6789``, weak with spaces or dots or as nine digits; SSA's rules."""

    PATTERNS = [
        PresidioPattern("SSN dashed", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", SURE),
        PresidioPattern("SSN spaced", r"\b[0-9]{3}[ .][0-9]{2}[ .][0-9]{4}\b", WEAK),
        PresidioPattern("SSN digits", r"\b[0-9]{9}\b", 0.05),
    ]
    CONTEXT = ["social", "security", "ssn", "taxpayer"]

    def __init__(self) -> None:
        super().__init__(patterns=self.PATTERNS, context=self.CONTEXT)

    def invalidate_result(self, pattern_text: str) -> bool:
        return super().invalidate_result(pattern_text) or pattern_text.startswith("9")


_VERSION_BEFORE = re.compile(r"(?i)(?:\b(?:v|ver|version|versions|release|rel|build|firmware|fw|kernel|rev|revision|"
                             r"patch|sdk|section|chapter|clause)\s*[:=#]?\s*|(?:==|~=|>=|<=|\^|~|§)\s*"
                             r"|\w/|\d\.)$")
_SLICE_BEFORE = re.compile(r"[\w)\]]\[$")


class _IpRecognizer(IpRecognizer):
    """Presidio's IPv4 and IPv6 addresses, less version numbers, longer dotted sequences and slices."""

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # noqa: D102
        return [r for r in super().analyze(text, entities, nlp_artifacts, regex_flags)
                if not _in_other_use(text, r.start, r.end)]


def _in_other_use(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 40):start]
    return bool(_VERSION_BEFORE.search(before) or _SLICE_BEFORE.search(before) or re.match(r"\.\d", text[end:end + 2]))


_TLDS = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled list, never fetched


class _EmailRecognizer(EmailRecognizer):
    """Presidio's email addresses, the domain checked against tldextract's bundled suffix list; no
    ``=``, ``/`` or ``?`` in the local part (``?email=jane@example.com`` is the address after ``=``)."""

    PATTERNS = [PresidioPattern("email", r"\b(?:[!#$%&'*+\-^_`{|}~\w]|[!#$%&'*+\-^_`{|}~\w][!#$%&'*+\-^_`{|}~.\w]*"
                                         r"[!#$%&'*+\-^_`{|}~\w])@\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+\b", 0.5)]

    def __init__(self) -> None:
        super().__init__(patterns=self.PATTERNS)

    def validate_result(self, pattern_text: str) -> bool:
        return _TLDS(pattern_text).fqdn != ""


_PHONE_CANDIDATE = re.compile(r"\d(?:[ ().\-/]{0,3}\d){6,}")
#: Dates and times, never a phone number: hidden from phonenumbers, whose candidates they would be.
_NOT_A_PHONE = re.compile(r"\b\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?)?"
                          r"|\b\d{1,2}:\d\d(?::\d\d(?:[.,]\d+)?)?\b")


class _PhoneRecognizer(LocalRecognizer):
    """phonenumbers' valid numbers for ``regions``. Sure: written with ``+`` or ``00``, or grouped as
    the region writes it with a trunk ``0`` or separators (``(415) 555-0100``, ``020 7946 0958``).
    Weak: in bare digits or spaces (``256 512 1024``), or grouped in a way the region allows but does
    not use. Left out: grouped in a way no number of the region is (``0-306-40615-2``, an ISBN)."""

    CONTEXT = ["phone", "telephone", "tel", "mobile", "cell", "call", "fax", "contact", "whatsapp", "sms",
               "dial", "reach", "number"]

    def __init__(self, regions: tuple[str, ...]) -> None:
        self.regions = regions
        super().__init__(supported_entities=["PHONE_NUMBER"], supported_language=LANGUAGE, context=self.CONTEXT,
                         name="phonenumbers")

    def load(self) -> None:  # noqa: D102
        pass

    def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102
        return [self._result(start, end, score) for (start, end), score in self._scores(text).items()]

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one recognizer per analyzer): a weak match's second pass
    def _scores(self, text: str) -> dict[tuple[int, int], float]:
        """The score of each number found, phonenumbers reading only around runs of 7 or more digits."""
        masked = _NOT_A_PHONE.sub(lambda m: " " * len(m.group()), text)  # the same offsets
        scores: dict[tuple[int, int], float] = {}
        for candidate in _PHONE_CANDIDATE.finditer(masked):
            offset = max(0, candidate.start() - 4)  # with the characters around it, such as a "+"
            window = masked[offset:candidate.end() + 4]
            for region in self.regions:
                for m in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID):
                    span, score = (offset + m.start, offset + m.end), _phone_score(m.raw_string, region)
                    if score:
                        scores[span] = max(scores.get(span, 0.0), score)
        return scores

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        explanation = AnalysisExplanation(recognizer=self.name, original_score=score,
                                          textual_explanation="a valid number for a configured region")
        return RecognizerResult("PHONE_NUMBER", start, end, score, analysis_explanation=explanation)


def _phone_score(raw: str, region: str) -> float:
    if raw.startswith(("+", "00")):
        return SURE
    if _grouped(raw, region, phonenumbers.Leniency.EXACT_GROUPING):
        return SURE if raw.startswith("0") or any(c in raw for c in "()-./") else WEAK
    return WEAK if _grouped(raw, region, phonenumbers.Leniency.STRICT_GROUPING) else 0.0


def _grouped(raw: str, region: str, leniency: int) -> bool:
    return any(True for _ in phonenumbers.PhoneNumberMatcher(raw, region, leniency=leniency))


@spacy.Language.component("flywheel_lowercase_lemmas")
def _lowercase_lemmas(doc: Doc) -> Doc:
    """The lowercased tokens as lemmas, for a pipeline without a lemmatizer."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


class _SpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over a loaded pipeline, where every word counts as context (spaCy's
    stop words include "call" and "number")."""

    def __init__(self, nlp: spacy.Language, name: str, config: NerModelConfiguration | None = None) -> None:
        super().__init__(models=[{"lang_code": LANGUAGE, "model_name": name}], ner_model_configuration=config)
        nlp.max_length = max(nlp.max_length, 50_000_000)  # spaCy refuses texts over 1M characters by default
        self.nlp = {LANGUAGE: nlp}

    def is_stopword(self, word: str, language: str) -> bool:  # noqa: D102
        return False


def _tokenizer_engine() -> _SpacyEngine:
    """spaCy's blank English pipeline: tokens for the context words, no model weights."""
    nlp = spacy.blank(LANGUAGE)
    nlp.add_pipe("flywheel_lowercase_lemmas")
    return _SpacyEngine(nlp, "blank:en")


_NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}


def _ner_engine(model: str) -> _SpacyEngine:
    """The installed spaCy pipeline ``model`` (never downloaded), its person and place labels mapped."""
    if not (spacy.util.is_package(model) or os.path.isdir(model)):
        raise ValueError(f"{NER_MODEL_VARIABLE}={model!r} is neither an installed spaCy pipeline nor a folder "
                         f"holding one; install it (python -m spacy download {model}) or unset the variable")
    nlp = spacy.load(model)
    if "lemmatizer" not in nlp.pipe_names:
        nlp.add_pipe("flywheel_lowercase_lemmas")
    labels = {label for pipe in nlp.pipe_labels.values() for label in pipe}
    return _SpacyEngine(nlp, model, NerModelConfiguration(model_to_presidio_entity_mapping=_NER_LABELS,
                                                          labels_to_ignore=sorted(labels - set(_NER_LABELS))))


@dataclass(frozen=True)
class Settings:
    """What the recognizers are configured with."""

    #: The spaCy pipeline that finds person names and places (``FLYWHEEL_PII_NER_MODEL``), if any.
    ner_model: str | None = None
    #: The regions whose national phone formats are recognized (``FLYWHEEL_PII_PHONE_REGIONS``).
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS


@functools.cache
def settings() -> Settings:
    """The settings from the environment, read once (``settings.cache_clear()`` reads them again)."""
    value = os.environ.get(PHONE_REGIONS_VARIABLE, "")
    regions = tuple(r.strip().upper() for r in value.split(",") if r.strip()) or DEFAULT_PHONE_REGIONS
    unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ValueError(f"{PHONE_REGIONS_VARIABLE}: {', '.join(unknown)} not a region phonenumbers knows "
                         f"(two-letter codes such as US, GB, DE)")
    return Settings(os.environ.get(NER_MODEL_VARIABLE, "").strip() or None, regions)


@functools.lru_cache(maxsize=4)
def _analyzer(model: str | None, regions: tuple[str, ...]) -> AnalyzerEngine:
    recognizers = [_CardRecognizer(), IbanRecognizer(), _SsnRecognizer(), _IpRecognizer(), _EmailRecognizer(),
                   _PhoneRecognizer(regions)]
    if model:
        engine = _ner_engine(model)
        recognizers.append(SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]))
    else:
        engine = _tokenizer_engine()
        log.warning("PII scrubbing finds no person names or postal addresses: no NER model is configured "
                    "(set %s to an installed spaCy pipeline)", NER_MODEL_VARIABLE)
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[LANGUAGE])


@functools.lru_cache(maxsize=4)
def _no_tokens(engine: _SpacyEngine) -> NlpArtifacts:
    return NlpArtifacts(entities=[], tokens=Doc(engine.nlp[LANGUAGE].vocab, words=[]), tokens_indices=[], lemmas=[],
                        nlp_engine=engine, language=LANGUAGE, scores=[])


#: What a text must hold for each entity's recognizer to find anything in it (a quick pre-filter).
_CANDIDATES = {
    "CREDIT_CARD": re.compile(r"\d(?:[ -]?\d){12}"),
    "IBAN_CODE": re.compile(r"[A-Z]{2}\d\d"),
    "US_SSN": re.compile(r"\d{3}[ .-]?\d\d[ .-]?\d{4}"),
    "IP_ADDRESS": re.compile(r"\d\.\d{1,3}\.\d|::|[0-9A-Fa-f]:[0-9A-Fa-f]"),
    "EMAIL_ADDRESS": re.compile("@"),
    "PHONE_NUMBER": _PHONE_CANDIDATE,
}


@functools.lru_cache(maxsize=8)
def _analysis(text: str, model: str | None, regions: tuple[str, ...]) -> dict[str, tuple[tuple[int, int], ...]]:
    """The spans of each entity found in ``text``, the longest first where two overlap."""
    analyzer = _analyzer(model, regions)
    entities = [entity for entity, candidate in _CANDIDATES.items() if candidate.search(text)]
    if model:
        results = analyzer.analyze(text, LANGUAGE, [*entities, "PERSON", "LOCATION"], score_threshold=THRESHOLD)
    elif not entities:
        return {}
    else:
        results = analyzer.analyze(text, LANGUAGE, entities, score_threshold=0.0,
                                   nlp_artifacts=_no_tokens(analyzer.nlp_engine))
        if any(r.score < THRESHOLD for r in results):  # a weak match: its context words may raise it
            results = analyzer.analyze(text, LANGUAGE, entities, score_threshold=0.0)
        results = [r for r in results if r.score >= THRESHOLD]
    spans: dict[str, list[tuple[int, int]]] = {}
    for r in sorted(results, key=lambda r: (r.start - r.end, r.start)):
        spans.setdefault(r.entity_type, []).append((r.start, r.end))
    return {entity: tuple(found) for entity, found in spans.items()}


def spans(entity: str, text: str) -> tuple[tuple[int, int], ...]:
    """Where Presidio's ``entity`` (``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ...) occurs in ``text``
    (analyzed once for all entities: the scrubber asks about each entity in turn)."""
    found = settings()
    return _analysis(text, found.ner_model, found.phone_regions).get(entity, ())
