"""The benchmark suite's entry point still starts: its options parse, and every benchmark's
module imports and is wired to them (nothing is measured here: the benchmarks run apart)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import __main__ as entry


def test_help_lists_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        entry.main(["--help"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in entry.BENCHMARKS)


@pytest.mark.parametrize("name", entry.BENCHMARKS)
def test_each_benchmark_is_wired_to_the_options(name: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    # Given the options as the entry point parses them (its defaults)
    parsed: dict[str, argparse.Namespace] = {}
    monkeypatch.setattr(entry, "_names", lambda _values: [])
    original = argparse.ArgumentParser.parse_args

    def keep(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> object:
        parsed["args"] = original(self, *args, **kwargs)  # type: ignore[arg-type]
        return parsed["args"]

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", keep)
    assert entry.main([]) == 0
    # When the benchmark's runner is built, Then its module imports and it is callable
    assert callable(entry._runner(name, parsed["args"]))
