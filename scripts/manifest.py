"""weights/MANIFEST.json: every shipped model file with its sha256 and size, its model card, the recipe that trains
it and its headline figures. `python -m scripts.manifest` refreshes the checksums and sizes (keeping the other
fields) and lists files that are shipped but not described, or described but missing; tests/test_manifest.py
checks every file against it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from converters.settings import WEIGHTS_DIR

MANIFEST = WEIGHTS_DIR / "MANIFEST.json"
NOT_MODELS = {"README.md", "MANIFEST.json"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_files(folder: Path = WEIGHTS_DIR) -> list[str]:
    """Model files in weights/ (model cards and this manifest are described by, not listed in, it)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".md" and p.name not in NOT_MODELS)


def load(path: Path = MANIFEST) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"files": {}}
    except json.JSONDecodeError as exc:
        raise EmoDetError(f"{path}: not JSON ({exc})") from None


def refreshed(manifest: dict, folder: Path = WEIGHTS_DIR) -> dict:
    """The manifest with sha256 and bytes of every shipped file; entries of files no longer there dropped."""
    files = {}
    for name in shipped_files(folder):
        entry = dict(manifest.get("files", {}).get(name, {}))
        entry.update(sha256=sha256(folder / name), bytes=(folder / name).stat().st_size)
        files[name] = entry
    return {"files": files}


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="python -m scripts.manifest", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def main(argv=None) -> int:
    build_parser().parse_args(argv)
    old = load()
    new = refreshed(old)
    MANIFEST.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    gone = sorted(set(old.get("files", {})) - set(new["files"]))
    bare = sorted(n for n, e in new["files"].items() if not e.get("card"))
    print(f"{MANIFEST}: {len(new['files'])} files" + (f"; dropped (no longer shipped): {', '.join(gone)}" if gone else "")
          + (f"; without a model card: {', '.join(bare)}" if bare else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
