"""Settings groups: a field typed as another ``BaseSettings`` class, read under that class's
own ``env_prefix``.

pydantic-settings reads a nested model only as ``PREFIX_FIELD`` (JSON) or
``PREFIX_FIELD__SUB`` and ignores the nested class's own ``env_prefix``
(https://github.com/pydantic/pydantic-settings/issues/279). A group keeps flat variable
names (``CONSUMER_SMTP_HOST``) while code reads ``settings.smtp.host``: the outer class
returns :func:`grouped_env_sources` from ``settings_customise_sources``, and
:mod:`common.settings_errors` and ``tools.settings_reference`` resolve a group's variables
with :func:`settings_group`.
"""

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

__all__ = [
    "GroupedEnvSettingsSource",
    "grouped_env_sources",
    "settings_group",
    "settings_groups",
]


def settings_group(annotation: Any) -> type[BaseSettings] | None:
    """The ``BaseSettings`` class a field of this annotation holds, if it is a group."""
    if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
        return annotation
    return None


def settings_groups(model: type[BaseModel]) -> dict[str, type[BaseSettings]]:
    """``model``'s group fields by name, in declaration order."""
    groups: dict[str, type[BaseSettings]] = {}
    for name, info in model.model_fields.items():
        group = settings_group(info.annotation)
        if group is not None:
            groups[name] = group
    return groups


class GroupedEnvSettingsSource(EnvSettingsSource):
    """The environment, reading each group field with the group's own prefix.

    A group field is never read from ``PREFIX_FIELD`` or ``PREFIX_FIELD__SUB``: its
    variables have one spelling only. Its values reach the group's validation as a dict,
    so errors point at ``(field, sub_field)`` in the one ``ValidationError``.
    """

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        """The group's variables as a dict (``None`` when none is set); other fields as
        pydantic-settings prepares them."""
        group = settings_group(field.annotation)
        if group is None:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        values = EnvSettingsSource(
            group,
            case_sensitive=self.case_sensitive,
            env_ignore_empty=self.env_ignore_empty,
            env_parse_none_str=self.env_parse_none_str,
            env_parse_enums=self.env_parse_enums,
        )()
        return values or None


def grouped_env_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    dotenv_settings: PydanticBaseSettingsSource,
    file_secret_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """pydantic-settings' default sources with the environment one grouped; return it from
    ``settings_customise_sources`` (same arguments)."""
    env = env_settings
    if isinstance(env_settings, EnvSettingsSource):
        env = GroupedEnvSettingsSource(
            settings_cls,
            case_sensitive=env_settings.case_sensitive,
            env_prefix=env_settings.env_prefix,
            env_nested_delimiter=env_settings.env_nested_delimiter,
            env_ignore_empty=env_settings.env_ignore_empty,
            env_parse_none_str=env_settings.env_parse_none_str,
            env_parse_enums=env_settings.env_parse_enums,
        )
    return init_settings, env, dotenv_settings, file_secret_settings
