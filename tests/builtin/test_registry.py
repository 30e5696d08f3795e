"""The registry of built-ins, and the docs' option tables kept true to the models."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from pydantic_core import PydanticUndefined

from workers.builtin.registry import BUILTINS
from workers.consumer import ConsumerSpec

PAGE = Path(__file__).parents[2] / "docs" / "builtins.md"


def options_rows(model: type[pydantic.BaseModel]) -> list[str]:
    """The table rows of a built-in's options in the docs (regenerate them with this)."""
    rows = []
    for name, info in model.model_fields.items():
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "required"
        elif info.default_factory is not None:
            default = f"`{info.default_factory()!r}`"  # type: ignore[call-arg]
        else:
            value = info.default
            default = (
                "(unset)"
                if value is None
                else f"`{str(value).lower() if isinstance(value, bool) else value}`"
            )
        rows.append(f"| `{name}` | {default} | {info.description} |")
    return rows


def test_the_registry_names_the_four_built_ins_each_with_strict_options() -> None:
    assert sorted(BUILTINS) == ["archive", "archive-files", "forward", "log"]
    for builtin in BUILTINS.values():
        assert builtin.options.model_config.get("extra") == "forbid", builtin.name
        with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
            builtin.options.model_validate({"no_such_option": 1})


def test_a_built_in_is_built_under_the_name_and_policy_the_configuration_gives() -> None:
    spec = ConsumerSpec(name="everything", routes=("#",), max_attempts=2)
    loaded = BUILTINS["log"].build(spec, BUILTINS["log"].options())
    assert loaded.spec is spec


@pytest.mark.parametrize("name", ["forward", "archive", "archive-files"])
def test_the_docs_have_every_option_of_each_built_in_as_the_model_says(name: str) -> None:
    page = PAGE.read_text()
    for row in options_rows(BUILTINS[name].options):
        assert row in page, f"{PAGE.name}: the {name} options table needs this row:\n{row}"
