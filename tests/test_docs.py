"""The pages agree with the code: every relative link in README.md and docs/*.md resolves,
and the settings they state (steps, batch sizes, λ2, ...) are the ones pose3d/demo.py and
launch/configs/*.yaml hold. A value is read from the code or the config, the figure from the
page; a page that changes one without the other fails here."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from pose3d import demo
from pose3d.train.config import load_config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text().splitlines()
            if line.startswith("#")}


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """Relative links of `page` whose file (or heading anchor) does not exist in `root`."""
    bad = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file() or root not in file.parents:
            bad.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            bad.append(target)
    return bad


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading\n")
    page.write_text("[ok](there.md) [gone](missing.md) [web](https://x.org) "
                    "[anchor](there.md#a-heading) [bad anchor](there.md#nope)")
    assert broken_links(page, tmp_path) == ["missing.md", "there.md#nope"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_readme_fits_a_ten_minute_read():
    assert len((REPO / "README.md").read_text().splitlines()) <= 400


# --- settings ------------------------------------------------------------------------------

def _number(text: str) -> float:
    return float(text.replace(",", "").strip())


def _table(page: Path, heading: str) -> dict[str, list[str]]:
    """The first markdown table after `heading`: first cell -> the other cells."""
    lines = page.read_text().splitlines()
    start = lines.index(heading)
    rows = {}
    for line in lines[start + 1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _demo_settings(full: bool) -> dict[str, float]:
    """What the demo runs with, read from the configs its stages are given."""
    args = argparse.Namespace(full=full, first_seed=0, wandb="disabled", steps_scale=1.0,
                              seeds=1, lambda_mv=None, lambda_bone=None)
    cfgs = {label: load_config(None, overrides) for label, overrides in
            demo.stage_plan(args, Path("/nonexistent/runs"), Path("/nonexistent/data"))}
    steps = {stage: cfgs[label].data.batches_per_epoch * cfgs[label].optim[stage].epochs
             for label, stage in [("mv_pretrain", "mv_pretrain"), ("sv_pretrain", "sv_pretrain"),
                                  ("Ours", "finetune")]}
    batches = {cfgs[label].optim[stage].batch_size for label, stage in
               [("mv_pretrain", "mv_pretrain"), ("sv_pretrain", "sv_pretrain"),
                ("Ours", "finetune")]}
    assert len(batches) == 1, f"the page says one batch size for every stage: {batches}"
    bone = [o for o in demo.demo_arms(args)["Ours+bone"] if o.startswith("loss.lambda_bone=")]
    return {
        "image size (px)": cfgs["mv_pretrain"].data.image_size,
        "`mv_pretrain` steps": steps["mv_pretrain"],
        "`sv_pretrain` steps": steps["sv_pretrain"],
        "steps per fine-tuning": steps["finetune"],
        "batch size (tuples, every training stage)": batches.pop(),
        "P-GT labelling batch (tuples)": cfgs["pgt"].optim.pgt.batch_size,
        "λ2 of Ours (`--lambda-mv`)": cfgs["Ours"].loss.lambda_mv,
        "bone-length weight of Ours+bone (`--lambda-bone`)": float(bone[0].split("=")[1]),
        "heatmap term of `mv_pretrain` (`loss.lambda_heatmap`)":
            cfgs["mv_pretrain"].loss.lambda_heatmap,
        "P-GT read from s x the logits (`pgt.sharpen`)": cfgs["pgt"].pgt.sharpen,
    }


def test_the_demo_page_states_the_demos_settings():
    table = _table(REPO / "docs" / "demo.md", "## Settings")
    for column, full in ((0, False), (1, True)):
        for name, value in _demo_settings(full).items():
            assert name in table, f"docs/demo.md's settings table has no row {name!r}"
            stated = _number(table[name][column])
            assert math.isclose(stated, value), (name, "--full" if full else "default",
                                                 stated, value)


def test_the_readme_states_the_demos_steps():
    text = (REPO / "README.md").read_text()
    settings = _demo_settings(False)
    for stage in ("mv_pretrain", "sv_pretrain"):
        found = re.findall(r"([\d,]+)\s+`" + stage + r"`\s+steps", text)
        assert found, f"README.md no longer states the demo's {stage} steps"
        assert all(_number(f) == settings[f"`{stage}` steps"] for f in found), (stage, found)
    found = re.findall(r"fine-tunes\s+it four ways for (\d+) steps", text)
    assert found and all(_number(f) == settings["steps per fine-tuning"] for f in found)


def test_the_datasets_page_states_the_paper_configs():
    table = _table(REPO / "docs" / "datasets.md", "## The paper's configs")
    files = [c.strip("`") for c in
             next(line for line in (REPO / "docs" / "datasets.md").read_text().splitlines()
                  if line.startswith("| stage: epochs")).strip("|").split("|")[1:]]
    for column, name in enumerate(f.strip().strip("`") for f in files):
        cfg = load_config(REPO / "launch" / "configs" / name, [])
        for stage in ("mv_pretrain", "sv_pretrain", "finetune"):
            stated = [_number(v) for v in table[f"`{stage}`"][column].split("/")]
            o = cfg.optim[stage]
            assert stated == pytest.approx([o.epochs, o.batch_size, o.lr]), (name, stage)
        assert _number(table["λ2 (`loss.lambda_mv`)"][column]) == pytest.approx(
            cfg.loss.lambda_mv), name
