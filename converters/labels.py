"""The one table of expression labels.

Canonical order = AffectNet expression codes (Mollahosseini et al. 2017). Every other dataset is mapped
into it here and nowhere else. Names are lower-case single words, none a substring of another, because
Darknet's classifier finds a label by substring search in the image path (shared/ENGINES.md).
"""
from __future__ import annotations

import re

CANONICAL_NAMES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

# AffectNet codes 8-10 are annotations, not expressions.
AFFECTNET_NON_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no-face"}

# FER2013 `emotion` column (Goodfellow et al. 2013): 0 Angry ... 6 Neutral.
FER2013_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Contempt (canonical 7), which FER2013 lacks, takes the next free code, 7, so 8-class tables (AffectNet or FER+
# with --classes 8) can still be written in FER2013's CSV format.
FER2013_TO_CANONICAL = {0: 6, 1: 5, 2: 4, 3: 1, 4: 2, 5: 3, 6: 0, 7: 7}
CANONICAL_TO_FER2013 = {c: f for f, c in FER2013_TO_CANONICAL.items()}

# FER+ `fer2013new.csv` vote columns (Barsoum et al. 2016), in file order.
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                        "unknown", "NF")
FERPLUS_TO_CANONICAL = {0: 0, 1: 1, 2: 3, 3: 2, 4: 6, 5: 5, 6: 4, 7: 7}  # unknown/NF have no canonical code

# Split names we write, and the FER2013 `Usage` each corresponds to.
SPLIT_TO_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
USAGE_TO_SPLIT = {u: s for s, u in SPLIT_TO_USAGE.items()}

# Typical valence/arousal per canonical class (Russell's circumplex, as AffectNet annotates); used by the
# synthetic generator so its CSV carries plausible values.
TYPICAL_VALENCE_AROUSAL = {
    0: (0.0, 0.0), 1: (0.75, 0.35), 2: (-0.65, -0.3), 3: (0.2, 0.75),
    4: (-0.6, 0.7), 5: (-0.65, 0.35), 6: (-0.55, 0.65), 7: (-0.4, 0.2),
}


# Class names as datasets spell them -> canonical name. Exports (Roboflow's data.yaml, folder names, label CSVs)
# are mapped by name through this one table, never by index: their class order is often alphabetical.
NAME_ALIASES = {
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "anger": "anger", "angry": "anger",
    "contempt": "contempt",
}


def canonical_code(name: str, n_classes: int = 7) -> int:
    """Canonical code of a class name as a dataset spells it ('Angry', 'happiness', ...); KeyError names the
    known spellings for an unknown name, or says that contempt needs 8 classes."""
    key = str(name).strip().lower()
    if key not in NAME_ALIASES:
        raise KeyError(f"unknown class name {name!r}; known: {', '.join(sorted(NAME_ALIASES))}")
    code = CANONICAL_NAMES.index(NAME_ALIASES[key])
    if code >= n_classes:
        raise KeyError(f"class {name!r} needs --classes 8")
    return code


def class_names(n_classes: int = 7) -> tuple[str, ...]:
    """Canonical class names for a 7-class (no contempt) or 8-class label set."""
    if n_classes not in (7, 8):
        raise ValueError(f"n_classes must be 7 or 8, not {n_classes}")
    return CANONICAL_NAMES[:n_classes]


def class_index(name: str, n_classes: int = 8) -> int:
    """Canonical index of a class name; raises KeyError naming the known classes."""
    names = class_names(n_classes)
    if name not in names:
        raise KeyError(f"unknown class {name!r}; known: {', '.join(names)}")
    return names.index(name)


def fer2013_to_canonical(code: int) -> int:
    return FER2013_TO_CANONICAL[int(code)]


def canonical_to_fer2013(code: int) -> int:
    return CANONICAL_TO_FER2013[int(code)]


# ---- a dataset's own classes ("your own classes": e.g. neutral, focused, tired, angry) -------------------------
# The canonical table above stays the default and the mapping target of every known dataset; a dataset may instead
# declare its own names (a names file, its class folders, data.yaml), kept in its order, spelled as declared.
CUSTOM_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def custom_names(names) -> tuple[str, ...]:
    """A dataset's own class names, checked: lower-case single words, at least two, unique, and none inside
    another (Darknet's classifier finds a class by substring search in the image path); ValueError says which."""
    names = tuple(str(n).strip().lower() for n in names)
    bad = [n for n in names if not CUSTOM_NAME.match(n)]
    if bad:
        raise ValueError(f"class name {bad[0]!r}: use one lower-case word (letters, digits, - or _)")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"classes {', '.join(names)}: need at least two, each once")
    inside = [(a, b) for a in names for b in names if a != b and a in b]
    if inside:
        raise ValueError(f"class {inside[0][0]!r} is inside {inside[0][1]!r}: Darknet would confuse them")
    return names


def is_canonical(names) -> bool:
    return tuple(names) in (CANONICAL_NAMES[:7], CANONICAL_NAMES[:8])


def label_code(name: str, names) -> int:
    """Code of a class as a dataset spells it, in label set `names`: the canonical table (through its aliases)
    when `names` is canonical, else the dataset's own names as declared; KeyError names the known classes."""
    names = tuple(names)
    if is_canonical(names):
        return canonical_code(name, len(names))
    key = str(name).strip().lower()
    if key not in names:
        raise KeyError(f"unknown class {name!r}; this dataset's classes: {', '.join(names)}")
    return names.index(key)
