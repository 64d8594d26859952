"""Slots: intent values -> placeholders -> back into the generated code."""

from __future__ import annotations

import keyword
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nl2code.slots import MAX_SLOTS, canonicalize, canonicalize_pair, placeholders_in, restore


def test_backtick_becomes_var_placeholder():
    canon, slots = canonicalize("sort list `xs` in descending order")
    assert canon == "sort list var_0 in descending order"
    assert [(s.placeholder, s.value, s.kind) for s in slots] == [("var_0", "xs", "var")]


@pytest.mark.parametrize("quote", ["'", '"'])
def test_quotes_become_str_placeholder(quote):
    canon, slots = canonicalize(f"read csv file {quote}data.csv{quote} into a dataframe")
    assert canon == "read csv file str_0 into a dataframe"
    assert slots[0].value == "data.csv" and slots[0].kind == "str" and slots[0].quote == quote


@pytest.mark.parametrize("intent", [
    "get the user's name",
    "it's Bob's dog",
    "get users' names from the list",
    "don't split the line",
])
def test_apostrophes_are_not_quotes(intent):
    canon, slots = canonicalize(intent)
    assert canon == intent
    assert slots == []


def test_apostrophe_next_to_real_quotes():
    canon, slots = canonicalize("get the user's 'name' field from `d`, it's a dict")
    assert canon == "get the user's str_0 field from var_0, it's a dict"
    assert {s.placeholder: s.value for s in slots} == {"str_0": "name", "var_0": "d"}


def test_same_value_same_placeholder():
    canon, slots = canonicalize("add `x` to `x` and 'a' to 'a'")
    assert canon == "add var_0 to var_0 and str_0 to str_0"
    assert len(slots) == 2


def test_canonicalize_pair_and_restore_round_trip():
    intent = "read csv file 'data.csv' into dataframe `df`"
    code = "df = pd.read_csv('data.csv')"
    canon, canon_code, slots = canonicalize_pair(intent, code)
    assert canon == "read csv file str_0 into dataframe var_0"
    assert canon_code == "var_0 = pd.read_csv('str_0')"
    assert restore(canon_code, slots) == code


def test_backticked_code_values_replaced_in_target():
    intent = "sum the elements of `[1, 2, 3]`"
    canon, canon_code, slots = canonicalize_pair(intent, "sum([1, 2, 3])")
    assert canon_code == "sum(var_0)"
    assert restore(canon_code, slots) == "sum([1, 2, 3])"


def test_attribute_not_replaced():
    _, canon_code, slots = canonicalize_pair("add `x` to self", "self.x = x")
    assert canon_code == "self.x = var_0"
    assert restore(canon_code, slots) == "self.x = x"


def test_var_1_and_var_10_boundaries():
    intent = " ".join(f"`v{i}`" for i in range(MAX_SLOTS))
    canon, slots = canonicalize(intent)
    assert len(slots) == MAX_SLOTS
    # var_10 is no slot (only var_0..var_9 exist): it must not be read as var_1 + "0"
    assert restore("var_1 + var_10 + var_0", slots) == "v1 + var_10 + v0"
    assert restore("var_1(var_1)", slots) == "v1(v1)"
    assert restore("xvar_1 var_1x", slots) == "xvar_1 var_1x"


def test_more_than_max_slots_left_as_text():
    intent = " ".join(f"`v{i}`" for i in range(MAX_SLOTS + 2))
    canon, slots = canonicalize(intent)
    assert len(slots) == MAX_SLOTS
    assert canon.endswith("var_9 `v10` `v11`")
    code = " + ".join(f"v{i}" for i in range(MAX_SLOTS + 2))
    _, canon_code, slots = canonicalize_pair(intent, code)
    assert "v10" in canon_code and "v11" in canon_code
    assert restore(canon_code, slots) == code


def test_punctuation_value_only_replaced_as_whole_literal():
    intent = "split string `s` on ','"
    code = "print(a, b); s.split(',')"
    canon, canon_code, slots = canonicalize_pair(intent, code)
    assert canon == "split string var_0 on str_0"
    assert canon_code == "print(a, b); var_0.split('str_0')"
    assert restore(canon_code, slots) == code


def test_bash_file_names_not_quoted():
    canon, canon_code, slots = canonicalize_pair("count lines in file 'log.txt'", "wc -l log.txt")
    assert canon_code == "wc -l str_0"
    assert restore(canon_code, slots, "bash") == "wc -l log.txt"


def test_python_bare_non_identifier_str_slot_gets_quoted():
    _, slots = canonicalize("open file 'a.csv'")
    assert restore("open(str_0)", slots, "python") == "open('a.csv')"
    assert restore("open('str_0')", slots, "python") == "open('a.csv')"  # already in a string
    assert restore('open("x/" + "str_0")', slots, "python") == 'open("x/" + "a.csv")'


def test_python_bare_str_slot_with_quote_inside_uses_other_quote():
    _, slots = canonicalize('print "it\'s here"')
    assert slots[0].value == "it's here"
    assert restore("print(str_0)", slots) == 'print("it\'s here")'


def test_python_identifier_or_number_str_slot_left_bare():
    _, slots = canonicalize("set 'name' to '42'")
    assert restore("str_0 = str_1", slots) == "name = 42"


def test_unknown_placeholder_left_alone():
    _, slots = canonicalize("sort `xs`")
    assert restore("sorted(var_0, key=var_3)", slots) == "sorted(xs, key=var_3)"
    assert placeholders_in("var_0 + str_2 + var_x") == {"var_0", "str_2"}


def test_empty_quotes_and_backticks_ignored():
    canon, slots = canonicalize("join with '' and `` please")
    assert slots == []
    assert canon == "join with '' and `` please"


# --- property: restore(canonicalize_pair(i, c)[1], slots) == c -------------------------

_PH = re.compile(r"(?:var|str)_\d+")
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and not _PH.search(s) and s not in ("do", "something", "with", "and")
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    names=st.lists(identifiers, min_size=1, max_size=6, unique=True),
    extra=st.lists(identifiers, max_size=4),
    quoted=st.lists(st.booleans(), min_size=6, max_size=6),
    order=st.lists(st.integers(0, 9), min_size=1, max_size=12),
    ops=st.lists(st.sampled_from([" + ", ".", "(", ")", ", ", "[", "]", " = ", "\n    ", "'", '"', " ", "_"]),
                 min_size=12, max_size=12),
)
def test_restore_inverts_canonicalize_pair(names, extra, quoted, order, ops):
    parts = [f"'{n}'" if q else f"`{n}`" for n, q in zip(names, quoted)]
    intent = "do something with " + " and ".join(parts)
    pool = names + extra
    code = "".join(pool[i % len(pool)] + op for i, op in zip(order, ops))
    canon, canon_code, slots = canonicalize_pair(intent, code)
    assert not any(n in canon.split() for n in names)  # every name became a placeholder
    assert restore(canon_code, slots, "bash") == code
    assert restore(canon_code, slots, "python") == code
