"""Parse `darknet detector map` output of AlexeyAB and Hank.ai builds into our metrics JSON layout.

Three layouts are seen in the wild:
  legacy AlexeyAB (2018):  `class_id = 0, name = x,     ap = 12.34 %` and `mean average precision (mAP) = 0.12, ...`
  AlexeyAB 2019+:          `class_id = 0, name = x, ap = 81.44%   (TP = 58548, FP = 15629)` and `(mAP@0.50) = ...`
  Hank.ai (2023+):         a table `Id Name AvgPrecision TP FN FP TN Accuracy ErrorRate Precision Recall ...`,
                           `for conf_thresh=0.25, precision=...`, `mean average precision (mAP@0.50)=57.05%`
Colour escape codes are removed first.
"""
from __future__ import annotations

import re

from converters.errors import EmoDetError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NUM = r"(-?[0-9]*\.?[0-9]+)"
CLASS_LINE = re.compile(r"class_id\s*=\s*(\d+),\s*name\s*=\s*(.*?),\s*ap\s*=\s*" + NUM + r"\s*%"
                        r"(?:\s*\(TP\s*=\s*(\d+),\s*FP\s*=\s*(\d+)(?:,\s*FN\s*=\s*(\d+))?)?")
TABLE_LINE = re.compile(r"^\s*(\d+)\s+(.+?)\s+" + NUM + r"\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)"
                        + (r"\s+" + NUM) * 6 + r"\s*$")
PRF = re.compile(r"(?:conf_)?thresh\s*=\s*" + NUM + r",\s*precision\s*=\s*" + NUM + r",\s*recall\s*=\s*" + NUM
                 + r",\s*F1[- ]score\s*=\s*" + NUM)
COUNTS = re.compile(r"(?:conf_)?thresh\s*=\s*" + NUM + r",\s*TP\s*=\s*(\d+),\s*FP\s*=\s*(\d+),\s*FN\s*=\s*(\d+),"
                    r"\s*average IoU\s*=\s*" + NUM + r"\s*%")
MAP = re.compile(r"mean average precision \(mAP(?:@" + NUM + r")?\)\s*=\s*" + NUM + r"(?:\s*,\s*or\s*" + NUM
                 + r"\s*%|\s*(%))")
IOU = re.compile(r"IoU threshold\s*=\s*" + NUM + r"\s*%,\s*used\s+(.+?)\s*$", re.I)


def parse_darknet_map(text: str) -> dict:
    """Metrics dict (map50, precision, recall, f1, tp, fp, fn, avg_iou, per_class, layout) from map output."""
    text = ANSI.sub("", text)
    per_class, layout = {}, None
    for line in text.splitlines():
        if m := CLASS_LINE.search(line):
            layout = "alexeyab" if m.group(4) else "alexeyab-legacy"
            entry = dict(ap50=float(m.group(3)) / 100)
            if m.group(4):
                entry.update(tp=int(m.group(4)), fp=int(m.group(5)))
                if m.group(6):
                    entry["fn"] = int(m.group(6))
            per_class[m.group(2).strip()] = entry
        elif (m := TABLE_LINE.match(line)) and "--" not in line:
            layout = "hank"
            g = m.groups()
            per_class[g[1].strip()] = dict(ap50=float(g[2]) / 100, tp=int(g[3]), fn=int(g[4]), fp=int(g[5]),
                                           precision=float(g[9]), recall=float(g[10]))
    maps = MAP.findall(text)
    if not maps:
        raise EmoDetError("no 'mean average precision' line found: is this `darknet detector map` output?")
    iou_t, value, percent, bare_percent = maps[-1]
    map50 = float(value) / 100 if bare_percent else float(value)
    out = dict(layout=layout or "unknown", map50=map50, iou_threshold=float(iou_t) if iou_t else 0.5,
               per_class=per_class, style="darknet")
    if prf := PRF.findall(text):
        conf, p, r, f1 = map(float, prf[-1])
        out.update(conf=conf, precision=p, recall=r, f1=f1)
    if counts := COUNTS.findall(text):
        conf, tp, fp, fn, iou = counts[-1]
        out.update(tp=int(tp), fp=int(fp), fn=int(fn), avg_iou=float(iou) / 100)
    for line in text.splitlines():
        if m := IOU.search(line):
            out["ap_method"] = m.group(2)
            t = float(m.group(1))
            out["iou_threshold"] = t / 100 if t > 1 else t
    return out
