"""Expand a Bicep module for given parameter values: which resources it would deploy.

There is no Bicep compiler here (see test_static_analysis), so this walks pycep's trees
the way ARM would run the compiled template, for the small subset of Bicep the Service Bus
modules use: parameters, variables, ``for`` loops, ``if`` conditions, nested modules,
``parent``/``scope`` chains, literals, ``.``/``.?``/``[?]`` access, ``??``, ``==``,
``&&``, ``!``, ``? :`` and the functions :func:`_call` knows. Anything else raises
:class:`Unsupported`, so a module that outgrows the subset fails loudly instead of being
planned wrongly. Strings with ``${...}`` interpolation are kept verbatim (names built that
way then still compare equal between modules).

pycep quirk handled here: it binds ``.`` looser than binary operators, so ``a.b == c``
arrives as ``a.(b == c)`` and ``a.?b ?? c`` as ``a.(b ?? c)``; :func:`_access` re-associates.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.infra.bicep import Template, body, condition

MISSING = object()


class Unsupported(Exception):
    """The expression is outside the subset this planner evaluates."""


@dataclass(frozen=True)
class Planned:
    """One resource a deployment would create.

    Attributes:
        type: resource type, e.g. ``Microsoft.ServiceBus/namespaces/topics``.
        id: ``type-segment/name`` path from the root resource, e.g.
            ``namespaces/sb/topics/t``.
        properties: the evaluated fields the caller asked for (see :func:`plan`).
        scope: id of the ``scope`` resource, or None.
    """

    type: str
    id: str
    properties: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None


@dataclass
class _Resource:
    """A resource symbol as an expression value (``symbol.id``, ``symbol.name``)."""

    type: str
    id: str
    name: str


@dataclass
class _Env:
    template: Template
    values: dict[str, Callable[[], Any]]

    def lookup(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]()
        return MISSING


def _constant(value: Any) -> Any:
    return value


def _segment(resource_type: str) -> str:
    return resource_type.split("/")[-1]


def _access(obj: Any, key: Any, env: _Env) -> Any:
    """``obj.key``, re-associating pycep's ``obj.(key OP rhs)`` into ``(obj.key) OP rhs``."""
    operator = key.get("operator") if isinstance(key, dict) else None
    if isinstance(operator, dict):
        operands = dict(operator["operands"])
        first = next(iter(operands))
        operands[first] = _Value(_access(obj, operands[first], env))
        return evaluate({"operator": {"type": operator["type"], "operands": operands}}, env)
    if not isinstance(key, str):
        raise Unsupported(f"property access with {key!r}")
    if isinstance(obj, _Resource):
        if key in ("id", "name"):
            return getattr(obj, key)
        raise Unsupported(f"{obj.id}.{key}")
    if isinstance(obj, dict):
        return obj.get(key)  # `.?` and `.` alike: the types guarantee required keys
    if obj is None:
        return None
    raise Unsupported(f"{obj!r}.{key}")


@dataclass(frozen=True)
class _Value:
    """An already evaluated operand spliced back into an expression tree."""

    value: Any


# Functions whose ARM meaning is the Python one on the evaluated arguments.
_PURE: dict[str, Callable[..., Any]] = {
    "empty": lambda value: not value,
    "string": lambda value: value if isinstance(value, str) else json.dumps(value),
    "json": json.loads,
    "split": lambda text, delimiter: text.split(delimiter),
    "first": lambda items: items[0],
    "last": lambda items: items[-1],
}


def _call(name: str, params: dict[str, Any], env: _Env) -> Any:
    args = list(params.values())
    if name == "filter":
        items = evaluate(params["input_array"], env) or []
        element = params["input_element"]
        kept = []
        for item in items:
            scoped = _Env(env.template, {**env.values, element: partial(_constant, item)})
            if evaluate(params["expression"], scoped):
                kept.append(item)
        return kept
    values = [evaluate(arg, env) for arg in args]
    if name in _PURE:
        return _PURE[name](*values)
    if name == "union":
        merged: dict[str, Any] = {}
        for value in values:
            merged.update(value or {})
        return merged
    if name == "concat":
        if all(isinstance(value, list) for value in values):
            return [item for value in values for item in value]
        return "".join(map(str, values))
    if name in ("guid", "unique_string"):
        return f"{name}({', '.join(map(str, values))})"
    if name == "subscription_resource_id":
        return "/".join(str(value) for value in values if value is not None)
    raise Unsupported(f"function {name}")


def evaluate(expr: Any, env: _Env) -> Any:
    """Value of a pycep expression in ``env``; raises :class:`Unsupported` outside the subset."""
    if isinstance(expr, _Value):
        return expr.value
    if expr is None or isinstance(expr, bool | int):
        return expr
    if isinstance(expr, list):
        return [evaluate(item, env) for item in expr]
    if isinstance(expr, str):
        value = env.lookup(expr)
        return expr if value is MISSING else value
    if not isinstance(expr, dict):
        raise Unsupported(repr(expr))
    if "function" in expr:
        return _call(expr["function"]["type"], expr["function"]["parameters"], env)
    if "operator" not in expr:
        return {key.strip("'"): evaluate(value, env) for key, value in expr.items()}
    kind = expr["operator"]["type"]
    ops = expr["operator"]["operands"]
    if kind == "property_accessor":
        return _access(evaluate(ops["operand_1"], env), ops["operand_2"], env)
    if kind == "index_accessor":
        container = evaluate(ops["operand_1"], env)
        key = evaluate(ops["operand_2"], env)
        return container.get(key) if isinstance(container, dict) else None
    if kind == "coalesce":
        first = evaluate(ops["operand_1"], env)
        return evaluate(ops["operand_2"], env) if first is None else first
    if kind in ("equals", "not_equals"):
        same = evaluate(ops["operand_1"], env) == evaluate(ops["operand_2"], env)
        return same if kind == "equals" else not same
    if kind == "and":
        return bool(evaluate(ops["operand_1"], env)) and bool(evaluate(ops["operand_2"], env))
    if kind == "not":
        return not evaluate(ops["bool_value"], env)
    if kind == "conditional":
        chosen = "true_value" if evaluate(ops["condition"], env) else "false_value"
        return evaluate(ops[chosen], env)
    raise Unsupported(f"operator {kind}")


def _loop_items(declaration: dict[str, Any], env: _Env) -> list[tuple[str | None, Any]]:
    """``[(item_name, item)]`` for a ``for`` declaration, ``[(None, None)]`` otherwise."""
    conf = declaration.get("config", {})
    loop_type = conf.get("loop_type") if isinstance(conf, dict) else None
    if not loop_type:
        return [(None, None)]
    if loop_type["type"] != "array":
        raise Unsupported(f"loop {loop_type['type']}")
    detail = loop_type["detail"]
    items = evaluate(detail["array_name"], env) or []
    return [(detail["item_name"], item) for item in items]


def _with(env: _Env, name: str | None, value: Any) -> _Env:
    if name is None:
        return env
    return _Env(env.template, {**env.values, name: partial(_constant, value)})


def _template_env(template: Template, params: dict[str, Any]) -> _Env:
    """Parameters (``params``, else their defaults), variables and non-loop resource
    symbols of ``template``, each evaluated when first looked up."""
    values: dict[str, Callable[[], Any]] = {}
    env = _Env(template, values)
    for name, declaration in template.section("parameters").items():
        value = params.get(name, declaration.get("default"))
        values[name] = partial(_constant, value)
    for name, declaration in template.section("variables").items():
        values[name] = partial(evaluate, declaration["value"], env)
    for symbol, declaration in template.section("resources").items():
        if not (declaration.get("config") or {}).get("loop_type"):
            values[symbol] = partial(_resource, template, symbol, env)
    return env


def variable(template: Template, name: str, params: dict[str, Any]) -> Any:
    """The value of ``template``'s variable ``name`` for parameter values ``params``
    (parameters left out take their default).

    Raises:
        Unsupported: the variable uses Bicep outside the planner's subset.
    """
    assert name in template.section("variables"), f"{template.path}: no variable {name!r}"
    return _template_env(template, params).lookup(name)


def plan(
    templates: dict[str, Template],
    path: str,
    params: dict[str, Any],
    fields: tuple[str, ...] = (),
) -> list[Planned]:
    """Resources that deploying ``path`` with ``params`` creates, nested modules included.

    Args:
        templates: parsed Bicep files keyed by repository-relative path.
        path: the module to expand, e.g. ``infra/modules/servicebus-topic.bicep``.
        params: parameter values (JSON-like); parameters left out take their default.
        fields: dotted property paths to evaluate on each planned resource, e.g.
            ``properties.principalId``; other properties are not evaluated.

    Raises:
        Unsupported: the module uses Bicep outside the planner's subset.
    """
    template = templates[path]
    env = _template_env(template, params)
    resources = template.section("resources")
    planned: list[Planned] = []
    for symbol, declaration in resources.items():
        if declaration["existing"]:
            continue
        for item_name, item in _loop_items(declaration, env):
            scoped = _with(env, item_name, item)
            if condition(declaration) is not None and not evaluate(condition(declaration), scoped):
                continue
            resource = _resource(template, symbol, scoped)
            conf = body(declaration)
            scope = evaluate(conf["scope"], scoped) if "scope" in conf else None
            chosen = {}
            for dotted in fields:
                node: Any = conf
                for key in dotted.split("."):
                    node = node.get(key, MISSING) if isinstance(node, dict) else MISSING
                if node is not MISSING:
                    chosen[dotted] = evaluate(node, scoped)
            planned.append(
                Planned(
                    type=resource.type,
                    id=resource.id,
                    properties=chosen,
                    scope=scope.id if isinstance(scope, _Resource) else None,
                )
            )
    for declaration in template.section("modules").values():
        module_path = (Path(path).parent / declaration["detail"]["path"]).as_posix()
        for item_name, item in _loop_items(declaration, env):
            scoped = _with(env, item_name, item)
            if condition(declaration) is not None and not evaluate(condition(declaration), scoped):
                continue
            arguments = {
                name: evaluate(expr, scoped) for name, expr in body(declaration)["params"].items()
            }
            planned.extend(plan(templates, module_path, arguments, fields))
    return planned


def _resource(template: Template, symbol: str, env: _Env) -> _Resource:
    conf = body(template.resource(symbol))
    resource_type = template.resource(symbol)["type"]
    name = evaluate(conf["name"], env)
    if "parent" in conf:
        parent = evaluate(conf["parent"], env)
        assert isinstance(parent, _Resource), f"{template.path}:{symbol} parent"
        return _Resource(resource_type, f"{parent.id}/{_segment(resource_type)}/{name}", name)
    return _Resource(resource_type, f"{_segment(resource_type)}/{name}", name)
