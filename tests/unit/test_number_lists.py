"""Number transform table and black/white lists (b2bua.numbers.transform, .lists)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.numbers import (
    GroupRule,
    NumberGroups,
    PrefixRule,
    TransformEntry,
    TransformTable,
    is_valid_number,
    parse_list,
    parse_numbers,
)

# --- transform table ------------------------------------------------------------------


def test_transform_replaces_exact_matches_only() -> None:
    table = TransformTable([("5551234", "862150001234", "main DID"), ("100", "200", "")])
    assert table.apply("5551234") == "862150001234"
    assert table.apply("55512345") == "55512345"  # not a prefix match
    assert table.apply("555123") == "555123"
    assert table.apply("") == ""
    assert len(table) == 2


def test_transform_is_one_lookup_never_chained() -> None:
    table = TransformTable([("1", "2", ""), ("2", "3", "")])
    assert table.apply("1") == "2"
    assert table.apply("2") == "3"


def test_transform_lookup_keeps_the_memo() -> None:
    table = TransformTable([TransformEntry("100", "200", "front desk")])
    entry = table.lookup("100")
    assert entry == TransformEntry("100", "200", "front desk")
    assert table.lookup("101") is None
    assert dict(table.entries) == {"100": entry}
    with pytest.raises(TypeError):
        table.entries["300"] = entry  # type: ignore[index]


def test_empty_transform_table() -> None:
    assert TransformTable().apply("123") == "123"


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([("100", "200", ""), ("100", "300", "")], "twice"),
        ([("", "200", "")], "invalid number"),
        ([("100", "", "")], "invalid number"),
        ([("10 0", "200", "")], "invalid number"),
    ],
)
def test_bad_transform_rows_are_refused(rows: list[tuple[str, str, str]], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TransformTable(rows)


def test_big_transform_table() -> None:
    table = TransformTable((str(10**9 + i), str(i), "") for i in range(100_000))
    assert table.apply(str(10**9 + 99_999)) == "99999"
    assert table.apply("1") == "1"


# --- number groups --------------------------------------------------------------------


def test_groups_membership_is_exact() -> None:
    groups = NumberGroups({"fraud": ["8613800138000", "4420"], "vip": ["100"]})
    assert groups.contains(("fraud",), "4420")
    assert not groups.contains(("fraud",), "44201")  # no prefix match
    assert not groups.contains(("fraud",), "442")
    assert groups.contains(("vip", "fraud"), "100")
    assert not groups.contains((), "100")
    assert not groups.contains(("missing",), "100")  # unknown group: empty
    assert groups.first_containing(["vip", "fraud"], "4420") == "fraud"
    assert groups.numbers("missing") == frozenset()
    assert set(groups.names) == {"fraud", "vip"} and len(groups) == 2


def test_groups_from_rows_and_with_group() -> None:
    groups = NumberGroups.from_rows([("a", "1"), ("a", "2"), ("b", "3"), ("a", "1")])
    assert groups.numbers("a") == {"1", "2"}
    replaced = groups.with_group("a", ["9"]).with_group("c", ["7"])
    assert replaced.numbers("a") == {"9"} and replaced.numbers("c") == {"7"}
    assert replaced.numbers("b") is groups.numbers("b")  # shared, not copied
    assert groups.numbers("a") == {"1", "2"}  # the original is unchanged


def test_group_of_100k_numbers() -> None:
    numbers = [f"86138{i:08d}" for i in range(100_000)]
    groups = NumberGroups({"blocked": numbers})
    assert len(groups.numbers("blocked")) == 100_000
    assert all(groups.contains(("blocked",), n) for n in numbers[::997])
    assert not groups.contains(("blocked",), "8613900000000")
    deny = GroupRule(("blocked",), "deny")
    assert not deny.permits(numbers[-1], groups)
    assert deny.permits("8613900000000", groups)
    hits = sum(groups.contains(("blocked",), f"86138{i:08d}") for i in range(0, 200_000, 7))
    assert hits == len(range(0, 100_000, 7))


# --- group rules ----------------------------------------------------------------------

GROUPS = NumberGroups({"fraud": ["666", "667"], "vip": ["100"], "gold": ["200"], "empty": []})


def test_no_groups_means_no_restriction_in_either_mode() -> None:
    for mode in ("allow", "deny"):
        rule = GroupRule((), mode)
        assert rule.permits("666", GROUPS)
        assert rule.refusal("666", GROUPS, "caller") is None
    assert GroupRule().permits("1", NumberGroups())


def test_allow_groups_admit_only_their_members() -> None:
    rule = GroupRule(("vip", "gold"), "allow")
    assert rule.permits("100", GROUPS) and rule.permits("200", GROUPS)
    assert not rule.permits("300", GROUPS)
    assert rule.refusal("300", GROUPS, "caller") == 'caller not in allow groups "vip", "gold"'
    single = GroupRule(("vip",), "allow")
    assert single.refusal("300", GROUPS, "callee") == 'callee not in allow group "vip"'


def test_allow_with_only_unknown_or_empty_groups_fails_closed() -> None:
    assert not GroupRule(("nope",), "allow").permits("100", GROUPS)
    assert not GroupRule(("empty",), "allow").permits("100", GROUPS)


def test_deny_groups_refuse_their_members() -> None:
    rule = GroupRule(("vip", "fraud"), "deny")
    assert not rule.permits("666", GROUPS)
    assert rule.refusal("666", GROUPS, "caller") == 'caller in deny group "fraud"'
    assert rule.refusal("100", GROUPS, "callee") == 'callee in deny group "vip"'
    assert rule.permits("300", GROUPS)
    assert GroupRule(("nope",), "deny").permits("666", GROUPS)


def test_bad_group_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="allow"):
        GroupRule(("a",), "block")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty group name"):
        GroupRule(("a", ""), "deny")


# --- prefix rules ---------------------------------------------------------------------


def test_empty_prefix_rule_allows_everything() -> None:
    rule = PrefixRule()
    assert rule.permits("") and rule.permits("900123")
    assert rule.refusal("900123") is None


def test_allow_prefixes() -> None:
    rule = PrefixRule(allow=("86", "44"))
    assert rule.permits("8613800") and rule.permits("44207")
    assert not rule.permits("1212")
    assert not rule.permits("8")  # shorter than every prefix
    assert rule.refusal("1212") == "callee matches no allowed prefix"
    assert rule.refusal("1212", "caller") == "caller matches no allowed prefix"


def test_deny_prefixes() -> None:
    rule = PrefixRule(deny=("900", "1900"))
    assert not rule.permits("900123")
    assert rule.permits("9001") is False
    assert rule.permits("90") and rule.permits("8613800")
    assert rule.refusal("1900555") == 'callee prefix "1900" denied'


def test_deny_wins_over_a_longer_allow() -> None:
    rule = PrefixRule(allow=("86", "8613800"), deny=("861",))
    assert not rule.permits("8613800138000")  # allow 8613800 is longer, deny still wins
    assert rule.refusal("8613800138000") == 'callee prefix "861" denied'
    assert rule.permits("8620")


def test_deny_names_the_longest_denied_prefix() -> None:
    rule = PrefixRule(deny=("9", "900"))
    assert rule.refusal("9001") == 'callee prefix "900" denied'
    assert rule.refusal("91") == 'callee prefix "9" denied'


def test_bad_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        PrefixRule(allow=("",))
    with pytest.raises(ValueError, match="invalid prefix"):
        PrefixRule(deny=("9 0",))


@given(
    st.lists(st.text("0123", min_size=1, max_size=3), max_size=5),
    st.lists(st.text("0123", min_size=1, max_size=3), max_size=5),
    st.text("0123", max_size=6),
)
def test_prefix_rule_matches_the_definition(allow: list[str], deny: list[str], number: str) -> None:
    rule = PrefixRule(tuple(allow), tuple(deny))
    expected = not any(number.startswith(p) for p in deny) and (
        not allow or any(number.startswith(p) for p in allow)
    )
    assert rule.permits(number) is expected


# --- parsing helpers ------------------------------------------------------------------


def test_parse_numbers_bulk_import() -> None:
    body = "100, 200\n300;400\t100\n\n"
    assert parse_numbers(body) == ("100", "200", "300", "400")
    assert parse_numbers("") == ()
    big = "\n".join(str(10**10 + i) for i in range(20_000))
    assert len(parse_numbers(big)) == 20_000
    with pytest.raises(ValueError, match="entry 3"):
        parse_numbers("100,200,12-34,400")
    with pytest.raises(ValueError, match="entry 1"):
        parse_numbers("x" * 65)


def test_parse_list_and_number_validity() -> None:
    assert parse_list(" fraud , vip,,") == ("fraud", "vip")
    assert parse_list("") == ()
    assert is_valid_number("+8613800#") and is_valid_number("*67")
    assert not is_valid_number("") and not is_valid_number("12 3")
    assert not is_valid_number("1" * 65) and is_valid_number("1" * 64)
    assert not is_valid_number("١٢٣")  # non-ASCII digits
