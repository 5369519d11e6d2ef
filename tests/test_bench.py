"""The benchmark commands run and print their tables (figures only: no timing is asserted)."""

from pose3d import cli


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|") and "---" not in line]


def test_bench_ops_soft_argmax_quick(capsys):
    assert cli.main(["bench", "ops", "--only", "soft_argmax", "--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "eager" in out and "fused" in out
    assert len(_table_rows(out)) >= 3  # header + an eager row + a fused row


def test_bench_data_small(capsys):
    assert cli.main(["bench", "data", "--sizes", "64", "--tuples", "8", "--read-epochs", "1",
                     "--batch-size", "4", "--no-model", "--device", "cpu"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert len(rows) >= 2 and any(row.split("|")[1].strip() == "64" for row in rows[1:])


def test_bench_train_quick(capsys):
    assert cli.main(["bench", "train", "--quick", "--device", "cpu", "--tuples", "8",
                     "--num-workers", "0"]) == 0
    assert len(_table_rows(capsys.readouterr().out)) >= 2
