"""Notification templates: Jinja2, HTML autoescaped, looked up by name and locale.

A template ``<name>`` is the files ``<name>.txt`` (plain text part) and/or
``<name>.html`` (HTML part, autoescaped) in ``consumer/templates`` (or a configured
directory searched first). A locale such as ``fr-CA`` tries ``<name>.fr-CA.txt``, then
``<name>.fr.txt``, then ``<name>.txt``. Templates see the event's ``parameters`` as
variables plus ``subject`` and ``recipient``; a missing variable is an error.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)

from consumer.errors import ConsumerDeadLetterReason, PermanentError

BUILT_IN = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Rendered:
    """A rendered template: ``text`` always, ``html`` when the template has one."""

    text: str
    html: str | None


class Templates:
    """Renders templates from ``extra_dir`` (if given) and the built-in directory."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        search = [str(extra_dir)] if extra_dir else []
        self._env = Environment(
            loader=FileSystemLoader([*search, str(BUILT_IN)]),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(
        self, name: str, parameters: dict[str, Any], *, locale: str | None = None, **extra: Any
    ) -> Rendered:
        """Render template ``name``.

        Raises:
            PermanentError: ``TemplateNotFound`` (no text or HTML file for the name) or
                ``TemplateRenderFailed`` (missing parameter, template error).
        """
        context = {**parameters, **extra}
        text = self._render_part(name, "txt", locale, context)
        html = self._render_part(name, "html", locale, context)
        if text is None and html is None:
            raise PermanentError(
                ConsumerDeadLetterReason.TEMPLATE_NOT_FOUND, f"no template named {name!r}"
            )
        return Rendered(text=text if text is not None else "", html=html)

    def _render_part(
        self, name: str, extension: str, locale: str | None, context: dict[str, Any]
    ) -> str | None:
        candidates = []
        if locale:
            candidates.append(f"{name}.{locale}.{extension}")
            language = locale.split("-")[0]
            if language != locale:
                candidates.append(f"{name}.{language}.{extension}")
        candidates.append(f"{name}.{extension}")
        for candidate in candidates:
            try:
                template = self._env.get_template(candidate)
            except TemplateNotFound:
                continue
            try:
                return template.render(context)
            except TemplateError as exc:
                raise PermanentError(
                    ConsumerDeadLetterReason.TEMPLATE_RENDER_FAILED, f"{candidate}: {exc}"
                ) from exc
        return None
