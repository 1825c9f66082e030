"""Darknet's network files, the engine's own: `.cfg` (parsed into sections, rendered from our templates, layer
shapes computed as Darknet's parser does) and `.weights` (read, written, cut after N layers like `darknet partial`).
The dataset files it reads (`.data`, `.names`, lists) are converters/darknet_files.py's."""
from __future__ import annotations

from pathlib import Path

from converters.errors import EmoDetError
from converters.io import atomic_write_bytes


# ---- .cfg -------------------------------------------------------------------------------------------------

def parse_cfg(text: str) -> list[tuple[str, dict[str, str]]]:
    """Sections in file order: [("net", {...}), ("convolutional", {...}), ...]; comments and blanks dropped."""
    sections: list[tuple[str, dict[str, str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise EmoDetError(f"cfg line {number}: unterminated section header {raw.strip()!r}")
            sections.append((line[1:-1].strip(), {}))
        elif "=" in line and sections:
            k, v = line.split("=", 1)
            sections[-1][1][k.strip()] = v.strip()
        else:
            raise EmoDetError(f"cfg line {number}: expected [section] or key=value, got {raw.strip()!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise EmoDetError("cfg must start with a [net] section")
    return sections


def _section_starts(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip().startswith("[")]


def first_layers_text(template: str, n_layers: int) -> str:
    """The raw text of a cfg (or template)'s first `n_layers` layer sections, comments kept."""
    lines = template.splitlines()
    starts = _section_starts(lines)[1:]  # [net] is not a layer
    if len(starts) < n_layers:
        raise EmoDetError(f"cfg has {len(starts)} layers, fewer than the {n_layers} asked for")
    end = starts[n_layers] if n_layers < len(starts) else len(lines)
    return "\n".join(lines[starts[0]:end]).rstrip() + "\n"


def expand_backbones(template: str, read) -> str:
    """Replace each `@backbone NAME N` line with the first N layers of template NAME (`read(NAME)` gives its text),
    so a network built on another's layers holds no second copy of them; the copied layers must hold no
    placeholders (their shapes may not depend on the dataset)."""
    out = []
    for line in template.splitlines():
        parts = line.split()
        if parts[:1] == ["@backbone"]:
            if len(parts) != 3 or not parts[2].isdigit():
                raise EmoDetError(f"cfg template: expected `@backbone NAME N`, got {line.strip()!r}")
            layers = first_layers_text(expand_backbones(read(parts[1]), read), int(parts[2]))
            if "{" in layers:
                raise EmoDetError(f"cfg template: the first {parts[2]} layers of {parts[1]} hold placeholders")
            out.append(layers)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def render_template(template: str, **values) -> str:
    """A cfg template with `{name}` placeholders filled and inline comments removed.

    Darknet's parser deletes all white space from a line and then ignores only lines *starting* with # or ;,
    so `activation=leaky  # note` would become the unknown activation `leaky#note`. Whole-line comments stay.
    An unfilled placeholder is an error, not a silent gap.
    """
    import string
    missing = {f for _, f, _, _ in string.Formatter().parse(template) if f and f not in values}
    if missing:
        raise EmoDetError(f"cfg template needs values for {sorted(missing)}")
    lines = []
    for line in template.format(**values).splitlines():
        stripped = line.strip()
        lines.append(line if stripped.startswith(("#", ";")) else line.split("#", 1)[0].rstrip())
    return "\n".join(lines) + "\n"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def layer_shapes(sections) -> list[dict]:
    """Per layer (every section after [net]): type, output (h, w, c) and the number of floats it stores in a
    .weights file, following pjreddie's parser (conv: biases, [BN scales, mean, var], weights)."""
    net = sections[0][1]
    h, w, c = int(net.get("height", 0)), int(net.get("width", 0)), int(net.get("channels", 3))
    out: list[dict] = []
    for index, (kind, opt) in enumerate(sections[1:]):
        floats = 0
        if kind in ("convolutional", "conv"):
            filters, size = int(opt.get("filters", 1)), int(opt.get("size", 1))
            stride, groups = int(opt.get("stride", 1)), int(opt.get("groups", 1))
            pad = size // 2 if int(opt.get("pad", 0)) else int(opt.get("padding", 0))
            bn = int(opt.get("batch_normalize", 0))
            floats = filters + (3 * filters if bn else 0) + filters * (c // groups) * size * size
            h, w, c = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1, filters
        elif kind in ("connected", "conn"):
            outputs, bn = int(opt.get("output", 1)), int(opt.get("batch_normalize", 0))
            floats = outputs + outputs * h * w * c + (3 * outputs if bn else 0)
            h, w, c = 1, 1, outputs
        elif kind in ("maxpool", "max"):
            size = int(opt.get("size", 1))
            stride = int(opt.get("stride", size))
            padding = int(opt.get("padding", size - 1))
            h, w = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
        elif kind in ("avgpool", "avg"):
            h, w = 1, 1
        elif kind == "upsample":
            s = int(opt.get("stride", 2))
            h, w = h * s, w * s
        elif kind == "route":
            refs = [r if r >= 0 else index + r for r in _ints(opt["layers"])]
            h, w = out[refs[0]]["h"], out[refs[0]]["w"]
            c = sum(out[r]["c"] for r in refs) // int(opt.get("groups", 1))  # groups: YOLOv4's channel split
        elif kind == "shortcut":
            ref = int(opt["from"])
            ref = ref if ref >= 0 else index + ref
            c = out[-1]["c"] if out else c
        elif kind in ("softmax", "cost", "dropout", "yolo", "region", "detection", "reorg"):
            if kind == "reorg":
                s = int(opt.get("stride", 1))
                h, w, c = h // s, w // s, c * s * s
        else:
            raise EmoDetError(f"layer {index}: section [{kind}] is not known to this Darknet reader")
        out.append(dict(index=index, type=kind, h=h, w=w, c=c, floats=floats))
    return out


# ---- .weights ---------------------------------------------------------------------------------------------
# int32 major, minor, revision; then `seen` as uint64 when major*10+minor >= 2 (as size_t in pjreddie on 64-bit
# builds, uint64 in AlexeyAB/Hank.ai), else int32; then every weight-bearing layer's floats in cfg order.
WEIGHTS_VERSION = (0, 2, 5)


def read_weights(path: Path) -> tuple[dict, object]:
    """(header, float32 array of every stored value)."""
    import numpy as np
    data = Path(path).read_bytes()
    if len(data) < 16:
        raise EmoDetError(f"{path}: {len(data)} bytes is too short for a Darknet .weights header")
    major, minor, revision = np.frombuffer(data[:12], dtype="<i4")
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    seen = int(np.frombuffer(data[12:20], "<u8")[0]) if wide else int(np.frombuffer(data[12:16], "<i4")[0])
    body = data[20:] if wide else data[16:]
    if len(body) % 4:
        raise EmoDetError(f"{path}: body of {len(body)} bytes is not a whole number of float32 values")
    header = dict(major=int(major), minor=int(minor), revision=int(revision), seen=seen)
    return header, np.frombuffer(body, dtype="<f4")


def write_weights(path: Path, floats, seen: int = 0, version=WEIGHTS_VERSION) -> Path:
    import numpy as np
    header = np.array(version, dtype="<i4").tobytes() + np.array([seen], dtype="<u8").tobytes()
    atomic_write_bytes(Path(path), header + np.asarray(floats, dtype="<f4").tobytes())
    return Path(path)


def expected_floats(sections, n_layers: int | None = None) -> int:
    """Floats a .weights file holds for the first `n_layers` layers (all when None)."""
    return sum(l["floats"] for l in layer_shapes(sections)[:n_layers])


def check_weights(cfg_path: Path, weights_path: Path, n_layers: int | None = None) -> dict:
    """Header and size of a .weights file against its cfg; raises with the numbers when they disagree."""
    sections = parse_cfg(Path(cfg_path).read_text())
    header, floats = read_weights(weights_path)
    want = expected_floats(sections, n_layers)
    if len(floats) != want:
        raise EmoDetError(f"{weights_path}: {len(floats)} floats, but {cfg_path} "
                          f"({'all' if n_layers is None else n_layers} layers) needs {want}")
    return dict(header, floats=len(floats))


def cut_weights(sections, floats, n_layers: int):
    """The floats of the first `n_layers` layers: what `darknet partial cfg weights out N` keeps."""
    return floats[:expected_floats(sections, n_layers)]
