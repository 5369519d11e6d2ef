"""`pose3d convert` reruns and interruptions (issue 26): the resume cache is data, never
executed, and keyed by the source files; a killed run's partial folder is removed by the
next; Ctrl-C is one line and exit 130 with the earlier dataset intact; a NaN or a truncated
CDF is named before the run. On a tiny official-release fixture (h36m_release_data)."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
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
def test_samples_cached_with_other_extrinsics_are_not_reused(release, tmp_path, monkeypatch,
                                                             capsys, field):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _fail_on(monkeypatch, "TakingPhoto")
    assert _convert(release, out, "--cache", str(cache)) == 2
    monkeypatch.undo()
    capsys.readouterr()
    monkeypatch.setattr(h36m_official, "h36m_cameras", _recalibrated(field))
    assert _convert(release, out, "--cache", str(cache)) == 0
    err = capsys.readouterr().err
    assert "cache: S1 Directions-1 (labeled): cached with other options or cameras; " \
           "converting it again" in err, err
    assert "reusing" not in err


def test_samples_cached_before_a_change_of_the_rig_code_are_not_reused(release, tmp_path,
                                                                      monkeypatch, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _fail_on(monkeypatch, "TakingPhoto")
    assert _convert(release, out, "--cache", str(cache)) == 2
    monkeypatch.undo()
    capsys.readouterr()
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


def test_the_reuse_line_says_what_the_cache_key_covers(release, tmp_path, monkeypatch,
                                                       capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    _fail_on(monkeypatch, "TakingPhoto")
    assert _convert(release, out, "--cache", str(cache)) == 2
    monkeypatch.undo()
    capsys.readouterr()
    assert _convert(release, out, "--cache", str(cache)) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "reusing" in x)
    for covered in ("options", "cameras", "code", "size", "modification time",
                    "not their content"):
        assert covered in line, line


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


def _interrupt_once_converting(code: str, *args: str) -> tuple[int, str]:
    """Run `python -c CODE ARGS` (convert_hooks: its workers block), wait until a worker
    says it is converting, then SIGINT the whole process group, as a terminal's Ctrl-C
    does. Returns the exit status and stderr; a hang fails on the (generous) timeout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
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
    waiting forever for the task queue's feeder thread to hand it to the dead workers."""
    code, err = _interrupt_once_converting(
        "import sys, convert_hooks; sys.exit(convert_hooks.run_writer(sys.argv[1]))",
        str(tmp_path / "out"))
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
