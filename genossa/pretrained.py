"""Models shipped inside the package: exported models (config.json + model.safetensors, bf16) with
a model card, under genossa/resources/models/<name>/. `genossa embed`, `score` and `eval` use the
default one when no --checkpoint is given, and accept a bundled model's name in its place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genossa.errors import GenossaError
from genossa.resources import RESOURCES

BUNDLED_DIR = RESOURCES / "models"
DEFAULT_MODEL = "mini-prokaryotes"
CARD_FILE = "MODEL_CARD.md"


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    summary: str
    """The model card's first paragraph (one line)."""


def bundled_models() -> list[BundledModel]:
    """Every bundled model, by name."""
    models = []
    for path in sorted(p for p in BUNDLED_DIR.iterdir() if p.is_dir()) if BUNDLED_DIR.is_dir() else []:
        card = path / CARD_FILE
        lines = card.read_text().split("\n\n")[1:2] if card.is_file() else []
        models.append(BundledModel(path.name, path, " ".join(" ".join(lines).split())))
    return models


def resolve_checkpoint(checkpoint: str | Path | None) -> tuple[Path, str | None]:
    """(model directory, name of the bundled model used or None) for a --checkpoint value.

    None means the default bundled model; a bundled model's name selects it (a directory of that
    name in the working directory wins, as an explicit path); anything else is a path."""
    if checkpoint is not None and (Path(checkpoint).exists() or str(checkpoint) not in _names()):
        return Path(checkpoint), None
    name = DEFAULT_MODEL if checkpoint is None else str(checkpoint)
    path = BUNDLED_DIR / name
    if not (path / "model.safetensors").is_file():
        raise GenossaError(f"{path}: the bundled model {name!r} is missing from this installation; pass --checkpoint")
    return path, name


def _names() -> set[str]:
    """Bundled model names (folder names; no model card is read)."""
    return {p.name for p in BUNDLED_DIR.iterdir() if p.is_dir()} if BUNDLED_DIR.is_dir() else set()
