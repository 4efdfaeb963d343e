"""Navigate Bicep templates in the JSON form produced by pycep (the parser checkov uses).

pycep keeps expressions as nested dicts: ``a.b`` is
``{"operator": {"type": "property_accessor", "operands": {"operand_1": "a",
"operand_2": "b"}}}``, a function call is ``{"function": {"type": ..., "parameters":
{...}}}``, and a bare identifier (parameter, variable, resource symbol) is a plain string,
exactly like a string literal. Resource and module bodies inside ``for`` loops or behind
``if`` conditions are wrapped in ``{"loop_type": ..., "condition": ..., "config": body}``.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra.tools import REPO_ROOT, require_tool, tool_env

# Run by the tools venv's python (pycep lives there, pinned with checkov).
_DUMP_SCRIPT = """
import json, sys
from pycep import BicepParser
parser = BicepParser()
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as handle:
            out[path] = {"template": parser.parse(text=handle.read())}
    except Exception as exc:
        out[path] = {"error": f"{type(exc).__name__}: {exc}"}
json.dump(out, sys.stdout, default=str)
"""


@dataclass(frozen=True)
class Template:
    """One parsed Bicep file.

    Attributes:
        path: path relative to the repository root, e.g. ``infra/main.bicep``.
        tree: pycep's JSON (``globals``, ``parameters``, ``variables``, ``resources``,
            ``modules``, ``outputs``), or empty when parsing failed.
        error: the parser's error, or None.
        text: the file's source (comments are not in the tree).
    """

    path: str
    tree: dict[str, Any]
    error: str | None
    text: str

    def section(self, name: str) -> dict[str, Any]:
        """``parameters``, ``variables``, ``resources``, ``modules`` or ``outputs``."""
        value: dict[str, Any] = self.tree.get(name) or {}
        return value

    def param(self, name: str) -> dict[str, Any]:
        """A parameter declaration (``type``, ``default``, ``decorators``)."""
        params = self.section("parameters")
        assert name in params, f"{self.path}: no parameter {name!r}"
        declaration: dict[str, Any] = params[name]
        return declaration

    def variable(self, name: str) -> Any:
        """A variable's value expression."""
        variables = self.section("variables")
        assert name in variables, f"{self.path}: no variable {name!r}"
        return variables[name]["value"]

    def resources(self, resource_type: str | None = None) -> dict[str, dict[str, Any]]:
        """Resource declarations (symbol -> declaration), optionally of one type."""
        return {
            symbol: declaration
            for symbol, declaration in self.section("resources").items()
            if resource_type is None or declaration["type"].lower() == resource_type.lower()
        }

    def resource(self, symbol: str) -> dict[str, Any]:
        """A resource declaration by symbolic name."""
        resources = self.section("resources")
        assert symbol in resources, f"{self.path}: no resource {symbol!r}"
        declaration: dict[str, Any] = resources[symbol]
        return declaration

    def modules(self, path: str | None = None) -> dict[str, dict[str, Any]]:
        """Module declarations (symbol -> declaration), optionally of one module file."""
        return {
            symbol: declaration
            for symbol, declaration in self.section("modules").items()
            if path is None or declaration["detail"]["path"] == path
        }


def body(declaration: dict[str, Any]) -> dict[str, Any]:
    """The body of a resource or module declaration, unwrapped from loops/conditions."""
    conf: Any = declaration.get("config", declaration)
    while (
        isinstance(conf, dict) and "config" in conf and ("loop_type" in conf or "condition" in conf)
    ):
        conf = conf["config"]
    assert isinstance(conf, dict)
    return conf


def loop(declaration: dict[str, Any]) -> tuple[str, str] | None:
    """``(item_name, array_name)`` of a ``for item in array`` declaration, else None."""
    conf = declaration.get("config", {})
    loop_type = conf.get("loop_type") if isinstance(conf, dict) else None
    if not loop_type:
        return None
    detail = loop_type["detail"]
    return detail["item_name"], detail["array_name"]


def condition(declaration: dict[str, Any]) -> Any:
    """The ``if (...)`` expression of a conditional declaration, else None."""
    conf = declaration.get("config", {})
    return conf.get("condition") if isinstance(conf, dict) else None


def dig(value: Any, *path: str | int) -> Any:
    """``value[path[0]][path[1]]...``; None where a step is missing."""
    for key in path:
        if isinstance(key, int):
            if not isinstance(value, list) or key >= len(value):
                return None
            value = value[key]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
    return value


def ref(expr: Any) -> str | None:
    """Dotted name of an identifier or property access (``roles.acrPull``), else None."""
    if isinstance(expr, str):
        return expr
    accessor = dig(expr, "operator")
    if not isinstance(accessor, dict) or accessor.get("type") != "property_accessor":
        return None
    left = ref(accessor["operands"]["operand_1"])
    right = ref(accessor["operands"]["operand_2"])
    if left is None or right is None:
        return None
    return f"{left}.{right}"


def function_name(expr: Any) -> str | None:
    """Name of the function an expression calls (``guid``, ``concat``...), else None."""
    name = dig(expr, "function", "type")
    return name if isinstance(name, str) else None


def decorator(declaration: dict[str, Any], kind: str) -> Any:
    """Argument of a decorator (``allowed``, ``min_value``, ``description``...), else None."""
    for item in declaration.get("decorators") or []:
        if item.get("type") == kind:
            return item.get("argument")
    return None


def parse_templates(paths: list[Path]) -> dict[str, Template]:
    """Parse Bicep files with pycep in the tools venv; keyed by repository-relative path."""
    python = require_tool("python")
    completed = subprocess.run(
        [str(python), "-c", _DUMP_SCRIPT, *[str(path) for path in paths]],
        cwd=REPO_ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"pycep dump failed:\n{completed.stderr[-4000:]}"
    parsed: dict[str, dict[str, Any]] = json.loads(completed.stdout)
    templates: dict[str, Template] = {}
    for path in paths:
        entry = parsed[str(path)]
        relative = path.relative_to(REPO_ROOT).as_posix()
        templates[relative] = Template(
            path=relative,
            tree=entry.get("template") or {},
            error=entry.get("error"),
            text=path.read_text(encoding="utf-8"),
        )
    return templates
