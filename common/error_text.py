"""An exception as one line of text, for logs, problem lists and CLI output.

Driver and SDK messages often run over several lines (SQLAlchemy appends the statement
and a help link, the Azure SDK an error context); the first line is the one that says
what went wrong.
"""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type name if it has none)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def error_line(error: BaseException) -> str:
    """``TypeName: first line of the message`` (the type name alone if it has none)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
