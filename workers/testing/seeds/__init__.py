"""The vendor's example callbacks, shipped with the package: ``seed("ocr.1.xml")``."""

from __future__ import annotations

from importlib import resources

__all__ = ["seed", "seed_names"]

_PACKAGE = "workers.testing.seeds"


def seed_names() -> list[str]:
    """The names of the bundled examples (``ocr.1.xml``, ``translation.1.json``, ...)."""
    return sorted(
        entry.name
        for entry in resources.files(_PACKAGE).iterdir()
        if entry.name.endswith((".xml", ".json"))
    )


def seed(name: str) -> bytes:
    """The bytes of one bundled example, exactly as the vendor documents it."""
    if name not in seed_names():
        known = ", ".join(seed_names())
        raise ValueError(f"no seed example {name!r} (known: {known})")
    return resources.files(_PACKAGE).joinpath(name).read_bytes()
