"""A command writes into an existing folder only what it wrote there before (issue 32 items
9, 18, 19): `pose3d demo` and `pose3d eval` refuse a folder without their marker, the demo
refuses a data/ or runs/pgt_shards it did not write, and `pose3d experiment`'s demo check
refuses a demo that did not finish, each in one line before any work, nothing changed.

The folders are crafted by hand: a refusal before any work needs no training."""

from __future__ import annotations

import pytest
import torch
from test_demo import TINY

from pose3d import cli, demo
from pose3d.data.shards import write_manifest
from pose3d.out_folder import check_ours, claim, marker
from pose3d.train.reuse import check_finished_demo


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _one_line(capsys, command: str, *expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pose3d {command}: error: ") and "\n" not in err, err
    assert all(e in err for e in expected), err


@pytest.fixture
def no_work(monkeypatch):
    """The demo's work, each step failing the test if reached."""
    monkeypatch.setitem(demo.PRESETS, "small", TINY)

    def work(*args, **kwargs):
        raise AssertionError("the demo started work before refusing")

    for name in ("synthesize", "run_stage", "evaluate_checkpoints", "run_experiment"):
        monkeypatch.setattr(demo, name, work)


USER_FOLDERS = {  # what a user keeps in the folder given as --out -> the file named first
    "a report": {"eval/report.md": "my notes", "eval/report.json": "{}",
                 "eval/figures/Base_0.png": "png", "demo_summary.json": "{}"},
    "a run folder": {"runs/finetune_ours/checkpoints/notes.txt": "mine"},
}


@pytest.mark.parametrize("case", list(USER_FOLDERS))
def test_the_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys, no_work, case):
    out = tmp_path / "u1"
    for name, text in USER_FOLDERS[case].items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _files(out)
    assert cli.main(["demo", "--out", str(out)]) == 2
    _one_line(capsys, "demo", f"--out {out} holds files pose3d demo did not write",
              marker("demo"))
    assert _files(out) == before


@pytest.mark.parametrize("seeds", ["1", "2"])
def test_the_demo_refuses_an_evaluation_folder_eval_did_not_write(tmp_path, capsys, no_work,
                                                                 seeds):
    """Inside the demo's own folder too (e.g. written by a pose3d without markers)."""
    out = claim(tmp_path / "u1", "demo")
    report = out / ("eval" if seeds == "1" else "experiment/eval/Ours/seed0") / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text("mine")
    assert cli.main(["demo", "--out", str(out), "--seeds", seeds]) == 2
    _one_line(capsys, "demo", f"{report.parent} holds files pose3d eval did not write")
    assert report.read_text() == "mine"


@pytest.mark.parametrize("where", ["data/notes.txt", "runs/pgt_shards/notes.txt"])
@pytest.mark.parametrize("marked", [True, False], ids=["demo_folder", "new_folder"])
def test_the_demo_refuses_a_data_or_pgt_folder_it_did_not_write(tmp_path, capsys, no_work,
                                                                 where, marked):
    """issue 32 item 18: refused before any work, not after minutes of training."""
    out = tmp_path / "u1"
    if marked:
        claim(out, "demo")
    (out / where).parent.mkdir(parents=True)
    (out / where).write_text("mine")
    before = _files(out)
    assert cli.main(["demo", "--out", str(out)]) == 2
    _one_line(capsys, "demo", str(out / where).rsplit("/", 1)[0] if marked else "did not write")
    assert _files(out) == before


def test_the_demo_marks_its_folder_and_passes_its_own_checks(tmp_path, capsys, no_work):
    out = tmp_path / "u1"
    with pytest.raises(AssertionError, match="started work"):  # checked, marked, then work
        cli.main(["demo", "--out", str(out)])
    assert (out / marker("demo")).is_file()
    claim(out / "eval", "eval")
    (out / "eval" / "report.md").write_text("an earlier evaluation")
    with pytest.raises(AssertionError, match="started work"):
        cli.main(["demo", "--out", str(out)])


def test_eval_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "ue"
    out.mkdir()
    (out / "report.md").write_text("mine")
    torch.save({}, tmp_path / "sv.pt")  # refused before it is read
    assert cli.main(["eval", "--data", str(tmp_path / "nowhere"), "--out", str(out),
                     "--checkpoint", f"A={tmp_path / 'sv.pt'}", "--device", "cpu"]) == 2
    _one_line(capsys, "eval", f"--out {out} holds files pose3d eval did not write (report.md;")
    assert _files(out) == {"report.md": b"mine"}


def test_check_ours_names_the_first_entry_and_accepts_absent_empty_and_marked(tmp_path):
    check_ours(tmp_path / "absent", "eval")
    (tmp_path / "empty").mkdir()
    check_ours(tmp_path / "empty", "eval")
    claim(tmp_path / "mine", "eval")
    (tmp_path / "mine" / "report.md").write_text("x")
    check_ours(tmp_path / "mine", "eval")
    with pytest.raises(FileExistsError, match="pose3d demo did not write"):
        check_ours(tmp_path / "mine", "demo")  # another command's marker is not its own


# ---- `pose3d experiment --demo`: a demo that finished -------------------------------------

def _demo(root, epoch: int, pgt_record: bool = True):
    """A demo folder by hand: manifests, Base's config and a checkpoint at `epoch` of 1."""
    for folder in (root / "data", root / "runs" / "pgt_shards"):
        folder.mkdir(parents=True)
    write_manifest(root / "data", {"roles": {}})
    write_manifest(root / "runs" / "pgt_shards",
                   {"roles": {}, **({"pgt": {"labeled": 1}} if pgt_record else {})})
    base = root / "runs" / "sv_pretrain"
    (base / "checkpoints").mkdir(parents=True)
    (base / "config.yaml").write_text("stage: sv_pretrain\n")
    torch.save({"model": {}, "step": 2 * epoch + 1, "epoch": epoch, "step_in_epoch": 0,
                "config": "optim:\n  sv_pretrain:\n    epochs: 1\n"},
               base / "checkpoints" / "latest.pt")
    return root


def test_a_finished_demo_passes(tmp_path):
    check_finished_demo(_demo(tmp_path / "demo", epoch=1))


@pytest.mark.parametrize("case", ["base_unfinished", "no_pgt_record", "no_pgt", "no_base"])
def test_a_demo_that_did_not_finish_is_refused_in_one_line(tmp_path, case):
    """issue 32 item 19: before Base is evaluated (pose3d.experiment calls it first)."""
    root = _demo(tmp_path / "demo", epoch=0 if case == "base_unfinished" else 1,
                 pgt_record=case != "no_pgt_record")
    if case == "no_pgt":
        (root / "runs" / "pgt_shards" / "manifest.json").unlink()
    if case == "no_base":
        (root / "runs" / "sv_pretrain" / "checkpoints" / "latest.pt").unlink()
    expected = {"base_unfinished": "stopped at step 1, epoch 0 of 1",
                "no_pgt_record": "holds no P-GT", "no_pgt": "pgt_shards/manifest.json",
                "no_base": "no Base"}[case]
    with pytest.raises((FileNotFoundError, ValueError), match=expected) as info:
        check_finished_demo(root)
    assert "\n" not in str(info.value) and "did not finish" in str(info.value)
