"""CheckList-style tests: the biased ticket model fails a name-invariance test that the fair
one passes; a directional test holds for a sound model; tests come from config tables."""

from __future__ import annotations

import pytest

from audit.datasets.tickets import CLASSES, GROUPS, ROUTINE, URGENT
from audit.errors import ConfigError
from audit.robustness.invariance import DirectionalTest, InvarianceTest, load_behaviour_tests
from tests.test_counterfactual_text import _proba
from tests.test_tickets import _train

NAMES = [GROUPS["female"][0], GROUPS["male"][0], GROUPS["female"][1], GROUPS["male"][1]]


def _names_test() -> InvarianceTest:
    return InvarianceTest("names do not change urgency", "{name} reports that {problem}.",
                          {"name": NAMES, "problem": list(URGENT)}, vary="name")


def test_name_invariance_fails_for_the_biased_model_only() -> None:
    biased = _names_test().run(_proba(*_train(False, True, 0)))
    fair = _names_test().run(_proba(*_train(False, False, 0)))
    assert biased.cases == fair.cases == len(URGENT)
    assert biased.low > 0.3 and biased.examples, biased
    assert fair.failures == 0 and fair.high < 0.4, fair


def test_directional_test_holds_for_a_sound_model_and_catches_a_wrong_one() -> None:
    routine = [f"james reports that {p}." for p in ROUTINE]
    up = DirectionalTest("an outage makes it more urgent", routine, "and the server is down",
                         target=1)
    down = DirectionalTest("an outage makes it less urgent (wrong on purpose)", routine,
                           "and the server is down", target=1, direction="down")
    proba = _proba(*_train(False, False, 0))
    assert up.run(proba).failures == 0
    assert down.run(proba).rate > 0.5


def test_behaviour_tests_from_config_and_their_errors() -> None:
    tables = [{"name": "n", "template": "{a} and {b}", "slots": {"a": ["x", "y"], "b": ["z"]},
               "vary": "a"},
              {"name": "d", "texts": ["t"], "add": "u", "target": "urgent", "where": "start"}]
    made = load_behaviour_tests(tables, CLASSES)
    assert isinstance(made[0], InvarianceTest) and isinstance(made[1], DirectionalTest)
    assert made[1].target == 1 and made[1].where == "start"
    for bad, msg in (({"name": "n", "template": "{a}", "slots": {"a": ["x"]}, "vary": "b"},
                      "not one of its slots"),
                     ({"name": "n", "template": "{a} {c}", "slots": {"a": ["x"]}, "vary": "a"},
                      "KeyError"),
                     ({"name": "d", "texts": ["t"], "add": "u", "target": "maybe"},
                      "not a class"),
                     ({"name": "d", "texts": ["t"]}, "needs name")):
        with pytest.raises(ConfigError, match=msg):
            load_behaviour_tests([bad], CLASSES)
