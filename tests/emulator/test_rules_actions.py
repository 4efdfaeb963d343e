"""SQL rule actions, correlation filters, boolean filters, and what a subscription stores."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from emulator.rules import (
    DEFAULT_RULE_NAME,
    SETTABLE_SYSTEM_PROPERTIES,
    SYSTEM_PROPERTIES,
    CorrelationFilter,
    FalseFilter,
    MessageView,
    Rule,
    RuleEvaluationError,
    SqlFilter,
    SqlRuleAction,
    TrueFilter,
    canonical_system_property,
    default_rule,
    subscription_copies,
)

ORDER = MessageView(
    system={"MessageId": "m-1", "CorrelationId": "high", "Label": "red", "To": "shop"},
    user={"color": "red", "quantity": 10, "priority": "high", "price": 2.0},
)


def apply(expression: str, message: MessageView = ORDER, **parameters: object) -> MessageView:
    return SqlRuleAction(expression, parameters).apply(message)


def test_the_documented_example() -> None:
    """``SET quantity = quantity / 2; REMOVE priority;SET sys.CorrelationId = 'low';``"""
    result = apply("SET quantity = quantity / 2; REMOVE priority;SET sys.CorrelationId = 'low';")
    assert result.user == {"color": "red", "quantity": 5, "price": 2.0}
    assert result.system == {**ORDER.system, "CorrelationId": "low"}
    assert ORDER.user["quantity"] == 10  # the input is untouched
    assert ORDER.system["CorrelationId"] == "high"


@pytest.mark.parametrize(
    "expression",
    [
        "SET a = 1, SET b = 2",
        "SET a = 1; SET b = 2",
        "SET a = 1 SET b = 2;",
        "set a = 1;\nset b = 2;;",
        "SET user.a = 1, SET [b] = 2",
    ],
)
def test_statement_separators(expression: str) -> None:
    assert apply(expression).user == {**ORDER.user, "a": 1, "b": 2}


def test_statements_see_earlier_changes() -> None:
    result = apply("SET a = quantity + 1; SET b = a * 2; REMOVE a; SET c = a")
    assert result.user == {**ORDER.user, "b": 22, "c": None}


def test_set_keeps_the_existing_spelling_and_widens() -> None:
    result = apply("SET QUANTITY = 3; SET Price = 3; SET NewOne = 'x'")
    assert result.user == {**ORDER.user, "quantity": 3, "price": 3.0, "NewOne": "x"}
    assert isinstance(result.user["price"], float)


def test_set_from_missing_stores_null_and_remove_missing_is_quiet() -> None:
    result = apply("SET x = nothing + 1; REMOVE nothing; REMOVE sys.ReplyTo")
    assert result.user == {**ORDER.user, "x": None}
    assert result.system == ORDER.system


def test_system_properties() -> None:
    result = apply(
        "SET sys.Label = 'SalesEvent'; SET sys.Subject = sys.Subject + '!'; "
        "SET sys.MessageId = newid(); REMOVE sys.To; SET sys.SessionId = color; "
        "SET sys.TimeToLive = @ttl; SET sys.ScheduledEnqueueTimeUtc = @at; "
        "SET sys.CorrelationId = missing",
        ttl=dt.timedelta(minutes=1),
        at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    assert result.system["Label"] == "SalesEvent!"
    assert uuid.UUID(str(result.system["MessageId"]))
    assert "To" not in result.system
    assert "CorrelationId" not in result.system
    assert result.system["SessionId"] == "red"
    assert result.system["TimeToLive"] == dt.timedelta(minutes=1)
    assert result.system["ScheduledEnqueueTimeUtc"] == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("SET sys.Label = 1", "sys.Label takes a str value, not int"),
        ("SET sys.TimeToLive = 60", "sys.TimeToLive takes a timedelta value, not int"),
        ("SET a = color + 1", "cannot apply + to str and int"),
        ("SET a = quantity / 0", "integer division by zero"),
    ],
)
def test_action_evaluation_errors(expression: str, reason: str) -> None:
    with pytest.raises(RuleEvaluationError) as caught:
        apply(expression)
    assert caught.value.kind == "SqlRuleAction"
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f'SqlRuleAction "{expression}": ')


def test_settable_properties_are_known_system_properties() -> None:
    assert set(SETTABLE_SYSTEM_PROPERTIES) <= SYSTEM_PROPERTIES
    assert canonical_system_property("subject") == "Label"
    assert canonical_system_property("SCHEDULEDENQUEUETIME") == "ScheduledEnqueueTimeUtc"
    assert canonical_system_property("nope") is None


@pytest.mark.parametrize(
    ("correlation", "expected"),
    [
        (CorrelationFilter(), True),  # sets nothing: matches all
        (CorrelationFilter(correlation_id="high"), True),
        (CorrelationFilter(correlation_id="High"), False),  # case-sensitive
        (CorrelationFilter(correlation_id="high", subject="red"), True),
        (CorrelationFilter(correlation_id="high", subject="blue"), False),
        (CorrelationFilter(message_id="m-1", to="shop"), True),
        (CorrelationFilter(reply_to="x"), False),  # the message has none
        (CorrelationFilter(session_id="s"), False),
        (CorrelationFilter(reply_to_session_id="s"), False),
        (CorrelationFilter(content_type="application/json"), False),
        (CorrelationFilter(properties={"color": "red"}), True),
        (CorrelationFilter(properties={"COLOR": "red"}), True),  # names case-insensitive
        (CorrelationFilter(properties={"color": "Red"}), False),
        (CorrelationFilter(properties={"quantity": 10.0}), True),
        (CorrelationFilter(properties={"quantity": "10"}), False),  # no str/int mixing
        (CorrelationFilter(properties={"quantity": True}), False),
        (CorrelationFilter(properties={"missing": None}), False),
        (CorrelationFilter(correlation_id="high", properties={"color": "red", "x": 1}), False),
    ],
)
def test_correlation_filter(correlation: CorrelationFilter, expected: bool) -> None:
    assert correlation.matches(ORDER) is expected


def test_correlation_filter_from_config() -> None:
    built = CorrelationFilter.from_config(
        {"CorrelationId": "high", "Label": "red", "Properties": {"color": "red"}}
    )
    assert built == CorrelationFilter(
        correlation_id="high", subject="red", properties={"color": "red"}
    )
    assert built.matches(ORDER)
    assert CorrelationFilter.from_config({"subject": "x", "replyToSessionId": "y"}) == (
        CorrelationFilter(subject="x", reply_to_session_id="y")
    )
    with pytest.raises(ValueError, match="unknown CorrelationFilter property 'Colour'"):
        CorrelationFilter.from_config({"Colour": "red"})
    with pytest.raises(ValueError, match="Properties must be an object"):
        CorrelationFilter.from_config({"Properties": ["a"]})


def test_boolean_filters_and_the_default_rule() -> None:
    assert TrueFilter().matches(ORDER)
    assert not FalseFilter().matches(ORDER)
    assert TrueFilter.sql_expression == "1=1"
    assert FalseFilter.sql_expression == "1=0"
    rule = default_rule()
    assert rule == Rule(DEFAULT_RULE_NAME, TrueFilter(), None)
    assert rule.name == "$Default"
    assert rule.matches(ORDER)
    assert rule.apply(ORDER) is ORDER


def test_rule_with_action() -> None:
    rule = Rule("half", SqlFilter("user.color = 'red'"), SqlRuleAction("SET quantity = 5"))
    assert rule.matches(ORDER)
    assert rule.apply(ORDER).user["quantity"] == 5
    assert not Rule("blue", SqlFilter("color = 'blue'")).matches(ORDER)


def test_subscription_copies() -> None:
    """Rules without actions OR together into one copy; each rule with an action adds one."""
    rules = [
        Rule("blue", SqlFilter("color = 'blue'")),
        Rule("red", SqlFilter("color = 'red'")),
        Rule("all", TrueFilter()),
        Rule("halve", SqlFilter("quantity > 5"), SqlRuleAction("SET quantity = quantity / 2")),
        Rule("tag", CorrelationFilter(subject="red"), SqlRuleAction("SET tagged = TRUE")),
        Rule("never", FalseFilter(), SqlRuleAction("SET never = 1")),
    ]
    plain, halved, tagged = subscription_copies(rules, ORDER)
    assert plain is ORDER
    assert halved.user == {**ORDER.user, "quantity": 5, "RuleName": "halve"}
    assert tagged.user == {**ORDER.user, "tagged": True, "RuleName": "tag"}
    assert subscription_copies([Rule("blue", SqlFilter("color = 'blue'"))], ORDER) == []
    assert subscription_copies([], ORDER) == []
    only_action = subscription_copies([rules[3]], ORDER)
    assert [copy.user["RuleName"] for copy in only_action] == ["halve"]


def test_subscription_copies_propagates_evaluation_errors() -> None:
    with pytest.raises(RuleEvaluationError, match="cannot compare str = int"):
        subscription_copies([Rule("bad", SqlFilter("color = 1"))], ORDER)
