"""Unified social credit codes (GB 32100-2015): the check character, normalisation, the
vectorised check, and the contract rule that reports bad codes."""

import numpy as np
import pandas as pd
import pytest

from lgml import credit_code as cc, validate as v
from lgml.firm_names import MARK, synthetic_identities

# Published examples of real-format codes (check characters computed by their issuers).
KNOWN = ("91350100M000100Y43", "91110000600037341L")


def made(n: int = 20, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [cc.with_check("91" + "".join(cc.ALPHABET[i] for i in rng.integers(0, 31, 15))) for i in range(n)]


@pytest.mark.parametrize("code", KNOWN)
def test_known_codes_are_valid(code):
    assert cc.is_valid(code) and cc.check_char(code[:-1]) == code[-1]


def test_every_corruption_of_one_character_is_caught():
    code = KNOWN[0]
    for pos in range(cc.LENGTH):
        for ch in cc.ALPHABET:
            if ch != code[pos]:
                assert not cc.is_valid(code[:pos] + ch + code[pos + 1:]), (pos, ch)


@pytest.mark.parametrize(("text", "valid"), [
    (" 91350100m000100y43 ", True),  # stripped, upper-cased
    ("９１３５０１００Ｍ０００１００Ｙ４３", True),  # full-width
    ("91350100M000100Y4", False),  # 17 characters
    ("91350100M000100Y433", False),  # 19
    ("91350100M000I00Y43", False),  # I is not in the alphabet
    ("91350100M000100Y44", False),  # wrong check character
])
def test_normalisation_and_shape(text, valid):
    assert cc.is_valid(text) is valid


def test_vectorised_check_agrees_with_the_scalar_one():
    codes = made(50) + [c[:-1] + ("0" if c[-1] != "0" else "1") for c in made(50, seed=1)] + ["abc", "", *KNOWN]
    series = pd.Series([cc.normalise(c) for c in codes] + [None], dtype="str")
    expected = [cc.is_valid(c) for c in codes] + [True]  # missing is not a bad code
    assert cc.valid_mask(series).tolist() == expected
    assert sum(expected) == 50 + 2 + 1


def test_check_char_refuses_bad_input():
    with pytest.raises(ValueError, match="17 characters"):
        cc.check_char("91350100M000100")


def test_synthetic_identities_are_valid_distinct_and_marked():
    rng = np.random.default_rng(3)
    provinces = np.array(["Jiangsu", "Beijing", "Xinjiang"] * 200)
    names, codes = synthetic_identities(provinces, np.array(["34", "65", "01"] * 200), rng)
    assert all(cc.is_valid(c) for c in codes) and len(set(codes)) == len(codes)
    assert all(n.startswith(MARK) and n.endswith("有限公司") for n in names)
    assert {c[2:4] for c in codes[:3]} == {"32", "11", "65"}  # the provinces' region prefixes


def test_bad_codes_are_a_contract_problem_naming_rows():
    from tests.test_validate import panel

    df = panel().assign(统一社会信用代码=[*made(4), "91350100M000100Y44", "12345"])
    with pytest.raises(v.ContractError) as caught:
        v.conform_panel(df)
    (problem,) = caught.value.problems
    assert (problem.column, problem.rule, problem.count) == ("credit_code", cc.RULE, 2)
    assert [e[2] for e in problem.examples] == ["91350100M000100Y44", "12345"]
    assert [e[:2] for e in problem.examples] == [("F003", 2021), ("F003", 2022)]


def test_a_credit_code_stands_in_for_a_missing_firm_id():
    from tests.test_validate import panel

    codes = made(3)
    df = panel().drop(columns="firm_id")
    df.insert(0, "社会信用代码", [codes[i // 2].lower() for i in range(6)])  # written in lower case
    frame, notes = v.conform_panel_notes(df)
    assert sorted(frame["firm_id"].unique()) == sorted(codes) and (frame["firm_id"] == frame["credit_code"]).all()
    assert any("used as firm_id" in n.text for n in notes)


def test_module_examples_hold():
    import doctest

    from lgml import firm_names, parsing

    for module in (cc, firm_names, parsing):
        assert doctest.testmod(module).failed == 0, module.__name__
