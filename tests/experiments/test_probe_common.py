"""`experiments/_probe_common.py`: the comma-separated flags the experiment scripts share."""

from __future__ import annotations

import pytest

from tests.experiments.scripts import load_experiment


@pytest.mark.parametrize(
    ("script", "flag", "value"),
    [("encoder_init", "--widths", "64,1k"), ("representation_bias", "--widths", "64,x"),
     ("demo_seeds", "--seeds", "0,one")],
)  # fmt: skip
def test_a_bad_comma_list_flag_is_a_usage_error(
    script: str, flag: str, value: str, capsys: pytest.CaptureFixture
) -> None:
    mod = load_experiment(script)
    with pytest.raises(SystemExit) as stop:
        mod.main(["--quick", flag, value])
    assert stop.value.code == 2  # argparse's usage error, before anything is trained
    err = capsys.readouterr().err
    assert f"argument {flag}: expected int values separated by commas" in err
    assert repr(value) in err


def test_comma_list_parses_each_item() -> None:
    mod = load_experiment("_probe_common")
    assert mod.comma_list(int)("256,1024") == [256, 1024]
    assert mod.comma_list(float)("1e-3,0.5") == [1e-3, 0.5]


@pytest.mark.parametrize("script", ["bench_vs_sparsify", "bench_vs_saelens"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_repeats_below_one_is_a_usage_error(
    script: str, value: str, capsys: pytest.CaptureFixture
) -> None:
    mod = load_experiment(script)
    with pytest.raises(SystemExit) as stop:
        mod.main(["--quick", "--repeats", value])
    assert stop.value.code == 2  # before sparsify or SAELens is needed
    err = capsys.readouterr().err
    assert f"argument --repeats: expected a whole number of at least 1; got {value!r}" in err
