"""SQL filters: every documented construct, evaluated against a neutral message view."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import pytest

from emulator.rules import MessageView, RuleEvaluationError, SqlFilter

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
MESSAGE = MessageView(
    system={
        "MessageId": "m-1",
        "CorrelationId": "email",
        "Label": "the bus",
        "To": "Store5",
        "ReplyTo": "replies",
        "SessionId": "s-1",
        "ContentType": "application/json",
        "EnqueuedTimeUtc": NOW,
        "TimeToLive": dt.timedelta(minutes=5),
        "DeliveryCount": 0,
        "SequenceNumber": 42,
    },
    user={
        "Color": "red",
        "quantity": 10,
        "price": 2.5,
        "flag": True,
        "nothing": None,
        "Property With Space": "x",
        "HR-EmployeeID": 7,
        'say "hi"': "q",
        "a]b": "bracket",
        "http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "account",
        "StoreId": "Store2",
        "when": NOW,
        "later": NOW + dt.timedelta(hours=1),
        "id": uuid.UUID(int=1),
        "naïve": "unicode",
    },
)


def matches(expression: str, message: MessageView = MESSAGE, **parameters: object) -> bool:
    return SqlFilter(expression, parameters).matches(message)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # comparisons, on both sides of the documented operators
        ("quantity = 10", True),
        ("quantity <> 10", False),
        ("quantity != 10", False),
        ("quantity > 9", True),
        ("quantity >= 10", True),
        ("quantity < 10", False),
        ("quantity <= 10", True),
        ("10 = quantity", True),
        ("Color = 'red'", True),
        ("Color = 'Red'", False),  # strings compare case-sensitively
        ("Color < 's'", True),
        ("flag = TRUE", True),
        ("flag <> false", True),
        # numeric coercion: Int64 meets Double
        ("quantity = 10.0", True),
        ("price > 2", True),
        ("price = 2.5", True),
        ("price = 25E-1", True),
        ("quantity = 0.1E2", True),
        ("quantity = 1.0e+1", True),
        ("quantity > 2.08", True),
        # the TRUE filter's text
        ("1=1", True),
        ("1=0", False),
    ],
)
def test_comparison(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("quantity + 5 = 15", True),
        ("quantity - 15 = -5", True),
        ("quantity * 3 = 30", True),
        ("quantity / 4 = 2", True),  # integer division truncates
        ("-quantity / 4 = -2", True),  # ... towards zero, as C#
        ("quantity % 4 = 2", True),
        ("-quantity % 4 = -2", True),  # the remainder takes the dividend's sign
        ("quantity / 4.0 = 2.5", True),
        ("price * 2 = 5", True),
        ("+quantity = 10", True),
        ("- -quantity = 10", True),
        ("2 + 3 * 4 = 14", True),  # * before +
        ("(2 + 3) * 4 = 20", True),
        ("10 - 4 - 3 = 3", True),  # left-associative
        ("100 / 10 / 5 = 2", True),
        ("'ab' + 'cd' = 'abcd'", True),
        ("9223372036854775807 + 1 = -9223372036854775807 - 1", True),  # Int64 wraps
        ("1.0 / 0 > 1E308", True),  # Double division by zero is infinity
    ],
)
def test_arithmetic(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


def test_datetime_and_timespan_arithmetic() -> None:
    """The documented ``(DateTimeMp2-DateTimeMp1) <= @timespan`` with parameters."""
    assert matches("later - when <= @span", span=dt.timedelta(hours=1))
    assert not matches("later - when < @span", span=dt.timedelta(hours=1))
    assert matches("when < @t", t=NOW + dt.timedelta(seconds=1))
    assert matches("sys.EnqueuedTimeUtc + sys.TimeToLive > sys.EnqueuedTimeUtc")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Color = 'red' AND quantity = 10", True),
        ("Color = 'red' AND quantity = 11", False),
        ("Color = 'blue' OR quantity = 10", True),
        ("Color = 'blue' OR quantity = 11", False),
        ("NOT Color = 'blue'", True),
        ("NOT NOT Color = 'red'", True),
        # precedence: NOT > AND > OR
        ("Color = 'blue' AND quantity = 1 OR quantity = 10", True),
        ("Color = 'blue' AND (quantity = 1 OR quantity = 10)", False),
        ("NOT Color = 'blue' AND quantity = 10", True),
        ("NOT (Color = 'red' AND quantity = 10)", False),
        ("(Color = 'red')", True),
        ("((quantity) = (10))", True),
        # keywords in any case
        ("color = 'red' and Quantity = 10 Or not flag = false", True),
    ],
)
def test_logical(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # a missing or null property is unknown: comparisons and NOT stay unknown
        ("missing = 1", False),
        ("missing <> 1", False),
        ("NOT missing = 1", False),
        ("nothing = 1", False),
        ("missing + 1 = 1", False),
        ("-missing = 1", False),
        ("missing = NULL", False),
        ("NULL = NULL", False),
        # the documented AND / OR truth tables
        ("missing = 1 AND 1 = 0", False),
        ("NOT (missing = 1 AND 1 = 0)", True),
        ("missing = 1 AND 1 = 1", False),
        ("NOT (missing = 1 AND 1 = 1)", False),
        ("missing = 1 OR 1 = 1", True),
        ("missing = 1 OR 1 = 0", False),
        ("NOT (missing = 1 OR 1 = 0)", False),
        # IN is unknown when its left side is
        ("missing IN (1, 2)", False),
        ("missing NOT IN (1, 2)", False),
        ("quantity NOT IN (missing, 2)", True),
        # LIKE is unknown when any operand is
        ("missing LIKE 'a%'", False),
        ("missing NOT LIKE 'a%'", False),
        ("Color LIKE missing", False),
        ("Color NOT LIKE 'r%' ESCAPE missing", False),
        # IS NULL and EXISTS are never unknown
        ("missing IS NULL", True),
        ("nothing IS NULL", True),
        ("nothing IS NOT NULL", False),
        ("Color IS NOT NULL", True),
        ("EXISTS(nothing)", True),  # present, with a null value
        ("EXISTS(missing)", False),
        ("NOT EXISTS(missing)", True),
        ("sys.ReplyToSessionId IS NULL", True),
        ("EXISTS(sys.MessageId)", True),
        ("EXISTS(sys.ReplyToSessionId)", False),
    ],
)
def test_unknown_values(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Color IN ('blue', 'red')", True),
        ("Color IN('blue')", False),
        ("Color NOT IN ('blue', 'green')", True),
        ("quantity IN (1, 10.0)", True),
        ("StoreId IN('Store1', 'Store2', 'Store3')", True),
        ("sys.To IN ('Store5','Store6','Store7') OR StoreId = 'Store8'", True),
        (
            "sys.To NOT IN ('Store1','Store2','Store3','Store4','Store5','Store6','Store7',"
            "'Store8') OR StoreId NOT IN ('Store1','Store2','Store3','Store4','Store5',"
            "'Store6','Store7','Store8')",
            False,
        ),
        ("quantity IN (5 + 5)", True),
    ],
)
def test_in(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("sys.Label LIKE '%bus%'", True),
        ("sys.Label LIKE '%Bus%'", False),
        ("sys.Label LIKE 'the ___'", True),
        ("sys.Label LIKE 'the __'", False),
        ("sys.Label LIKE 'the%'", True),
        ("sys.Label NOT LIKE 'the%'", False),
        ("sys.Label LIKE 'the bus'", True),
        ("sys.Label LIKE '%'", True),
        ("'ABC%' LIKE 'ABC\\%' ESCAPE '\\'", True),
        ("'ABCD' LIKE 'ABC\\%' ESCAPE '\\'", False),
        ("'a_c' LIKE 'a!_c' ESCAPE '!'", True),
        ("'abc' LIKE 'a!_c' ESCAPE '!'", False),
        ("'a.c' LIKE 'a.c'", True),  # regular-expression characters are literal
        ("'abc' LIKE 'a.c'", False),
        ("'a\nb' LIKE 'a_b'", True),
        ("Color LIKE 'r' + '%'", True),  # the pattern is an expression
        ("sys.CorrelationId like 'em%'", True),
    ],
)
def test_like(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("sys.Label = 'the bus'", True),
        ("sys.label = 'the bus'", True),  # property names are case-insensitive
        ("sys.Subject = 'the bus'", True),  # today's SDK name for Label
        ("SYS.MESSAGEID = 'm-1'", True),
        ("sys.SequenceNumber = 42", True),
        ("sys.DeliveryCount = 0", True),
        ("sys.ContentType = 'application/json'", True),
        ("user.Color = 'red'", True),
        ("USER.color = 'red'", True),
        ("color = 'red'", True),  # no scope means user
        ("[Property With Space] = 'x'", True),
        ("[HR-EmployeeID] = 7", True),
        ("[a]]b] = 'bracket'", True),
        ('"say ""hi""" = \'q\'', True),
        ("\"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName\" = 'account'", True),
        ("user.[Property With Space] = 'x'", True),
        ("naïve = 'unicode'", True),
        ("sys = 1", False),  # a user property called sys (missing)
        ("notify = 1", False),  # starts with a keyword, still a name
    ],
)
def test_properties(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'it''s' = 'it' + '''s'", True),
        ("'' = ''", True),
        ("'ünïcödé ✓' LIKE '%✓'", True),
        ("TRUE = TRUE", True),
        ("FALSE <> TRUE", True),
        ("1894.1204 > 1894", True),
        ("101.5E5 = 10150000", True),
        ("0.5E-2 = 0.005", True),
        (".5 = 0.5", True),
        ("9223372036854775807 > 0", True),
    ],
)
def test_constants(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


def test_parameters() -> None:
    assert matches("Color = @color", color="red")
    assert SqlFilter("Color = @Color", {"@color": "red"}).matches(MESSAGE)
    assert SqlFilter("quantity > @min AND flag = @on", {"min": 3, "on": True}).matches(MESSAGE)
    assert not SqlFilter("Color = @c", {"@c": None}).matches(MESSAGE)


def test_functions() -> None:
    assert matches("property('Color') = 'red'")
    assert matches("p('user.quantity') = 10")
    assert matches("P('sys.Label') = 'the bus'")
    assert matches("property('Col' + 'or') = 'red'")
    assert not matches("property(missing) = 'red'")  # an unknown name gives unknown
    assert not matches("property('nope') = 1")
    assert matches("newid() <> newid()")
    assert matches("newid() = newid()") is False


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("Color = 1", "cannot compare str = int"),
        ("flag = 1", "cannot compare bool = int"),
        ("flag > FALSE", "cannot compare bool > bool"),
        ("Color + 1 = 1", "cannot apply + to str and int"),
        ("flag + 1 = 1", "cannot apply + to bool and int"),
        ("-Color = 1", "cannot negate str"),
        ("quantity / 0 = 1", "integer division by zero"),
        ("quantity % 0 = 1", "integer division by zero"),
        ("quantity LIKE '1%'", "LIKE needs strings"),
        ("Color LIKE 'r%' ESCAPE Color", "the LIKE escape must be one character"),
        ("id = 'x'", "cannot compare UUID = str"),
        ("Color IN ('red' , 1)", None),  # found before the mismatch: no error
        ("Color IN (1, 'red')", "cannot compare str = int"),
        ("property(quantity) = 1", "property() needs a string name"),
        ("property('sys.Nope') = 1", "unknown system property 'Nope'"),
    ],
)
def test_evaluation_errors(expression: str, reason: str | None) -> None:
    if reason is None:
        assert matches(expression)
        return
    with pytest.raises(RuleEvaluationError) as caught:
        matches(expression)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f'SqlFilter "{expression}": ')
    assert caught.value.expression == expression
    assert caught.value.kind == "SqlFilter"


def test_evaluation_error_position() -> None:
    with pytest.raises(RuleEvaluationError) as caught:
        matches("quantity = 10 AND Color = 1")
    assert caught.value.position == 18
    assert str(caught.value).endswith("at position 18")


def test_short_circuit_skips_the_failing_side() -> None:
    assert not matches("1 = 0 AND Color = 1")
    assert matches("1 = 1 OR Color = 1")


def test_float_semantics() -> None:
    assert matches("0.0 / 0 <> 0.0 / 0")  # NaN is unequal to itself
    assert matches("price % 0 <> 1") is True  # NaN <> 1 holds
    assert matches("-1.0 / 0 < -1E308")
    message = MessageView(user={"x": math.inf})
    assert SqlFilter("x % 2 <> x % 2").matches(message)


def test_filter_equality_and_repr() -> None:
    assert SqlFilter("a = 1") == SqlFilter("a = 1")
    assert SqlFilter("a = 1") != SqlFilter("a = 2")
    assert "a = 1" in repr(SqlFilter("a = 1"))
