"""`run` spools to ./spool unless told otherwise; the `ingress` role only when told
(docs/spool.md). Built as the commands build them, nothing started."""

from __future__ import annotations

from pathlib import Path

from callback_fanout.commands.roles import services
from ingress.server import IngressService
from shared.settings import Settings


def _ingress_of(command: str, settings: Settings) -> IngressService:
    [ingress] = [s for s in services(command, settings) if isinstance(s, IngressService)]
    return ingress


def test_run_spools_to_spool_in_the_working_directory_by_default(settings: Settings) -> None:
    assert settings.spool_dir is None
    assert _ingress_of("run", settings).settings.spool_dir == Path("spool")


def test_run_keeps_a_spool_directory_it_is_given(settings: Settings, tmp_path: Path) -> None:
    given = settings.model_copy(update={"spool_dir": tmp_path / "elsewhere"})
    assert _ingress_of("run", given).settings.spool_dir == tmp_path / "elsewhere"


def test_the_ingress_role_spools_only_when_told(settings: Settings) -> None:
    assert _ingress_of("ingress", settings).settings.spool_dir is None


def test_an_empty_spool_directory_is_no_spool_for_the_ingress_role_and_spool_for_run(
    settings: Settings,
) -> None:
    """docs/spool.md: empty turns the ingress role's spool off; `run` always spools."""
    emptied = Settings.load(spool_dir="", prefix=settings.prefix, entry_points=False)
    assert _ingress_of("ingress", emptied).settings.spool_dir is None
    assert _ingress_of("run", emptied).settings.spool_dir == Path("spool")
