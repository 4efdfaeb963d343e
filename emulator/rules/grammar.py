"""The Service Bus SQL filter and action grammar, for Lark's LALR parser.

Transcribes https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter
and https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-rule-action.
Precedence, loosest first: ``OR``, ``AND``, ``NOT``, one comparison / ``IN`` / ``LIKE`` /
``IS NULL``, ``+ -``, ``* / %``, unary ``- +``. Values and conditions share one expression
grammar (LALR cannot tell ``(a) = 1`` from ``(a = 1)`` otherwise); :mod:`.sql` then refuses a
condition where a value is needed and the reverse, as the documented grammar does.
Keywords are case-insensitive and reserved (``\\b`` stops ``notify`` lexing as ``NOT``).
The grammar lives in a module, not a ``.lark`` file, so no package data is needed.
"""

from __future__ import annotations

__all__ = ["GRAMMAR"]

GRAMMAR = r"""
filter: or_expr

actions: statement (_sep* statement)* _sep*
?statement: SET property "=" sum -> set_
          | REMOVE property -> remove
_sep: ";" | ","

?or_expr: and_expr
        | or_expr _OR and_expr -> or_
?and_expr: not_expr
         | and_expr _AND not_expr -> and_
?not_expr: predicate
         | NOT not_expr -> not_

?predicate: sum
          | sum "=" sum -> eq
          | sum "<>" sum -> ne
          | sum "!=" sum -> ne
          | sum ">" sum -> gt
          | sum ">=" sum -> ge
          | sum "<" sum -> lt
          | sum "<=" sum -> le
          | sum _IN "(" _items ")" -> in_
          | sum NOT _IN "(" _items ")" -> not_in
          | sum _LIKE sum [_ESCAPE sum] -> like
          | sum NOT _LIKE sum [_ESCAPE sum] -> not_like
          | sum _IS NULL -> is_null
          | sum _IS NOT NULL -> is_not_null
          | EXISTS "(" property ")" -> exists
_items: sum ("," sum)*

?sum: product
    | sum "+" product -> add
    | sum "-" product -> sub
?product: unary
        | product "*" unary -> mul
        | product "/" unary -> div
        | product "%" unary -> mod
?unary: atom
      | neg
      | "+" unary
!neg: "-" unary

?atom: INTEGER -> integer
     | DECIMAL -> decimal
     | APPROX -> approx
     | STRING -> string
     | TRUE -> true_
     | FALSE -> false_
     | NULL -> null
     | PARAMETER -> parameter
     | property
     | function
     | "(" or_expr ")"

property: IDENT "." _name -> scoped
        | _name -> unscoped
_name: IDENT | QUOTED | DELIMITED
function: IDENT "(" ")"
        | IDENT "(" _items ")"

_OR.2: /or\b/i
_AND.2: /and\b/i
NOT.2: /not\b/i
_IN.2: /in\b/i
_LIKE.2: /like\b/i
_ESCAPE.2: /escape\b/i
_IS.2: /is\b/i
NULL.2: /null\b/i
EXISTS.2: /exists\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
SET.2: /set\b/i
REMOVE.2: /remove\b/i

APPROX.4: /(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d+/
DECIMAL.3: /\d+\.\d*|\.\d+/
INTEGER: /\d+/
STRING: /'(?:[^']|'')*'/
QUOTED: /"(?:[^"]|"")*"/
DELIMITED: /\[(?:[^\]]|\]\])*\]/
PARAMETER: /@\w+/
IDENT: /[^\W\d_]\w*/

%import common.WS
%ignore WS
"""
