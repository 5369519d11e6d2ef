import filecmp
import json

import cv2
import numpy as np
import pytest

from pose3d import cli
from pose3d.data import motion
from pose3d.data.loader import iterate_samples, make_eval_loader
from pose3d.data.shards import load_manifest
from pose3d.data.studio import StudioConfig
from pose3d.data.synth import synthesize

ACTIONS = motion.ACTIONS[:2]


def _tiny(**overrides) -> StudioConfig:
    base = dict(roles={"labeled": ("S1",), "unlabeled": ("S7",), "eval": ("S9",)},
                actions=ACTIONS, clips_per_action=1, frames_per_clip=4, frame_step=2,
                image_size=32)
    return StudioConfig(**{**base, **overrides})


def test_synthesize_writes_roles_manifest_and_preview(tmp_path):
    manifest = synthesize(tmp_path, _tiny(), samples_per_shard=3, progress=False, preview=2)
    per_subject = len(ACTIONS) * 1 * 2  # actions x clips x (4 frames / step 2)
    for role, subject in (("labeled", "S1"), ("unlabeled", "S7"), ("eval", "S9")):
        info = manifest["roles"][role]
        assert info["subjects"] == [subject] and info["samples"] == per_subject
        assert sum(s["samples"] for s in info["shards"]) == per_subject
        assert all((tmp_path / s["file"]).is_file() for s in info["shards"])
    assert load_manifest(tmp_path) == json.loads(json.dumps(manifest))
    assert len(manifest["cameras"]["S9"]) == 4 and manifest["image_size"] == 32
    assert manifest["actions"] == list(ACTIONS) and manifest["dataset"] == "synthetic"

    samples = list(iterate_samples(str(tmp_path)))
    assert len({s.key for s in samples}) == len(samples) == 3 * per_subject
    for s in samples:
        assert (s.joints3d is None) == (s.meta["role"] == "unlabeled")
        assert s.images.shape == (4, 32, 32, 3) and s.valid.all()
    preview = cv2.imread(str(tmp_path / "preview.png"))
    assert preview is not None and preview.shape[0] == 2 * 192 and preview.shape[1] == 4 * 192


def test_output_does_not_depend_on_the_number_of_workers(tmp_path):
    config = _tiny(roles={"labeled": ("S1", "S5")})
    synthesize(tmp_path / "one", config, samples_per_shard=5, progress=False)
    synthesize(tmp_path / "two", config, workers=2, samples_per_shard=5, progress=False)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        if name.endswith(".tar"):  # tar headers hold write times: compare the contents
            one, two = ([(s.key, s.images.tobytes(), s.K.tobytes())
                         for s in iterate_samples(str(tmp_path / run / name))]
                        for run in ("one", "two"))
            assert one == two
        else:
            assert filecmp.cmp(tmp_path / "one" / name, tmp_path / "two" / name, shallow=False)


def test_random_rig_and_any_subject_names(tmp_path):
    config = _tiny(roles={"labeled": ("alice",), "eval": ("bob",)}, cameras="random:3",
                   occluders=1.0)
    manifest = synthesize(tmp_path, config, progress=False)
    assert len(manifest["cameras"]["alice"]) == 3
    batch = next(iter(make_eval_loader(str(tmp_path), 2)))
    assert batch["images"].shape[1] == 3 and batch["valid"].all()


def test_bvh_clips_replace_procedural_motion(tmp_path, mocap_dir):
    paths = sorted(str(p) for p in mocap_dir.glob("*.bvh"))[:1]
    config = _tiny(roles={"labeled": ("S1",)}, actions=None, bvh=tuple(paths))
    manifest = synthesize(tmp_path, config, progress=False)
    name = manifest["actions"][0]
    assert len(manifest["actions"]) == 1 and name in paths[0]
    sample = next(iterate_samples(str(tmp_path)))
    assert sample.meta["action"] == name
    # A BVH person is person sized: about 1.5-2 m from ankles to head top.
    height = sample.joints3d[10, 2] - sample.joints3d[[3, 6], 2].min()
    assert 1200 < height < 2100


@pytest.mark.parametrize("overrides,message", [
    (dict(roles={"labeled": ("S2",)}), "no calibration for 'S2'"),
    (dict(cameras="random:1"), "random:N"),
    (dict(cameras="kinect"), "random:N"),
    (dict(roles={"train": ("S1",)}), "unknown roles"),
    (dict(frame_step=0), "frame_step"),
    (dict(occluders=2.0), "probability"),
    (dict(clips_per_role={"train": 2}), "not one of this studio's roles"),
    (dict(clips_per_role={"labeled": 0}), "must be >= 1"),
    (dict(look="colours"), "look must be one of clothing, sides"),
])
def test_bad_configs_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)


def test_unknown_action_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown actions"):
        synthesize(tmp_path, _tiny(actions=("moonwalk",)), progress=False)


def test_clips_per_role_adds_clips_to_that_role_alone(tmp_path):
    """labeled=3: three clips per action for the labeled subject, the first ones the same
    tuples as with one clip; the other roles keep clips_per_action."""
    one = tmp_path / "one"
    synthesize(one, _tiny(), samples_per_shard=50, progress=False)
    manifest = synthesize(tmp_path / "three", _tiny(clips_per_role={"labeled": 3}),
                          samples_per_shard=50, progress=False)
    per_clip = len(ACTIONS) * 2
    assert {r: e["samples"] for r, e in manifest["roles"].items()} == {
        "labeled": 3 * per_clip, "unlabeled": per_clip, "eval": per_clip}
    assert manifest["config"]["clips_per_role"] == {"labeled": 3}
    first = {s.key: s for s in iterate_samples(str(one))}
    more = {s.key: s for s in iterate_samples(str(tmp_path / "three"))}
    assert set(first) < set(more)
    for key, s in first.items():
        np.testing.assert_array_equal(np.asarray(s.images), np.asarray(more[key].images))
        if s.joints3d is not None:
            np.testing.assert_array_equal(s.joints3d, more[key].joints3d)


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "data"
    code = cli.main(["synth", "--out", str(out), "--labeled", "S5", "--unlabeled", "",
                     "--eval", "S11", "--actions", ACTIONS[0], "--clips-per-action", "1",
                     "--frames-per-clip", "3", "--frame-step", "1", "--image-size", "32",
                     "--samples-per-shard", "2", "--no-progress", "--occluders",
                     "--clips-per-role", "labeled=2"])
    assert code == 0
    manifest = load_manifest(out)
    assert set(manifest["roles"]) == {"labeled", "eval"}
    assert manifest["roles"]["eval"]["samples"] == 3
    assert manifest["roles"]["labeled"]["samples"] == 6  # two clips
    assert len(manifest["roles"]["eval"]["shards"]) == 2
    assert manifest["config"]["occluders"] == pytest.approx(0.3)
    assert "labeled: 6 tuples in 3 shards" in capsys.readouterr().out
    sample = next(iterate_samples(str(out)))
    assert np.asarray(sample.images).shape[1] == 32


def test_unlabeled_truth_is_withheld_from_training_but_scorable(tmp_path):
    from webdataset.tariterators import tarfile_samples

    from pose3d.data.shards import resolve_shards
    from pose3d.train.pgt import withheld_gt

    synthesize(tmp_path, _tiny(), samples_per_shard=3, progress=False)
    urls = resolve_shards(str(tmp_path), role="unlabeled")
    batch = next(iter(make_eval_loader(urls, batch_size=2)))
    assert not batch["has_joints3d"].any() and not batch["joints3d"].any()
    raw = next(tarfile_samples(iter([{"url": u} for u in urls])))
    truth = withheld_gt(raw)
    assert truth is not None and truth.shape == (17, 3) and np.isfinite(truth).all()
    assert 500 < truth[:, 2].max() < 2100  # a standing body's head, in mm above the floor


def test_the_look_is_recorded_and_a_dataset_of_the_other_look_is_refused(tmp_path):
    from pose3d.data.synth import config_record
    from pose3d.train.reuse import SettingsMismatch, check_dataset

    assert config_record(_tiny())["look"] == "clothing"
    synthesize(tmp_path, _tiny(look="sides", actions=(ACTIONS[0],)), progress=False)
    check_dataset(tmp_path, config_record(_tiny(look="sides", actions=(ACTIONS[0],))))
    with pytest.raises(SettingsMismatch, match="look"):
        check_dataset(tmp_path, config_record(_tiny(actions=(ACTIONS[0],))))


def test_synth_command_rejects_an_unknown_look(tmp_path, capsys):
    code = cli.main(["synth", "--out", str(tmp_path / "d"), "--look", "colours",
                     "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pose3d synth: error: look must be one of")
