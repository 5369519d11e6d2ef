import io
import os
import tarfile
import warnings

import cv2
import numpy as np
import pytest
import torch
from studio_helpers import write_dataset

from pose3d.data import schema
from pose3d.data.loader import (
    CorruptSampleWarning,
    _recolour,
    collate,
    iterate_samples,
    make_eval_loader,
    make_train_loader,
)
from pose3d.data.shards import ShardSetWriter, load_manifest, resolve_shards, shards_for_role
from pose3d.geometry import Camera, project
from pose3d.skeleton import JOINT_NAMES

SIZE = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Labeled S1 and unlabeled S7, 8 tuples each, in shards of 2 -> 8 shards."""
    out = tmp_path_factory.mktemp("studio")
    write_dataset(out, {"labeled": ("S1",), "unlabeled": ("S7",)}, clips=2, frames=4,
                  image_size=SIZE, samples_per_shard=2)
    manifest = load_manifest(out)
    assert manifest["roles"]["labeled"]["samples"] == 8  # 1 action x 2 clips x 4 frames
    return out


def _keys(loader):
    return [k for batch in loader for k in batch["key"]]


def test_manifest_lists_roles_shards_and_subjects(dataset):
    manifest = load_manifest(dataset)
    assert manifest["image_size"] == SIZE and len(manifest["joint_names"]) == 17
    labeled = manifest["roles"]["labeled"]
    assert labeled["subjects"] == ["S1"] and [s["samples"] for s in labeled["shards"]] == [2] * 4
    assert manifest["roles"]["unlabeled"]["samples"] == 8
    assert len(shards_for_role(dataset, "unlabeled")) == 4


def test_batches_have_the_documented_layout(dataset):
    loader = make_eval_loader(str(dataset), batch_size=3)
    batch = next(iter(loader))
    B, V = 3, 4
    assert batch["images"].shape == (B, V, 3, SIZE, SIZE) and batch["images"].dtype == torch.float32
    assert batch["K"].shape == (B, V, 3, 3) and batch["R"].shape == (B, V, 3, 3)
    assert batch["t"].shape == (B, V, 3) and batch["valid"].shape == (B, V)
    assert batch["joints3d"].shape == (B, 17, 3) and batch["pgt"].shape == (B, 17, 3)
    assert batch["has_joints3d"].all() and not batch["has_pgt"].any()
    assert len(batch["key"]) == B and batch["subject"] == ["S1"] * B
    # The images are the stored JPEGs, ImageNet-normalised.
    first = next(iterate_samples(resolve_shards(str(dataset))))
    mean, std = torch.tensor(schema.IMAGE_MEAN), torch.tensor(schema.IMAGE_STD)
    pixels = batch["images"][0].permute(0, 2, 3, 1) * std + mean
    assert batch["key"][0] == first.key
    np.testing.assert_allclose(pixels.numpy() * 255, first.images, atol=0.01)
    np.testing.assert_allclose(batch["K"][0].numpy(), first.K)


def test_unlabeled_batches_carry_no_pose(dataset):
    batch = next(iter(make_eval_loader(shards_for_role(dataset, "unlabeled"), 4)))
    assert not batch["has_joints3d"].any() and not batch["joints3d"].any()


def test_eval_two_ranks_two_workers_visit_every_sample_once(dataset):
    every = set(_keys(make_eval_loader(str(dataset), batch_size=5)))
    assert len(every) == 16
    per_rank = [_keys(make_eval_loader(str(dataset), batch_size=2, num_workers=2, rank=r,
                                       world_size=2)) for r in range(2)]
    seen = per_rank[0] + per_rank[1]
    assert len(seen) == len(set(seen)) == 16 and set(seen) == every
    assert all(len(keys) > 0 for keys in per_rank)


def test_eval_with_fewer_shards_than_slots_splits_inside_shards(dataset):
    shards = shards_for_role(dataset, "unlabeled")[:1]  # 2 samples, 3 ranks
    per_rank = [_keys(make_eval_loader(shards, 1, rank=r, world_size=3)) for r in range(3)]
    assert sorted(len(k) for k in per_rank) == [0, 1, 1]
    assert len(set(sum(per_rank, []))) == 2


def test_train_two_ranks_two_workers_split_one_pass_disjointly(dataset):
    # 8 shards x 2 tuples over 2 ranks x 2 workers: one pass is 4 tuples per slot. Without
    # the sample shuffle (which reads ahead into the next pass) that is exactly the epoch.
    per_rank = []
    for rank in range(2):
        loader = make_train_loader(str(dataset), batch_size=1, num_workers=2, rank=rank,
                                   world_size=2, batches_per_epoch=8, seed=3,
                                   shuffle_buffer=1)
        keys = _keys(loader)
        assert len(keys) == len(loader) == 8
        per_rank.append(keys)
    seen = per_rank[0] + per_rank[1]
    assert len(set(seen)) == len(seen) == 16  # disjoint, and together the whole set
    loader = make_train_loader(str(dataset), batch_size=2, rank=0, world_size=1, seed=3,
                               shuffle_buffer=1)
    assert len(loader) == 8 and len(set(_keys(loader))) == 16  # default: one pass


@pytest.mark.parametrize("batches", [1, 5, 13])
def test_train_every_rank_yields_exactly_the_requested_batches(dataset, batches):
    # 8 shards over 3 ranks (uneven shares), some with 2 workers: same count everywhere.
    for rank in range(3):
        loader = make_train_loader(str(dataset), batch_size=3, num_workers=2 if rank else 0,
                                   rank=rank, world_size=3, batches_per_epoch=batches)
        sizes = [len(b["key"]) for b in loader]
        assert sizes == [3] * batches


def test_train_order_depends_on_seed_and_epoch_only(dataset):
    def keys(seed, epoch):
        return _keys(make_train_loader(str(dataset), 2, seed=seed, epoch=epoch,
                                       batches_per_epoch=4, shuffle_buffer=4))
    assert keys(0, 0) == keys(0, 0)
    assert keys(0, 0) != keys(0, 1) and keys(0, 0) != keys(1, 0)
    loader = make_train_loader(str(dataset), 2, batches_per_epoch=4, shuffle_buffer=4)
    loader.set_epoch(1)
    assert _keys(loader) == keys(0, 1)


def _mixed_keys(dataset, labeled, unlabeled, batches, **kw):
    groups = [resolve_shards(str(dataset), "labeled")[:labeled],
              resolve_shards(str(dataset), "unlabeled")[:unlabeled]]
    return _keys(make_train_loader(groups, 1, batches_per_epoch=batches, shuffle_buffer=1,
                                   **kw))


def test_groups_mix_sample_by_sample_in_proportion_to_their_sizes(dataset):
    """Labeled S1 (3 shards, 6 tuples) and unlabeled S7 (1 shard, 2 tuples): S7 comes a
    quarter of the time. A stream of whole shards (shards of 2, no sample shuffle) would
    always start with two tuples of one shard; the mixture mixes from the first two on.
    The same (seed, epoch) gives the same order."""
    keys = _mixed_keys(dataset, 3, 1, 400, seed=0)
    s7 = np.array(["S7" in k for k in keys])
    assert abs(s7.mean() - 0.25) < 0.07
    firsts = [_mixed_keys(dataset, 3, 1, 2, seed=seed) for seed in range(20)]
    mixed = sum(("S7" in a) != ("S7" in b) for a, b in firsts)
    assert mixed >= 3  # expected 20 x 2 x 0.25 x 0.75 = 7.5
    assert _mixed_keys(dataset, 3, 1, 16, seed=4) == _mixed_keys(dataset, 3, 1, 16, seed=4)
    assert _mixed_keys(dataset, 3, 1, 16, seed=4) != _mixed_keys(dataset, 3, 1, 16, seed=5)


def test_one_group_reads_as_the_plain_list(dataset):
    urls = resolve_shards(str(dataset))
    plain = _keys(make_train_loader(urls, 2, seed=1, batches_per_epoch=6, shuffle_buffer=4))
    assert _keys(make_train_loader([urls], 2, seed=1, batches_per_epoch=6,
                                   shuffle_buffer=4)) == plain
    with pytest.raises(ValueError, match="not both"):
        make_train_loader([urls, urls[0]], 2)


def test_shard_order_changes_with_the_epoch(dataset):
    # Without the sample shuffle (buffer 1) the order of the keys is the order of the shards:
    # a new epoch must bring a new shard order, the same epoch the same one.
    def shard_order(epoch):
        keys = _keys(make_train_loader(str(dataset), 2, seed=0, epoch=epoch,
                                       batches_per_epoch=8, shuffle_buffer=1))
        assert len(set(keys)) == 16  # one whole pass
        return keys
    first = shard_order(0)
    assert shard_order(0) == first
    assert shard_order(1) != first and shard_order(2) != first
    assert shard_order(1) != shard_order(2)


def _marker_dataset(out, image_size=128, tuples=4, views=4):
    """Grey views with one white disc drawn where the left wrist projects, written by hand
    (pinhole cameras looking along +z from different places)."""
    rng = np.random.default_rng(7)
    wrist = JOINT_NAMES.index("left_wrist")
    K = np.array([[90.0, 0.0, image_size / 2], [0.0, 90.0, image_size / 2], [0, 0, 1]])
    with ShardSetWriter(out, samples_per_shard=2) as writer:
        for i in range(tuples):
            pose = rng.uniform(-300, 300, size=(17, 3))
            images, cameras = [], []
            for _ in range(views):
                cam = Camera(K, np.eye(3), np.array([*rng.uniform(-300, 300, 2), 3000.0]))
                u, v = cam.project(pose[wrist:wrist + 1])[0]
                img = np.full((image_size, image_size, 3), 100, np.uint8)
                cv2.circle(img, (round(u * 16), round(v * 16)), 3 * 16, (255, 255, 255), -1,
                           cv2.LINE_AA, shift=4)
                images.append(img)
                cameras.append(cam)
            meta = {"subject": "S1", "action": "marker", "frame": i, "role": "labeled"}
            writer.write(schema.encode_sample(images, cameras, pose, meta))
    return wrist


def _marker_centres(images: torch.Tensor) -> torch.Tensor:
    """Brightness-weighted centre (u, v) of the bright disc in each view [..., 3, S, S]."""
    mean, std = torch.tensor(schema.IMAGE_MEAN), torch.tensor(schema.IMAGE_STD)
    grey = (images * std.view(3, 1, 1) + mean.view(3, 1, 1)).mean(dim=-3)  # [..., S, S]
    flat = grey.flatten(-2)
    low, high = flat.median(dim=-1).values, flat.amax(dim=-1)
    w = (grey - ((low + high) / 2)[..., None, None]).clamp_min(0)
    s = grey.shape[-1]
    coords = torch.arange(s, dtype=torch.float32)
    u = (w * coords).sum(dim=(-2, -1)) / w.sum(dim=(-2, -1))
    v = (w * coords[:, None]).sum(dim=(-2, -1)) / w.sum(dim=(-2, -1))
    return torch.stack([u, v], dim=-1)


def test_augmented_pixels_land_where_the_augmented_camera_projects(tmp_path):
    wrist = _marker_dataset(tmp_path)
    for augment in (False, True):
        batch = next(iter(make_train_loader(str(tmp_path), 4, batches_per_epoch=1, seed=5,
                                            shuffle_buffer=1, augment=augment)))
        found = _marker_centres(batch["images"])  # [B, V, 2] pixels
        point = batch["joints3d"][:, None, wrist:wrist + 1].expand(-1, 4, -1, -1)
        expected = project(point, batch["K"], batch["R"], batch["t"])[..., 0, :]
        err = (found - expected).norm(dim=-1)
        assert err.max() < 1.0, (augment, err)  # pixels
    # the augmentation did move the markers: by more than the tolerance somewhere
    plain = next(iter(make_train_loader(str(tmp_path), 4, batches_per_epoch=1, seed=5,
                                        shuffle_buffer=1)))
    assert (_marker_centres(plain["images"]) - found).norm(dim=-1).max() > 3.0


def test_augment_moves_the_cameras_with_the_pixels(dataset):
    plain = next(iter(make_train_loader(str(dataset), 4, batches_per_epoch=1, seed=5,
                                        shuffle_buffer=1)))
    aug = next(iter(make_train_loader(str(dataset), 4, batches_per_epoch=1, seed=5,
                                      shuffle_buffer=1, augment=True)))
    assert plain["key"] == aug["key"]
    assert not torch.equal(plain["K"], aug["K"])
    torch.testing.assert_close(plain["R"], aug["R"])
    # A pixel (u, v) of the plain image sits at A (u, v) in the augmented one, A = K' K^-1.
    A = aug["K"] @ torch.linalg.inv(plain["K"])
    torch.testing.assert_close(A[..., 2, :], torch.tensor([0.0, 0.0, 1.0]).expand_as(A[..., 2, :]))
    assert (A[..., 0, 0] - A[..., 1, 1]).abs().max() < 1e-4  # zoom, no shear


def test_recolour_gives_every_view_of_a_tuple_the_same_new_colours():
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (6, 3)).astype(np.uint8)  # six colours, a 2x3 patch each
    views = np.stack([np.repeat(np.repeat(palette[np.roll(np.arange(6), v)].reshape(2, 3, 3),
                                          4, axis=0), 4, axis=1) for v in range(3)])
    valid = np.array([True, True, False])
    seen_grey = seen_colour = False
    for seed in range(20):
        out = _recolour(views, valid, np.random.default_rng(seed))
        np.testing.assert_array_equal(out[2], views[2])  # an invalid view is left alone
        # a colour gets one new colour, whichever view and pixel it is in
        mapping: dict[tuple, tuple] = {}
        for v in (0, 1):
            for before, after in zip(views[v].reshape(-1, 3), out[v].reshape(-1, 3)):
                assert mapping.setdefault(tuple(before), tuple(after)) == tuple(after)
        grey = all(len(set(c)) == 1 for c in mapping.values())
        seen_grey |= grey
        seen_colour |= not grey and any(k != v for k, v in mapping.items())
    assert seen_grey and seen_colour


def test_colour_augmentation_changes_pixels_not_geometry(dataset):
    def batch(**kw):
        return next(iter(make_train_loader(str(dataset), 4, batches_per_epoch=1, seed=5,
                                           shuffle_buffer=1, **kw)))

    plain, coloured = batch(), batch(augment_colour=True)
    assert plain["key"] == coloured["key"] and not torch.equal(plain["images"],
                                                               coloured["images"])
    for name in ("K", "R", "t", "joints3d", "valid"):
        assert torch.equal(plain[name], coloured[name]), name
    assert torch.equal(coloured["images"], batch(augment_colour=True)["images"])  # seeded


def test_collate_pads_tuples_with_fewer_views():
    def record(views):
        return {"images": np.zeros((views, 8, 8, 3), np.uint8),
                "K": np.tile(np.eye(3, dtype=np.float32), (views, 1, 1)),
                "R": np.tile(np.eye(3, dtype=np.float32), (views, 1, 1)),
                "t": np.ones((views, 3), np.float32), "valid": np.ones(views, bool),
                "joints3d": np.zeros((17, 3), np.float32), "has_joints3d": False,
                "pgt": np.zeros((17, 3), np.float32), "has_pgt": False,
                "key": "k", "subject": "s", "action": "a"}
    batch = collate([record(2), record(3)])
    assert batch["images"].shape == (2, 3, 3, 8, 8)
    assert batch["valid"].tolist() == [[True, True, False], [True, True, True]]
    assert torch.isfinite(batch["K"]).all()
    bigger = record(2)
    bigger["images"] = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="image sizes"):
        collate([record(2), bigger])


# ---- bad input ---------------------------------------------------------------------------------

def _rewrite(src: str, dst: str, edit) -> None:
    """Copy a shard, passing each member (name, bytes) through edit (None drops it)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            data = edit(member.name, tin.extractfile(member).read())
            if data is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


@pytest.fixture
def damaged(dataset, tmp_path):
    """Copies of the labeled shards: one truncated, one with a corrupt JPEG, one missing a
    view, one missing its cameras; one good. Returns (paths, good keys)."""
    src = shards_for_role(dataset, "labeled")  # 4 shards x 2 tuples
    first_key = {}
    for path in src:
        with tarfile.open(path) as tar:
            first_key[path] = tar.getnames()[0].split(".")[0]

    def corrupt_jpeg(name, data):
        return data[:len(data) // 3] if name.endswith("view1.jpg") and \
            name.startswith(first_key[src[1]]) else data

    def drop_view(name, data):
        return None if name == f"{first_key[src[2]]}.view3.jpg" else data

    def drop_cameras(name, data):
        return None if name == f"{first_key[src[3]]}.cameras.npy" else data

    paths = []
    for i, edit in enumerate([None, corrupt_jpeg, drop_view, drop_cameras]):
        dst = str(tmp_path / f"bad-{i}.tar")
        _rewrite(src[i], dst, edit or (lambda name, data: data))
        paths.append(dst)
    with tarfile.open(paths[0]) as tar:  # where the second tuple's files lie
        members = tar.getmembers()
    second = [m for m in members if m.name.split(".")[0] != members[0].name.split(".")[0]]
    second = [m for m in second if m.name.split(".")[0] == second[0].name.split(".")[0]]
    cut = (second[0].offset_data + second[-1].offset_data) // 2
    with open(paths[0], "r+b") as f:  # cut the first shard inside its second tuple
        f.truncate(cut)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar file" * 50)
    good = str(tmp_path / "good.tar")
    _rewrite(shards_for_role(dataset, "unlabeled")[0], good, lambda name, data: data)
    return paths + [str(garbage), good]


def test_eval_skips_and_counts_bad_input(damaged):
    loader = make_eval_loader(damaged, batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = _keys(loader)
    # Kept: first tuple of the truncated shard, the second tuple of shards 1-3, good shard.
    assert len(keys) == 1 + 3 + 2 and len(set(keys)) == len(keys)
    assert loader.skipped["sample"] == 4  # truncated remnant, jpeg, view, cameras
    assert loader.skipped["tar"] >= 2  # the truncated tar and the garbage file
    messages = [str(w.message) for w in caught if w.category is CorruptSampleWarning]
    assert any("corrupt JPEG" in m and "bad-1.tar" in m for m in messages)
    assert any("view 3 is marked valid" in m for m in messages)
    assert any("garbage.tar" in m for m in messages)


def test_skip_counts_come_back_from_worker_processes(damaged):
    loader = make_eval_loader(damaged, batch_size=2, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keys = _keys(loader)
    assert len(keys) == 6 and loader.skipped["sample"] == 4


def test_train_over_bad_input_still_yields_full_epochs(damaged):
    loader = make_train_loader(damaged, batch_size=2, batches_per_epoch=7, num_workers=2,
                               shuffle_buffer=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sizes = [len(b["key"]) for b in loader]
    assert sizes == [2] * 7 and loader.skipped["sample"] > 0


def test_train_over_only_unreadable_shards_raises_instead_of_hanging(tmp_path):
    bad = []
    for i in range(2):
        path = tmp_path / f"junk-{i}.tar"
        path.write_bytes(os.urandom(700))
        bad.append(str(path))
    loader = make_train_loader(bad, batch_size=2, batches_per_epoch=3)
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="none of the 2 shards"):
        warnings.simplefilter("ignore")
        list(loader)


def test_shard_specs_resolve_or_fail_clearly(dataset, tmp_path):
    everything = resolve_shards(str(dataset))
    assert len(everything) == 8
    assert resolve_shards(str(dataset), role="labeled") == shards_for_role(dataset, "labeled")
    assert resolve_shards(str(dataset / "labeled-{000000..000001}.tar")) == everything[:2]
    assert resolve_shards(str(dataset / "unlabeled-*.tar")) == everything[4:]
    with pytest.raises(FileNotFoundError, match="no shards match"):
        resolve_shards(str(tmp_path / "nothing-*.tar"))
    with pytest.raises(FileNotFoundError, match="no shards match"):
        make_train_loader(str(tmp_path), batch_size=2)
    with pytest.raises(FileNotFoundError, match="no such shard file.*gone.tar"):
        resolve_shards([str(dataset / "labeled-000000.tar"), str(tmp_path / "gone.tar")])
    with pytest.raises(FileNotFoundError, match="no such shard file"):
        resolve_shards(str(tmp_path / "not-a-folder"))
    with pytest.raises(FileNotFoundError, match="eval"):
        shards_for_role(dataset, "eval")
    with pytest.raises(ValueError, match="rank"):
        make_eval_loader(str(dataset), 2, rank=2, world_size=2)


def test_uint8_batches_normalise_to_the_float_batches(dataset):
    plain = next(iter(make_eval_loader(str(dataset), 2)))
    raw = next(iter(make_eval_loader(str(dataset), 2, normalize=False)))
    assert raw["images"].dtype == torch.uint8 and raw["images"].shape == plain["images"].shape
    before = raw["images"].clone()
    torch.testing.assert_close(schema.normalize_images(raw["images"]), plain["images"])
    assert torch.equal(raw["images"], before)
    with pytest.raises(ValueError, match="3, H, W"):
        schema.normalize_images(torch.zeros(2, 4, 8, 8))


@pytest.fixture(scope="module")
def unequal_shards(tmp_path_factory):
    """GT: S1, 8 tuples in 4 shards of 2; P-GT stand-in: S7, 20 tuples in 2 shards of 10
    (the real sets' 200 vs 1,000 tuples per shard, scaled down)."""
    root = tmp_path_factory.mktemp("unequal")
    write_dataset(root / "gt", {"labeled": ("S1",)}, clips=2, frames=4, image_size=16,
                  samples_per_shard=2)
    write_dataset(root / "pgt", {"unlabeled": ("S7",)}, clips=5, frames=4, image_size=16,
                  samples_per_shard=10)
    return [resolve_shards(str(root / "gt")), resolve_shards(str(root / "pgt"))]


def test_groups_mix_by_samples_not_by_shards(unequal_shards):
    """4 shards of 2 against 2 shards of 10: P-GT tuples are 20 of 28 (5/7 = 0.71); mixing
    by shard count would give 2 of 6 shards (0.33)."""
    gt, pgt = unequal_shards
    assert (len(gt), len(pgt)) == (4, 2)  # the layout the expectation is computed for
    keys = _keys(make_train_loader([gt, pgt], 1, batches_per_epoch=600, shuffle_buffer=1,
                                   seed=0))
    share = np.mean(["S7" in k for k in keys])
    assert abs(share - 20 / 28) < 0.06  # 3 binomial standard deviations (0.018 each)
