"""`pose3d convert` reruns and interruptions (issue 26): the resume cache is data, never
executed, and keyed by the source files; a killed run's partial folder is removed by the
next; Ctrl-C is one line and exit 130 with the earlier dataset intact; a NaN or a truncated
CDF is named before the run. On a tiny official-release fixture (h36m_release_data)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import convert_hooks
import numpy as np
import pytest
from convert_data import read_dataset
from h36m_release_data import build_release, pose_at, write_cdf
from train_helpers import REPO

from pose3d import cli
from pose3d.data.convert import cache as sample_cache
from pose3d.data.convert import h36m_official, h36m_release
from pose3d.data.convert.h36m_official import H36MReleaseOptions, plan_release
from pose3d.data.convert.writer import ConversionUnit, write_dataset
from pose3d.data.schema import check_name, encode_sample, placeholder_camera
from pose3d.data.shards import load_manifest, write_manifest
from pose3d.geometry import Camera, h36m_rig
from pose3d.geometry.camera import rotation_from_quaternion

TAKES = {"S1": {"Directions 1": (4, 4), "TakingPhoto": (4, 4)}}
CDF = Path("S1") / "MyPoseFeatures" / "D3_Positions"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("h36m_small") / "h36m"
    root.mkdir()
    build_release(root, takes=TAKES)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "h36m"))


def _convert(root: Path, out: Path, *extra: str) -> int:
    return cli.main(["convert", "h36m", "--source", str(root), "--out", str(out),
                     "--subjects", "labeled=S1", "--roles", "labeled", "--image-size", "32",
                     "--frame-step", "1", "--no-progress", *extra])


def _options(root: Path, cache: Path) -> H36MReleaseOptions:
    """What _convert asks for (to find where its cache files go)."""
    return H36MReleaseOptions(image_size=32, splits={"labeled": ("S1",)}, frame_step=1,
                              cache=cache)


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _fail_on(monkeypatch, prefix: str, error: type[BaseException] = ValueError) -> None:
    """Make the conversion stop when it reaches the take `prefix`."""
    real = h36m_official._samples

    def samples(unit):
        if unit.take.prefix == prefix:
            raise error("stopped")
        yield from real(unit)

    monkeypatch.setattr(h36m_official, "_samples", samples)


def test_a_planted_pickle_in_the_cache_is_ignored_not_run(release, tmp_path, capsys):
    cache = tmp_path / "cache"
    plan = plan_release(release, _options(release, cache), tmp_path / "out")
    marker = tmp_path / "marker"
    planted = [u.payload.cache.path for u in plan.units]
    for path in planted:  # where the run looks for finished sequences
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(_WritesMarker(marker)))
    assert _convert(release, tmp_path / "out", "--cache", str(cache)) == 0
    err = capsys.readouterr().err
    assert not marker.exists()
    for path in planted:
        assert f"cache: ignoring {path}: not a pose3d-convert-cache file" in err, err
    samples = read_dataset(tmp_path / "out")
    assert len(samples) == 8  # two takes of 4 frames, converted from the videos
    assert not cache.exists()  # the run's cache files are gone once it completes


def test_a_source_fixed_after_a_failed_run_is_read_again(release, tmp_path, monkeypatch,
                                                        capsys):
    root, cache, out = _copy(release, tmp_path), tmp_path / "cache", tmp_path / "out"
    _fail_on(monkeypatch, "TakingPhoto")
    assert _convert(root, out, "--cache", str(cache)) == 2  # Directions 1 finished, cached
    monkeypatch.undo()
    capsys.readouterr()

    # fix Directions 1's poses: every joint 50 mm higher, in the file the cache came from
    cdf = root / CDF / "Directions 1.cdf"
    fixed = np.stack([pose_at("S1", "Directions 1", f) for f in range(4)]) + [0, 0, 50.0]
    cdf.unlink()
    write_cdf(cdf, fixed)
    stat = cdf.stat()  # an edit within the clock's resolution must still count as one
    os.utime(cdf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    assert _convert(root, out, "--cache", str(cache)) == 0
    err = capsys.readouterr().err
    assert "cache: S1 Directions-1 (labeled): source file(s) changed since: " \
           "Directions 1.cdf; converting it again" in err, err
    assert "reusing" not in err
    got = {s.meta["frame"]: s.joints3d for s in read_dataset(out).values()
           if s.meta["source_file"] == "Directions 1"}
    assert sorted(got) == [0, 1, 2, 3]
    for frame, joints in got.items():
        np.testing.assert_allclose(joints, fixed[frame], atol=1e-2)


def test_an_unchanged_source_is_reused_and_the_run_says_so(release, tmp_path, monkeypatch,
                                                          capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _fail_on(monkeypatch, "TakingPhoto")
    assert _convert(release, out, "--cache", str(cache)) == 2
    monkeypatch.undo()
    capsys.readouterr()
    reads = []
    real_read = h36m_release.VideoFrames.read
    monkeypatch.setattr(h36m_release.VideoFrames, "read",
                        lambda self, i: reads.append(self.path.name) or real_read(self, i))
    assert _convert(release, out, "--cache", str(cache)) == 0
    err = capsys.readouterr().err
    assert f"cache: reusing 1 finished unit(s) from {cache}" in err, err
    assert "S1 Directions-1 (labeled)" in err
    # only the first-frame probes touch Directions 1's videos; its frames come from the cache
    assert sum(name.startswith("Directions 1.") for name in reads) == 4


def test_samples_cached_by_other_converter_code_are_not_reused(release, tmp_path,
                                                             monkeypatch, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _fail_on(monkeypatch, "TakingPhoto")
    assert _convert(release, out, "--cache", str(cache)) == 2
    monkeypatch.undo()
    capsys.readouterr()
    # a pose3d update between the runs: the modules that shape samples read differently
    monkeypatch.setattr(h36m_official, "_SAMPLE_CODE", (*h36m_official._SAMPLE_CODE, np))
    assert _convert(release, out, "--cache", str(cache)) == 0
    err = capsys.readouterr().err
    assert "cache: S1 Directions-1 (labeled): cached by another version of the converter; " \
           "converting it again" in err, err
    assert "reusing" not in err


@pytest.fixture(scope="module")
def cached(release, tmp_path_factory) -> Path:
    """A cache folder holding Directions 1's finished samples (a run stopped at TakingPhoto)."""
    cache = tmp_path_factory.mktemp("cached") / "cache"
    with pytest.MonkeyPatch.context() as patch:
        _fail_on(patch, "TakingPhoto")
        assert _convert(release, cache.parent / "out", "--cache", str(cache)) == 2
    return cache


def _cache_copy(cached: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cached, tmp_path / "cache"))


def _recalibrated(field: str):
    """h36m_cameras with one field of S1's first camera corrected, as a calibration fix in
    pose3d/geometry/h36m_rig.py would."""
    real = h36m_official.h36m_cameras
    change = {"R": lambda c: c.R @ rotation_from_quaternion((0.9999, 0.0, 0.0, 0.0141)),
              "t": lambda c: c.t + [10.0, 0.0, 0.0],
              "dist": lambda c: c.dist + [0.01, 0.0, 0.0, 0.0, 0.0]}[field]

    def cameras(subject: str) -> list[Camera]:
        rig = real(subject)
        if subject == "S1":
            c = rig[0]
            fields = {"K": c.K, "R": c.R, "t": c.t, "dist": c.dist, field: change(c)}
            rig[0] = Camera(fields["K"], fields["R"], fields["t"], fields["dist"],
                            c.image_size, c.name)
        return rig

    return cameras


@pytest.mark.parametrize("field", ["R", "t", "dist"])
def test_samples_cached_with_other_extrinsics_are_not_reused(cached, release, tmp_path,
                                                             monkeypatch, capsys, field):
    cache, out = _cache_copy(cached, tmp_path), tmp_path / "out"
    monkeypatch.setattr(h36m_official, "h36m_cameras", _recalibrated(field))
    assert _convert(release, out, "--cache", str(cache)) == 0
    err = capsys.readouterr().err
    assert "cache: S1 Directions-1 (labeled): cached with other options or cameras; " \
           "converting it again" in err, err
    assert "reusing" not in err


def test_samples_cached_before_a_change_of_the_rig_code_are_not_reused(cached, release,
                                                                      tmp_path, monkeypatch,
                                                                      capsys):
    cache, out = _cache_copy(cached, tmp_path), tmp_path / "out"
    fixed = tmp_path / "h36m_rig.py"  # the calibration module, edited
    fixed.write_text(Path(h36m_rig.__file__).read_text() + "# calibration fixed\n")
    monkeypatch.setattr(h36m_rig, "__file__", str(fixed))
    sample_cache.code_stamp.cache_clear()
    try:
        assert _convert(release, out, "--cache", str(cache)) == 0
    finally:
        monkeypatch.undo()
        sample_cache.code_stamp.cache_clear()
    err = capsys.readouterr().err
    assert "cache: S1 Directions-1 (labeled): cached by another version of the converter; " \
           "converting it again" in err, err
    assert "reusing" not in err


def test_the_reuse_line_says_what_the_cache_key_covers(cached, release, tmp_path, capsys):
    cache, out = _cache_copy(cached, tmp_path), tmp_path / "out"
    assert _convert(release, out, "--cache", str(cache)) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "reusing" in x)
    for covered in ("options", "cameras", "code", "size", "modification time",
                    "not their content"):
        assert covered in line, line


def _rewrite(edit, deflate: tuple[str, ...] = ()):
    """A damage of a cache file: its zip written again with `edit(members)` applied to its
    {name: bytes}; the members named in `deflate` compressed (the format stores them)."""
    def apply(path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        edit(members)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, data in members.items():
                archive.writestr(name, data,
                                 zipfile.ZIP_DEFLATED if name in deflate else None)
    return apply


def _header(edit):
    """An edit of the parsed header.json."""
    def apply(members: dict) -> None:
        header = json.loads(members["header.json"])
        edit(header)
        members["header.json"] = json.dumps(header).encode()
    return apply


def _meta(i: int, edit):
    """An edit of sample i's parsed meta.json."""
    def apply(members: dict) -> None:
        meta = json.loads(members[f"{i:06d}/meta.json"])
        edit(meta)
        members[f"{i:06d}/meta.json"] = json.dumps(meta).encode()
    return apply


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _flip_a_view_byte(path: Path) -> None:
    """Damage a stored JPEG's bytes in place: the member's CRC no longer matches."""
    with zipfile.ZipFile(path) as archive:
        jpeg = archive.read("000002/view1.jpg")
    raw = bytearray(path.read_bytes())
    at = raw.find(jpeg) + len(jpeg) // 2
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _add_field(members: dict) -> None:
    _header(lambda h: h["samples"][0].update({"../../evil": "bytes"}))(members)
    members["000000/../../evil"] = b"x"


def _set(name: str, data: bytes):
    return lambda members: members.update({name: data})


# (what is forged or damaged: a function of the cache file, what its one line says)
BAD_CACHES = {
    "a member with a bad CRC": (_flip_a_view_byte, "CRC"),
    "a missing member": (_rewrite(lambda m: m.pop("000001/cameras.npy")), "cameras.npy"),
    "role outside the roles": (_rewrite(_meta(0, lambda m: m.update(role="../../ESCAPED"))),
                               "role"),
    "role of another unit": (_rewrite(_meta(1, lambda m: m.update(role="eval"))), "role"),
    "subject with a path": (_rewrite(_meta(0, lambda m: m.update(subject="../S1"))),
                            "subject"),
    "action of another take": (_rewrite(_meta(0, lambda m: m.update(action="Walking"))),
                               "action"),
    "frame of another tuple": (_rewrite(_meta(3, lambda m: m.update(frame=7))), "frame"),
    "camera name with a path": (
        _rewrite(_meta(0, lambda m: m.update(camera_names=["../x"] * 4))), "camera"),
    "meta without valid": (_rewrite(_meta(0, lambda m: m.pop("valid"))), "valid"),
    "meta of another type": (_rewrite(_set("000000/meta.json", b"[1, 2]")), "meta"),
    "samples of the wrong type": (
        _rewrite(_header(lambda h: h.update(samples=[5, 5, 5, 5]))), "sample 0"),
    "samples not a list": (_rewrite(_header(lambda h: h.update(samples="four"))), "samples"),
    "a field outside the format": (_rewrite(_add_field), "field"),
    "header nested 200,000 deep": (
        _rewrite(_set("header.json", b"[" * 200_000 + b"]" * 200_000)), "header"),
    "header nested 20,000 deep": (
        _rewrite(_set("header.json", b"[" * 20_000 + b"]" * 20_000)), "RecursionError"),
    "a non-JPEG view": (_rewrite(_set("000000/view0.jpg", bytes(2000))), "JPEG"),
    "cameras of another shape": (
        _rewrite(_set("000000/cameras.npy", _npy(np.zeros(3, np.float32)))), "cameras"),
    "joints of another shape": (
        _rewrite(_set("000000/joints3d.npy", _npy(np.zeros((16, 3), np.float32)))),
        "joints3d"),
    "non-finite joints": (
        _rewrite(_set("000000/joints3d.npy", _npy(np.full((17, 3), np.nan, np.float32)))),
        "joints3d"),
    "a key that is not the sample's": (_rewrite(_set("000000/__key__", b"../../x")), "key"),
}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_a_bad_cache_is_replaced_saying_so_in_one_line(cached, release, tmp_path, capsys,
                                                       case):
    """A forged or damaged cache file: ignored with one line, converted again, replaced
    (so the next run does not fail the same way); nothing read from it reaches a file
    name or the shards."""
    path = next(_cache_copy(cached, tmp_path).rglob("*.samples.zip"))
    damage, reason = BAD_CACHES[case]
    damage(path)
    _check_the_bad_cache_is_replaced(release, tmp_path, capsys, path, reason)


def _check_the_bad_cache_is_replaced(release: Path, tmp_path: Path, capsys, path: Path,
                                     reason: str) -> None:
    out = tmp_path / "out"
    try:
        code = _convert(release, out, "--cache", str(path.parent.parent))
        err = capsys.readouterr().err
        escaped = list(tmp_path.parent.glob("ESCAPED*")) + list(tmp_path.rglob("ESCAPED*"))
    finally:
        for stray in tmp_path.parent.glob("ESCAPED*"):
            stray.unlink()
    assert code == 0 and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if str(path) in x]
    assert len(lines) == 1 and lines[0].startswith(f"cache: ignoring {path}: ") and \
        lines[0].endswith("; converting S1 Directions-1 (labeled) again"), err
    assert reason in lines[0], lines[0]
    assert not escaped
    samples = read_dataset(out)  # every view a JPEG of the run's size, every field sound
    assert sorted((s.meta["source_file"], s.meta["frame"]) for s in samples.values()) == \
        [(take, f) for take in ("Directions 1", "TakingPhoto") for f in range(4)]
    assert {s.meta["role"] for s in samples.values()} == {"labeled"}
    assert load_manifest(out)["roles"]["labeled"]["samples"] == 8
    assert {p.name for p in out.iterdir()} == {"labeled-000000.tar", "manifest.json"}


@pytest.mark.parametrize("deflate, reason", [(False, "4194304 bytes"),
                                             (True, "compressed")])
def test_a_member_larger_than_its_field_allows_is_never_read(cached, release, tmp_path,
                                                            capsys, monkeypatch, deflate,
                                                            reason):
    """A view of 4 MB of zeros, stored, or deflated into a 5 KB file: refused from the
    zip's directory (its size, its compression), before its bytes are read."""
    path = next(_cache_copy(cached, tmp_path).rglob("*.samples.zip"))
    name = "000000/view0.jpg"
    _rewrite(_set(name, bytes(4 << 20)), (name,) if deflate else ())(path)
    read = []
    real_open = zipfile.ZipFile.open

    def opening(self, member, mode="r", *args, **kwargs):
        if mode == "r" and Path(self.filename) == path:
            read.append(getattr(member, "filename", member))
        return real_open(self, member, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", opening)
    _check_the_bad_cache_is_replaced(release, tmp_path, capsys, path, reason)
    assert name not in read


@pytest.mark.parametrize("kind, value, ok", [
    ("role", "labeled", True), ("role", "eval", True), ("role", "../../ESCAPED", False),
    ("role", "Labeled", False), ("role", ["labeled"], False),
    ("subject", "S1", True), ("action", "Directions 1", True), ("camera", "54138969", True),
    ("subject", "..", False), ("subject", ".", False), ("subject", ".hidden", False),
    ("action", "../x", False), ("action", "a/b", False), ("action", "a\\b", False),
    ("subject", "", False), ("subject", "S" * 129, False), ("subject", "S\x00", False),
    ("subject", 5, False), ("subject", None, False),
])
def test_names_read_from_data_are_plain(kind, value, ok):
    if ok:
        assert check_name(kind, value) == value
    else:
        with pytest.raises(ValueError, match=kind):
            check_name(kind, value)


def _yield_payload(payload: dict):
    yield payload


def test_the_writer_refuses_a_sample_of_another_role_than_its_unit(tmp_path):
    """The shards' file names and the summary's counts follow the unit's role: a sample
    claiming another is refused, not written under its claim."""
    sample = encode_sample([np.zeros((8, 8, 3), np.uint8)], [placeholder_camera(8)], None,
                           {"subject": "S1", "action": "a", "frame": 0, "role": "eval"})
    with pytest.raises(ValueError, match="meta role 'eval' is not its unit's, labeled"):
        write_dataset(tmp_path / "out", [ConversionUnit("labeled", 1, sample)],
                      _yield_payload, progress=False)
    assert not list(tmp_path.rglob("*.tar"))


def _fake_dataset(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "labeled-000000.tar").write_bytes(b"old shard")
    write_manifest(folder, {"roles": {"labeled": {"samples": 1, "subjects": ["S1"], "shards": [
        {"file": "labeled-000000.tar", "samples": 1}]}}})
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_ctrl_c_is_one_line_exit_130_and_keeps_the_dataset(release, tmp_path, monkeypatch,
                                                          capsys):
    out = tmp_path / "out"
    before = _fake_dataset(out)
    _fail_on(monkeypatch, "TakingPhoto", KeyboardInterrupt)
    assert _convert(release, out, "--overwrite", "--cache", str(tmp_path / "cache")) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pose3d convert h36m: interrupted"), err
    assert f"{out} was left as it was" in err and str(tmp_path / "cache") in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


# A terminal's Ctrl-C finds SIGINT handled. A test run started in the background by a
# shell without job control (`pytest ... &` in a script, nohup) ignores SIGINT, and every
# process it starts inherits that: the command would never see the test's SIGINT.
_AS_FROM_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_once_converting(code: str, *args: str,
                               launched_ignoring_sigint: bool = False) -> tuple[int, str]:
    """Run `python -c CODE ARGS` (convert_hooks: its workers block), wait until a worker
    says it is converting, then SIGINT the whole process group, as a terminal's Ctrl-C
    does. Returns the exit status and stderr; a hang fails on the (generous) timeout.
    `launched_ignoring_sigint`: start it as a background job of a script would be."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _AS_FROM_A_TERMINAL + code, *args],
                            cwd=REPO, env=env, start_new_session=True,
                            preexec_fn=_ignore_sigint if launched_ignoring_sigint else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # a command stuck before converting is killed, which ends the wait below (EOF)
    watchdog = threading.Timer(120, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in proc.stdout:  # ends at EOF if the command exits before converting
            if line.strip() == convert_hooks.STARTED:
                break
        watchdog.cancel()
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="process groups and SIGINT")
def test_ctrl_c_with_workers_prints_one_line(release, tmp_path):
    """Ctrl-C while two worker processes convert: they get it too (same process group);
    the conversion cannot finish first, since its workers block until killed."""
    out = tmp_path / "out"
    before = _fake_dataset(out)
    argv = ["convert", "h36m", "--source", str(release), "--out", str(out), "--subjects",
            "labeled=S1", "--roles", "labeled", "--image-size", "32", "--no-progress",
            "--overwrite", "--workers", "2", "--cache", str(tmp_path / "cache")]
    code, err = _interrupt_once_converting(
        "import sys, convert_hooks; sys.exit(convert_hooks.run_cli(sys.argv[1:]))", *argv)
    assert code == 130, err
    assert err.strip().count("\n") == 0 and "interrupted" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="process groups and SIGINT")
def test_ctrl_c_exits_while_tasks_are_still_queued(tmp_path):
    """More queued work than a pipe holds when Ctrl-C comes: the process exits instead of
    waiting forever for the task queue's feeder thread to hand it to the dead workers.
    Launched with SIGINT ignored, as a script's `&` starts the test run: this hung once,
    both Ctrl-C tests one after the other, before the helper reset SIGINT (after the reset
    the command is where a terminal would have started it, so one launch covers both)."""
    code, err = _interrupt_once_converting(
        "import sys, convert_hooks; sys.exit(convert_hooks.run_writer(sys.argv[1]))",
        str(tmp_path / "out"), launched_ignoring_sigint=True)
    assert code == 130, err
    assert err.strip() == "interrupted", err


def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(release, tmp_path, capsys):
    out = tmp_path / "out"
    stage = ("import os, signal, sys, time\nfrom pose3d.data.staging import staged_dataset\n"
             "with staged_dataset(sys.argv[1]) as tmp:\n"
             "    (tmp / 'labeled-000000.tar').write_bytes(b'half')\n"
             "    print(tmp, flush=True)\n"
             "    time.sleep(float(sys.argv[2])) if sys.argv[2] != 'kill' else "
             "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    live = subprocess.Popen([sys.executable, "-c", stage, str(out), "60"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        running = Path(live.stdout.readline().strip())  # a run still writing: not an orphan
        killed = subprocess.run([sys.executable, "-c", stage, str(out), "kill"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert killed.returncode == -signal.SIGKILL
        orphan = Path(killed.stdout.strip())
        assert orphan.is_dir() and running.is_dir()  # what a killed conversion leaves
        assert _convert(release, out) == 0
        assert not orphan.exists() and running.is_dir()
        assert f"removed {orphan}" in capsys.readouterr().err
        assert load_manifest(out)["roles"]["labeled"]["samples"] == 8
    finally:
        live.kill()
        live.wait()


def test_nan_in_a_cdf_is_named_before_the_run(release, tmp_path, capsys):
    root = _copy(release, tmp_path)
    cdf = root / CDF / "TakingPhoto.cdf"
    poses = np.stack([pose_at("S1", "TakingPhoto", f) for f in range(4)])
    poses[2, 5, 1] = np.nan
    cdf.unlink()
    write_cdf(cdf, poses)
    with pytest.raises(ValueError, match="NaN or infinite in 1 frame.*at frame 2"):
        plan_release(root, _options(root, tmp_path / "cache"))
    out = tmp_path / "out"
    assert _convert(root, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(cdf) in err and "frame 2" in err, err
    assert not out.exists()


@pytest.mark.parametrize("keep", [0.5, 0.93])
def test_a_truncated_cdf_is_named(release, tmp_path, capsys, keep):
    root = _copy(release, tmp_path)
    cdf = root / CDF / "TakingPhoto.cdf"
    data = cdf.read_bytes()
    cdf.write_bytes(data[:int(len(data) * keep)])
    out = tmp_path / "out"
    assert _convert(root, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(cdf) in err, err
    assert not out.exists()


def test_a_labels_npy_that_would_run_code_is_refused(tmp_path, capsys):
    """learnable-triangulation's labels file is a pickled .npy: it may build arrays and
    plain containers, nothing that runs."""
    marker = tmp_path / "marker"
    labels = tmp_path / "h36m" / "extra" / "human36m-multiview-labels-GTbboxes.npy"
    labels.parent.mkdir(parents=True)
    payload = np.empty((), dtype=object)
    payload[()] = {"subject_names": ["S1"], "table": _WritesMarker(marker)}
    np.save(labels, payload, allow_pickle=True)
    (tmp_path / "h36m" / "processed").mkdir()
    code = cli.main(["convert", "h36m", "--source", str(tmp_path / "h36m"), "--out",
                     str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(labels) in err, err
    assert "builtins.exec" in err and not marker.exists()
    assert not (tmp_path / "out").exists()
