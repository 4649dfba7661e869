"""``gradflow figures``: copy a results directory's figures to ``OUT/<name>``.

A figures folder may sit among a user's own files (a thesis's ``figures/``), so
nothing is ever deleted that gradflow did not write: each folder it fills gets
a manifest (:data:`MANIFEST`) listing the files it copied and the digest of the
config they came from. Only those files are replaced, and only when the config
is the same (or with ``force``); any other file is left where it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from gradflow import results

#: The manifest gradflow writes into every figures folder it fills.
MANIFEST = ".gradflow-figures.json"


class FiguresRefused(ValueError):
    """A figures folder that gradflow may not write into (one line, no traceback)."""


def config_digest(directory: Path) -> str:
    """The sha256 of a results directory's ``config.toml``: which config it ran."""
    return hashlib.sha256((directory / results.CONFIG).read_bytes()).hexdigest()


def _read_manifest(target: Path) -> dict | None:
    path = target / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if not all(isinstance(f, str) and "/" not in f for f in files):
            raise ValueError(files)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise FiguresRefused(
            f"{path} is damaged ({err!r}), so gradflow cannot tell its own files "
            f"in {target} from yours; move them, or choose another --out"
        ) from None
    return manifest


def check_separate(out: Path, results_dir: Path) -> None:
    """Refuse ``--out`` and ``--results`` that overlap (one holds the other)."""
    a, b = out.resolve(), results_dir.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise FiguresRefused(
            f"--out {out} and --results {results_dir} overlap; the figures are "
            f"copied out of the results directories, so give two separate folders"
        )


def check_target(target: Path, digest: str | None, *, force: bool) -> None:
    """Refuse a figures folder gradflow may not fill; ``digest`` None: not yet run.

    Raises:
        FiguresRefused: ``target`` is not a folder, holds files gradflow did not
            write there, or holds figures of a different config (without
            ``force``).
    """
    if not target.exists():
        return
    if not target.is_dir():
        raise FiguresRefused(f"{target} exists and is not a folder")
    manifest = _read_manifest(target)
    if manifest is None:
        theirs = sorted(p.name for p in target.iterdir())
        if theirs:
            shown = ", ".join(theirs[:5]) + (" ..." if len(theirs) > 5 else "")
            raise FiguresRefused(
                f"{target} holds files gradflow did not write ({shown}); gradflow "
                f"never replaces or deletes them: move them, or choose another --out"
            )
        return
    same = digest is None or manifest.get("config_sha256") == digest
    if not same and not force:
        raise FiguresRefused(
            f"{target} holds figures of a different config of "
            f"{manifest.get('experiment', '?')!r}; pass --force to replace them "
            f"(only the files gradflow wrote there), or choose another --out"
        )


def copy_figures(source: Path, target: Path, experiment: str, digest: str) -> None:
    """Copy ``source``'s figures into ``target``, replacing only gradflow's own.

    Files that the manifest lists but this run did not make are removed (they
    are gradflow's, from an earlier run); every other file is left alone.
    """
    manifest = _read_manifest(target) if target.exists() else None
    ours = set(manifest["files"]) if manifest else set()
    target.mkdir(parents=True, exist_ok=True)
    made = sorted(f for f in source.glob("*") if f.is_file()) if source.exists() else []
    names = {f.name for f in made}
    theirs = {p.name for p in target.iterdir()} - ours - {MANIFEST}
    clash = sorted(names & theirs)
    if clash:
        raise FiguresRefused(
            f"{target} holds {', '.join(clash)}, which gradflow did not write; "
            f"move them, or choose another --out"
        )
    for name in sorted(ours - names):
        (target / name).unlink(missing_ok=True)
    for f in made:
        shutil.copy2(f, target / f.name)
    results.atomic_write_json(
        target / MANIFEST,
        {"experiment": experiment, "config_sha256": digest, "files": sorted(names)},
    )
