"""Progress output: a log or CI gets a few plain lines and a closing one, never carriage-return bar fragments."""
import io
import sys

from converters import progress


def test_a_log_gets_plain_lines_and_a_summary(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = progress.tracked(range(50), desc="convert", unit="img", every=10)
    assert sum(1 for _ in bar) == 50
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and 1 < len(lines) <= 6
    assert lines[-1].startswith("convert: 50/50 img") and "done in" in lines[-1]


def test_quiet_yields_everything_and_prints_nothing(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress.tracked(iter("abc"), disable=True)
    bar.set_postfix(loss=1)
    assert list(bar) == ["a", "b", "c"] and err.getvalue() == ""
