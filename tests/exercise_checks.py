"""Shared assertions for the tests of `labkit.course.exercises`: a wrong answer's message must not reveal the answer.

`assert_hidden(message, expected)` fails if the message contains the expected answer written in any of the
usual ways:

* a number x as ``f"{x:.{n}g}"`` and ``f"{x:.{n}f}"`` for n = 2..6, ``str(x)``, ``repr(x)``, ``str(int(x))`` when
  it is whole, and as a percentage (``f"{x:.0%}"``, ``f"{x:.1%}"``);
* a list, set, tuple or array: each element that way, and the whole collection as ``str``/``repr``/sorted list;
* text (a kind, a loss name): the whole word, case-insensitive.

A form is searched as a whole number (``0.025`` does not match inside ``0.0253`` or ``10.025``). What a
message may legitimately contain is left out of the search first:

* the learner's own answer, written in the same ways (echoing it reveals nothing);
* for text answers, words of the exercise's statement (its "not answered yet" message): "easy" and "hard"
  are the vocabulary of every triplet hint, whatever the answer.

Numbers that occur trivially in any message get a sensible rule instead of a plain search:

* forms with a single significant digit ("3", "0.5", "0.03", "-2") are not searched for: they occur in any
  message ("3 columns", "margin 0.5", "row 0"), and a single digit cannot give away an answer checked to four;
* but when the answer is an index or a set of indices (small whole numbers by nature), each lone digit of it
  is searched in revealing contexts: after a noun that names an item ("point 4", "pair 2", "anchor 3",
  "index 1", "is 2") or inside a bracketed list ("[1, 2]", "(0, 3)"), unless the exercise's statement has
  the same context (the hint of exercise 1 of notebook 05 says "anchor 2", the question's anchor).
"""
from __future__ import annotations

import math
import re

import numpy as np

ITEM_NOUNS = r"(?:points?|pairs?|anchors?|candidates?|index|indices|items?|answer|expected|is|are|be|equals?|got)"


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


def _significant_digits(text: str) -> int:
    """Digits from the first non-zero one on (trailing zeros count): "0.50" -> 2, "3" -> 1, "0.03" -> 1."""
    return len(re.sub(r"[^0-9]", "", text.split("e")[0]).lstrip("0"))


def number_forms(x) -> set[str]:
    """Every usual way of writing the number x."""
    if isinstance(x, (bool, np.bool_)):
        return {str(bool(x))}
    x = float(x)
    if not math.isfinite(x):
        return {str(x)}
    forms = {str(x), repr(x), f"{x:.0%}", f"{x:.1%}"}
    forms |= {f"{x:.{n}g}" for n in range(2, 7)} | {f"{x:.{n}f}" for n in range(2, 7)}
    if x.is_integer():
        forms.add(str(int(x)))
    return forms


def _flatten(value) -> list:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.reshape(-1).tolist()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [item for element in value for item in _flatten(element)]
    return [value]


def _collection_forms(value) -> set[str]:
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        return {str(items), repr(items), str(tuple(items)), ", ".join(map(str, items))} - {"", "[]", "()"}
    return set()


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _found(form: str, text: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(form)}(?!\d)", text) is not None


def _without_echo(message: str, given) -> str:
    if given is None or given is Ellipsis:
        return message
    forms = set(_collection_forms(given)) | {str(given), repr(given)}
    for element in _flatten(given):
        forms |= number_forms(element) if _is_number(element) else {str(element)}
    for form in sorted(forms, key=len, reverse=True):
        if form:
            message = re.sub(rf"(?<![\d.\w]){re.escape(form)}(?![\d\w]|\.\d)", " ", message)
    return message


def _lone_digit_contexts(text: str, digit: str) -> list[str]:
    d = re.escape(digit)
    found = re.findall(rf"\b{ITEM_NOUNS}\s+#?{d}(?![\w.])", text, flags=re.IGNORECASE)
    found += re.findall(rf"[\[(][^\[\]()]*(?<![\w.]){d}(?![\w.])[^\[\]()]*[\])]", text)
    return found


def assert_hidden(message: str, expected, given=None, statement: str = "", index: bool = False) -> None:
    """Fail if `message` contains the expected answer written in one of the usual ways (see the module doc).

    given: the learner's answer that produced the message (its echo is allowed). statement: the exercise's
    "not answered yet" message. index: the answer is an index or a set of indices (the lone-digit rule).
    """
    text = _without_echo(message, given)
    for form in _collection_forms(expected):
        assert form not in text, f"the message shows the whole answer {form!r}: {message!r}"
    elements = _flatten(expected)
    for element in elements:
        if _is_number(element):
            for form in number_forms(element):
                if _significant_digits(form) >= 2 and float(form.rstrip("%")) != 0:
                    assert not _found(form, text), f"the message shows the answer's {form!r}: {message!r}"
            if index and float(element).is_integer() and abs(element) < 10:
                digit = str(int(element))
                allowed = set(_lone_digit_contexts(statement, digit))
                leaks = [c for c in _lone_digit_contexts(text, digit) if c not in allowed]
                assert not leaks, f"the message points at the answer's item {digit} ({leaks}): {message!r}"
        else:
            word = str(element)
            if re.search(rf"\b{re.escape(word)}\b", statement, flags=re.IGNORECASE):
                continue  # the statement's own vocabulary ("easy", "hard")
            assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE), \
                f"the message names the answer's {word!r}: {message!r}"


def assert_reveals(message: str, expected) -> None:
    """The solution printed by reveal=True shows every part of the expected answer."""
    assert "Solution" in message, message
    for element in _flatten(expected):
        if _is_number(element):
            forms = number_forms(element) | {str(round(float(element), 4)), f"{float(element):.4g}"}
            if float(element).is_integer():
                forms |= {f"{float(element):.1f}", f"{int(element)}."}
            assert any(_found(form, message) for form in forms), (element, message)
        else:
            assert str(element) in message, (element, message)


def assert_right(capsys, check, answer, words: str = "Right", **inputs) -> str:
    ok, out = outcome(capsys, check(answer, **inputs))
    assert ok and out.startswith("✅") and words in out, (answer, words, out)
    return out


def statement_of(capsys, check, **inputs) -> str:
    """The exercise's "not answered yet" message (its statement: a hint and the pointer to reveal=True)."""
    ok, out = outcome(capsys, check(None, **inputs))
    assert not ok and "Not answered yet" in out and "reveal=True" in out, out
    return out


def assert_wrong(capsys, check, answer, words: str, expected, index: bool = False, **inputs) -> str:
    """A wrong answer is refused with `words` in its message, the pointer to reveal=True, and no answer shown."""
    ok, out = outcome(capsys, check(answer, **inputs))
    assert not ok and out.startswith("❌") and words in out, (answer, words, out)
    assert "reveal=True" in out and "Solution" not in out, out
    assert_hidden(out, expected, given=answer, statement=statement_of(capsys, check, **inputs), index=index)
    return out


def assert_stub_and_reveal(capsys, check, expected, index: bool = False, **inputs) -> None:
    """None and ... say "not answered yet" and show nothing; reveal=True prints the solution."""
    for stub in (None, ...):
        ok, out = outcome(capsys, check(stub, **inputs))
        assert not ok and out.startswith("✏️") and "Not answered yet" in out and "reveal=True" in out, out
        assert_hidden(out, expected, statement=out, index=index)  # the statement itself: numbers are searched
    for stub in (None, ...):
        ok, out = outcome(capsys, check(stub, reveal=True, **inputs))
        assert not ok and "Not answered yet" not in out
        assert_reveals(out, expected)
