"""Dial plans (b2bua.numbers.dialplan): VOS3000 rewrite rules ``ORIGINAL:TARGET``."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.numbers.dialplan import (
    MAX_PLAN_CHARS,
    MAX_RULES,
    DialPlan,
    DialPlanError,
    LengthCondition,
    cached_plan,
)

DIGITS = "0123456789"


def rewrite(plan: str, number: str, seed: int = 0) -> str:
    return DialPlan.parse(plan).apply(number, random.Random(seed))


# --- the examples -------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "number", "expected"),
    [
        ("*:a*", "13800138000", "a13800138000"),  # prepend a technical prefix
        ("*:a", "13800138000", "a13800138000"),  # no '*' in TARGET: the rest is appended
        ("0086:", "008613800138000", "13800138000"),  # strip
        ("0086*:", "008613800138000", "13800138000"),  # a trailing '*' matches the same
        ("0134:$$$", "0134131", "013131"),  # VOS3000 manual: drop the 4th digit
        ("0:0086*", "013800138000", "008613800138000"),  # replace the prefix
        ("9001:", "900113800138000", "13800138000"),  # strip a routing technical prefix
        ("*:", "123", "123"),  # empty TARGET on '*': the rest is the whole number
    ],
)
def test_examples(plan: str, number: str, expected: str) -> None:
    assert rewrite(plan, number) == expected


def test_empty_plan_has_no_rules() -> None:
    for text in ("", "   ", "\t\n"):
        plan = DialPlan.parse(text)
        assert len(plan) == 0
        assert str(plan) == ""
        assert plan.apply("0086123") == "0086123"
        assert not plan.matches("0086123")


def test_whitespace_around_rules_is_tolerated() -> None:
    plan = DialPlan.parse("  0086: , *:a*\n")
    assert str(plan) == "0086:,*:a*"
    assert plan.apply("0086123") == "123"


# --- matching -------------------------------------------------------------------------


def test_longest_prefix_wins_whatever_the_order() -> None:
    for text in ("0:A*,00:B*,0086:C*", "0086:C*,0:A*,00:B*", "*:D*,0086:C*,00:B*"):
        plan = DialPlan.parse(text)
        assert plan.apply("0086123") == "C123"
        assert plan.apply("0012") == "B12"
    assert rewrite("0:A*,00:B*", "0123") == "A123"
    assert rewrite("*:D*,0:A*", "5") == "D5"


def test_rules_are_not_chained() -> None:
    # 0086 -> 0 would match "0:" next if rules were chained; they are not.
    plan = DialPlan.parse("0086:0,0:99")
    assert plan.apply("0086123") == "0123"
    assert plan.apply("0123") == "99123"


def test_no_matching_rule_leaves_the_number_unchanged() -> None:
    plan = DialPlan.parse("0086:,1:2")
    assert plan.apply("44123") == "44123"
    assert plan.apply("") == ""
    assert plan.apply("008") == "008"  # shorter than the prefix
    assert not plan.matches("44123")
    assert plan.matches("0086")
    assert plan.apply("0086") == ""


def test_matching_is_case_sensitive_for_letters() -> None:
    plan = DialPlan.parse("a:")
    assert plan.apply("a123") == "123"
    assert plan.apply("A123") == "A123"


def test_rule_for_reports_the_winning_rule() -> None:
    plan = DialPlan.parse("0:x,00:y")
    rule = plan.rule_for("001")
    assert rule is not None and str(rule) == "00:y"
    assert plan.rule_for("1") is None


# --- TARGET: $, ?, * --------------------------------------------------------------------


def test_dollar_copies_the_digit_at_its_own_index_in_target() -> None:
    # '$' at TARGET index i copies number[i], whatever precedes it in TARGET.
    assert rewrite("0134:$$$", "0134131") == "013131"
    assert rewrite("0134:x$$", "0134131") == "x13131"  # indexes 1, 2
    assert rewrite("0134:$x$*", "0134131") == "0x3131"  # indexes 0, 2
    assert rewrite("0134:*$", "0134131") == "1311"  # index 1 after the rest
    assert rewrite("12:$$", "123") == "123"  # keeps the prefix: $$ then the rest "3"


def test_dollar_past_the_end_of_the_number_copies_nothing() -> None:
    assert rewrite("1:$$$$$$", "12") == "122"  # "12" + nothing x4 + the rest "2"
    assert rewrite("*:$$$$*", "9") == "99"
    assert rewrite("*:$$$$", "") == ""


def test_question_mark_is_a_random_digit() -> None:
    plan = DialPlan.parse("*:???*")
    first = plan.apply("5551234", random.Random(7))
    assert first == plan.apply("5551234", random.Random(7))  # seeded: reproducible
    assert len(first) == 10 and first.endswith("5551234")
    assert all(ch in DIGITS for ch in first[:3])


def test_question_mark_covers_all_ten_digits() -> None:
    plan = DialPlan.parse("0:?")
    rng = random.Random(1234)
    seen = {plan.apply("0", rng) for _ in range(1000)}
    assert seen == set(DIGITS)  # P(a digit missing in 1000 draws) < 10 * 0.9**1000


def test_question_mark_without_rng_uses_the_default() -> None:
    out = DialPlan.parse("*:?*").apply("123")
    assert len(out) == 4 and out[0] in DIGITS and out[1:] == "123"


def test_star_in_the_middle_of_target() -> None:
    assert rewrite("9:a*b", "9123") == "a123b"
    assert rewrite("00:+*#", "0044207") == "+44207#"
    assert rewrite("0134:$$*$", "0134131") == "011314"  # '$' at index 3 copies "4"


def test_star_in_target_is_the_rest_after_the_prefix_even_if_original_has_no_star() -> None:
    assert rewrite("0086:0*", "0086755") == "0755"
    assert rewrite("0086*:0*", "0086755") == "0755"


# --- length conditions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "number", "applies"),
    [
        ("{L11}", "1380013800", True),  # 10 < 11
        ("{L11}", "13800138000", False),
        ("{E11}", "13800138000", True),
        ("{E11}", "1380013800", False),
        ("{E11}", "138001380000", False),
        ("{G11}", "138001380000", True),  # 12 > 11
        ("{G11}", "13800138000", False),
        ("{F11}", "1380013800", True),
        ("{F11}", "138001380000", True),
        ("{F11}", "13800138000", False),
    ],
)
def test_length_conditions(condition: str, number: str, applies: bool) -> None:
    plan = DialPlan.parse(f"1{condition}:x*")
    assert plan.matches(number) is applies
    assert plan.apply(number) == ("x" + number[1:] if applies else number)


def test_length_conditions_with_star_and_combined() -> None:
    plan = DialPlan.parse("*{G6}{L9}:+*")  # 7 or 8 characters
    assert [plan.apply(n) for n in ("123456", "1234567", "12345678", "123456789")] == [
        "123456", "+1234567", "+12345678", "123456789"]


def test_length_counts_the_whole_number_not_the_rest() -> None:
    plan = DialPlan.parse("0086{E15}:")
    assert plan.apply("008613800138000") == "13800138000"  # 15 characters in all
    assert plan.apply("00861380013800") == "00861380013800"


def test_failed_condition_falls_back_to_a_shorter_prefix() -> None:
    plan = DialPlan.parse("0086{E15}:,00:+")
    assert plan.apply("008613800138000") == "13800138000"
    assert plan.apply("00861380013800") == "+861380013800"


def test_same_prefix_first_listed_rule_whose_condition_holds_wins() -> None:
    plan = DialPlan.parse("1{G5}:a*,1{L15}:b*")
    assert plan.apply("1234567") == "a234567"  # both G5 and L15 hold: the first wins
    assert plan.apply("1234") == "b234"  # only L15
    assert plan.apply("1234567890123456") == "a234567890123456"
    reordered = DialPlan.parse("1{L15}:b*,1{G5}:a*")
    assert reordered.apply("1234567") == "b234567"
    assert reordered.apply("1234567890123456") == "a234567890123456"
    assert DialPlan.parse("1{E3}:a*,1:c*").apply("12345") == "c2345"


def test_length_condition_objects() -> None:
    assert str(LengthCondition("L", 11)) == "{L11}"
    assert LengthCondition("F", 3).holds(4) and not LengthCondition("F", 3).holds(3)


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("0086", 0, "no ':'"),
        ("0086:,  123", 8, "no ':'"),
        (":0086", 0, "empty ORIGINAL"),
        ("1:2, :3", 5, "empty ORIGINAL"),
        ("0*1:2", 1, "'*' is only allowed at the end"),
        ("**:2", 0, "'*' is only allowed at the end"),
        ("*1:2", 0, "'*' is only allowed at the end"),
        ("00-86:", 2, "character '-' is not allowed in ORIGINAL"),
        ("00 86:", 2, "character ' ' is not allowed in ORIGINAL"),
        ("1:2,0?:", 5, "character '?' is not allowed in ORIGINAL"),
        ("0$:", 1, "character '$' is not allowed in ORIGINAL"),
        ("0:a-b", 3, "character '-' is not allowed in TARGET"),
        ("0:1:2", 3, "character ':' is not allowed in TARGET"),
        ("0: 1", 2, "character ' ' is not allowed in TARGET"),
        ("0:**", 3, "only one '*'"),
        ("0086:,1:2,0086:3", 10, "duplicate ORIGINAL"),
        ("0086:,0086*:3", 6, "duplicate ORIGINAL"),
        ("1{E5}:,1{E5}:2", 7, "duplicate ORIGINAL"),
        ("1:,1{E5}:2", 3, "can never apply"),
        ("1{L9}:,1{E5}:2", 7, "can never apply"),
        ("1{G5}:a,1{L9}:b,1:c", 16, "can never apply"),  # the two cover every length
        ("a:b,,c:d", 4, "empty rule"),
        ("a:b,", 4, "empty rule"),
        ("0{X5}:", 2, "L, E, G or F"),
        ("0{e5}:", 2, "L, E, G or F"),
        ("0{}:", 2, "L, E, G or F"),
        ("0{E}:", 3, "needs a number"),
        ("0{E5:", 4, "not closed"),
        ("0{E5x}:", 4, "not closed"),
        ("0{E05}:", 3, "leading zero"),
        ("0{E100}:", 3, "over 99"),
        ("0{E5}{E5}:", 5, "repeated length condition"),
        ("0{E5}*:", 5, "'*' must come before the length conditions"),
        ("0{E5}1:", 5, "length conditions must come last"),
        ("0086{E3}:", 4, "can never hold"),
        ("0{L0}:", 1, "can never hold"),
        ("*{E5}{E6}:", 1, "can never hold"),
    ],
)
def test_invalid_plans_are_refused_with_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(DialPlanError) as caught:
        DialPlan.parse(text)
    assert caught.value.position == position
    assert words in caught.value.message
    assert str(caught.value).endswith(f"at position {position}")
    assert isinstance(caught.value, ValueError)


def test_too_long_plan_is_refused() -> None:
    text = "1:" + "2" * (MAX_PLAN_CHARS - 2)
    assert len(DialPlan.parse(text)) == 1
    with pytest.raises(DialPlanError) as caught:
        DialPlan.parse(text + "2")
    assert caught.value.position == MAX_PLAN_CHARS


def _unique_prefixes(count: int) -> list[str]:
    one = sorted("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#+")
    two = [a + b for a in one for b in one]
    return (one + two)[:count]


def test_too_many_rules_are_refused() -> None:
    rules = [f"{p}:" for p in _unique_prefixes(MAX_RULES + 1)]
    assert len(DialPlan.parse(",".join(rules[:MAX_RULES]))) == MAX_RULES
    text = ",".join(rules)
    assert len(text) <= MAX_PLAN_CHARS
    with pytest.raises(DialPlanError) as caught:
        DialPlan.parse(text)
    assert caught.value.position == text.rindex(",") + 1
    assert "more than 1000 rules" in caught.value.message


# --- canonical form ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["*:a*", "0086:", "0134:$$$", " 0086*:x", "1{G5}{L9}:?$*,*{F3}:+",
     "a:b, c:d ,e*:f"],
)
def test_str_round_trip(text: str) -> None:
    plan = DialPlan.parse(text)
    again = DialPlan.parse(str(plan))
    assert str(again) == str(plan)
    assert again == plan and hash(again) == hash(plan)
    assert str(plan) == ",".join(part.strip() for part in text.split(","))


def test_cached_plan_returns_the_same_object() -> None:
    assert cached_plan("0086:") is cached_plan("0086:")
    with pytest.raises(DialPlanError):
        cached_plan("0086")


# --- properties -----------------------------------------------------------------------

_prefixes = st.text(alphabet=DIGITS, min_size=1, max_size=5)
_targets = st.text(alphabet=list("0123456789ab#+$?"), max_size=6).flatmap(
    lambda t: st.sampled_from([t, t + "*", "*" + t])
)
_conditions = st.sampled_from(["", "{L8}", "{E6}", "{G5}", "{F7}", "{G3}{L12}"])


@st.composite
def plans(draw: st.DrawFn) -> DialPlan:
    prefixes = draw(st.lists(_prefixes, max_size=8, unique=True))
    rules = [
        f"{p}{draw(st.sampled_from(['', '*']))}{draw(_conditions)}:{draw(_targets)}"
        for p in prefixes
    ]
    return DialPlan.parse(",".join(rules))


@settings(max_examples=300, deadline=None)
@given(plans(), st.text(alphabet=DIGITS, max_size=20))
def test_a_number_matching_no_rule_prefix_is_unchanged(plan: DialPlan, number: str) -> None:
    if any(number.startswith(rule.prefix) for rule in plan.rules):
        number = "x" + number  # no prefix above starts with "x"
    assert not plan.matches(number)
    assert plan.apply(number, random.Random(0)) == number


@settings(max_examples=300, deadline=None)
@given(plans(), st.text(alphabet=DIGITS, max_size=30), st.integers(0, 2**32))
def test_apply_never_raises_and_agrees_with_matches(
    plan: DialPlan, number: str, seed: int
) -> None:
    out = plan.apply(number, random.Random(seed))
    assert isinstance(out, str)
    if not plan.matches(number):
        assert out == number


@settings(max_examples=200, deadline=None)
@given(plans())
def test_canonical_form_is_a_fixed_point(plan: DialPlan) -> None:
    assert DialPlan.parse(str(plan)) == plan
    assert str(DialPlan.parse(str(plan))) == str(plan)


@settings(max_examples=200, deadline=None)
@given(st.lists(_prefixes, min_size=1, max_size=8, unique=True),
       st.text(alphabet=DIGITS, max_size=20))
def test_the_longest_matching_prefix_wins(prefixes: list[str], number: str) -> None:
    plan = DialPlan.parse(",".join(f"{p}:a{i}b" for i, p in enumerate(prefixes)))
    matching = [p for p in prefixes if number.startswith(p)]
    if not matching:
        assert plan.apply(number) == number
        return
    best = max(matching, key=len)
    index = prefixes.index(best)
    assert plan.apply(number) == f"a{index}b" + number[len(best):]
