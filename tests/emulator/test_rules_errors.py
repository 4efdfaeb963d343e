"""Bad filters and actions are refused when built: one line with the position and the reason."""

from __future__ import annotations

import pytest

from emulator.rules import RuleSyntaxError, SqlFilter, SqlRuleAction


def refuse_filter(expression: str, **parameters: object) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as caught:
        SqlFilter(expression, parameters)
    error = caught.value
    assert isinstance(error, ValueError)
    assert "\n" not in str(error)
    assert error.kind == "SqlFilter"
    assert error.expression == expression
    assert (
        str(error) == f'SqlFilter "{error.expression}": {error.reason} at position {error.position}'
    )
    return error


def test_the_example_from_the_issue() -> None:
    error = refuse_filter("user.color = = 'red'")
    assert str(error) == "SqlFilter \"user.color = = 'red'\": unexpected '=' at position 13"
    assert (error.position, error.line, error.column) == (13, 1, 14)
    assert error.reason == "unexpected '='"


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("", 0, "unexpected end of expression"),
        ("   ", 3, "unexpected end of expression"),
        ("a = ", 4, "unexpected end of expression"),
        ("(a = 1", 6, "unexpected end of expression"),
        ("a = 1)", 5, "unexpected ')'"),
        ("a = 1 b = 2", 6, "unexpected 'b'"),
        ("a == 1", 3, "unexpected '='"),
        ("a = 1 = 2", 6, "unexpected '='"),  # comparisons do not chain
        ("a = 1 #", 6, "unexpected character '#'"),
        ("a = 'red", 4, "unterminated string constant"),
        ('"a = 1', 0, "unterminated quoted identifier"),
        ("[a = 1", 0, "unterminated delimited identifier"),
        ("a IN ()", 6, "unexpected ')'"),
        ("a IN 1", 5, "unexpected '1'"),
        ("a LIKE 'x' ESCAPE", 17, "unexpected end of expression"),
        ("a IS 1", 5, "unexpected '1'"),
        ("EXISTS a", 7, "unexpected 'a'"),
        ("AND = 1", 0, "'AND' is a reserved keyword (write [AND] for a name)"),
        ("a = 1 OR like = 2", 9, "'like' is a reserved keyword (write [like] for a name)"),
        ("user.null = 1", 5, "'null' is a reserved keyword (write [null] for a name)"),
        ("a = 1 AND", 9, "unexpected end of expression"),
        ("NOT", 3, "unexpected end of expression"),
        ("a = 'x' 'y'", 8, "unexpected ''y''"),
        ("sys. = 1", 5, "unexpected '='"),
        ("1abc = 1", 1, "unexpected 'abc'"),
    ],
)
def test_syntax(expression: str, position: int, reason: str) -> None:
    error = refuse_filter(expression)
    assert (error.position, error.reason) == (position, reason)


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("color", 0, "expected a condition (a comparison, IN, LIKE, IS NULL or EXISTS)"),
        ("TRUE", 0, "expected a condition (a comparison, IN, LIKE, IS NULL or EXISTS)"),
        ("a = 1 AND b", 10, "expected a condition (a comparison, IN, LIKE, IS NULL or EXISTS)"),
        ("NOT 1 + 2", 4, "expected a condition (a comparison, IN, LIKE, IS NULL or EXISTS)"),
        ("(a = 1) = TRUE", 1, "a condition cannot be used as a value"),
        ("(a = 1) + 1 = 2", 1, "a condition cannot be used as a value"),
        ("x IN (a = 1)", 8, "unexpected '='"),
        ("1 IS NULL", 0, "IS NULL applies to a property only"),
        ("@p IS NOT NULL", 0, "IS NOT NULL applies to a property only"),
        ("p('x') IS NULL", 0, "IS NULL applies to a property only"),
        ("EXISTS(1)", 7, "unexpected '1'"),
        ("sys.Nope = 1", 4, "unknown system property 'Nope'"),
        ("sys.[Label X] = 1", 4, "unknown system property 'Label X'"),
        ("usr.color = 1", 0, "unknown scope 'usr' (use sys or user)"),
        ("a = @missing", 4, "parameter @missing is not defined"),
        ("upper(a) = 'A'", 0, "unknown function 'upper'"),
        ("newid(1) = 1", 0, "newid() takes 0 argument(s)"),
        ("property() = 1", 0, "property() takes 1 argument(s)"),
        ("a = 9223372036854775808", 4, "integer constant out of the Int64 range"),
        ("a LIKE 'x' ESCAPE 'ab'", 18, "the LIKE escape must be one character, not 'ab'"),
        ("a LIKE 'x!' ESCAPE '!'", 19, "the LIKE pattern ends with its escape character"),
    ],
)
def test_semantics(expression: str, position: int, reason: str) -> None:
    error = refuse_filter(expression, p=1)
    assert (error.position, error.reason) == (position, reason)


def test_multi_line_expression_names_line_and_column() -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        SqlFilter("a = 1\nAND b = = 2")
    error = caught.value
    assert (error.position, error.line, error.column) == (14, 2, 9)
    assert str(error) == (
        "SqlFilter \"a = 1\\nAND b = = 2\": unexpected '=' at position 14 (line 2, column 9)"
    )


def test_long_tokens_are_shortened() -> None:
    error = refuse_filter("a = 1 '" + "x" * 40 + "'")
    assert error.reason == "unexpected ''xxxxxxxxxxxxxxxxxxxx...'"


def test_non_string_expression() -> None:
    with pytest.raises(RuleSyntaxError, match="the expression must be a string"):
        SqlFilter(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("", 0, "unexpected end of expression"),
        ("SET", 3, "unexpected end of expression"),
        ("SET a", 5, "unexpected end of expression, expected '='"),
        ("SET a = ", 8, "unexpected end of expression"),
        ("SET a == 1", 7, "unexpected '='"),
        ("REMOVE", 6, "unexpected end of expression"),
        ("REMOVE a = 1", 9, "unexpected '='"),
        ("a = 1", 0, "unexpected 'a'"),
        ("SET a = 1 AND b = 2", 10, "unexpected 'AND'"),
        ("SET a = (b = 1)", 9, "a condition cannot be used as a value"),
        ("SET sys.SequenceNumber = 1", 4, "sys.SequenceNumber is read-only"),
        ("REMOVE sys.EnqueuedTimeUtc", 7, "sys.EnqueuedTimeUtc is read-only"),
        ("SET sys.Nope = 1", 8, "unknown system property 'Nope'"),
        ("SET a = @nope", 8, "parameter @nope is not defined"),
        ("SET a = 1;; DELETE b", 12, "unexpected 'DELETE'"),
    ],
)
def test_action_errors(expression: str, position: int, reason: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        SqlRuleAction(expression)
    error = caught.value
    assert (error.kind, error.position, error.reason) == ("SqlRuleAction", position, reason)
    assert str(error) == f'SqlRuleAction "{expression}": {reason} at position {position}'
