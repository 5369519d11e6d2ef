"""Thread counts on a shared CPU (issue 34): who decides the count (the user, torchrun's and
xdist's shares), and the governor's decision from /proc/stat readings written here."""

from __future__ import annotations

import os

import conftest
import pytest
import torch

from pose3d import threads
from pose3d.threads import CpuSample, ThreadGovernor, decide, default_threads, others_load


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on `n` CPUs: cores(n)."""
    def set_cores(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))
    return set_cores


@pytest.fixture
def keep_torch_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("env, explicit, n_cores, expected", [
    ({}, None, 8, 8),  # alone: every core
    ({"OMP_NUM_THREADS": "3"}, None, 8, 3),  # the user's env wins
    ({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "2"}, None, 8, 3),
    ({"OMP_NUM_THREADS": "3"}, 5, 8, 5),  # an explicit --threads / run.threads wins over it
    ({}, 0, 8, 8),  # 0: auto
    ({"OMP_NUM_THREADS": "4,2"}, None, 8, 4),  # OpenMP's nested list: the outer count
    ({"OMP_NUM_THREADS": "zero"}, None, 8, 8),  # not a count: ignored
    ({"LOCAL_WORLD_SIZE": "2"}, None, 8, 4),  # torchrun: the node's cores per worker
    ({"LOCAL_WORLD_SIZE": "3"}, None, 8, 2),
    ({"PYTEST_XDIST_WORKER_COUNT": "2"}, None, 8, 4),  # xdist: per worker
    ({"PYTEST_XDIST_WORKER_COUNT": "4"}, None, 2, 1),  # at least 1
    ({"LOCAL_WORLD_SIZE": "4"}, None, 3, 1),
    # a share a pose3d launcher set is not the user's: it is recomputed (and adapted)
    ({"OMP_NUM_THREADS": "1", threads.LAUNCHER_ENV: "1"}, None, 4, 4),
    ({"OMP_NUM_THREADS": "2", threads.LAUNCHER_ENV: "1"}, None, 4, 2),  # changed: the user's
])
def test_default_threads_rules(env, explicit, n_cores, expected, cores):
    cores(n_cores)
    assert default_threads(explicit, env) == expected


def test_available_cores_is_the_affinity_not_the_machine(cores, monkeypatch):
    cores(3)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert threads.available_cores() == 3


def test_launcher_env_gives_each_worker_its_marked_share(cores, monkeypatch):
    cores(4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = threads.launcher_env(2)
    assert env == {"OMP_NUM_THREADS": "2", threads.LAUNCHER_ENV: "2"}
    assert threads.user_threads(None, env) is None  # the workers still adapt it
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.launcher_env(2) == {}  # the user's count reaches the workers as it is


def test_conftest_gives_an_xdist_worker_its_share(cores, monkeypatch, keep_torch_threads):
    cores(4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    torch.set_num_threads(4)
    conftest.pytest_configure(None)
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's count wins under xdist too
    conftest.pytest_configure(None)
    assert torch.get_num_threads() == 1


# ---- the governor: load from /proc/stat, and the decision -----------------------------------

HZ = 100


def test_others_load_is_the_cpus_busy_time_less_our_own():
    # 2 CPUs, 1 s: 200 jiffies pass; 150 busy, of which our process used 0.5 s = 50 jiffies
    before = CpuSample(busy=1000, total=5000, own_s=10.0)
    after = CpuSample(busy=1150, total=5200, own_s=10.5)
    assert others_load(before, after, cpus=2, hz=HZ) == pytest.approx(1.0)
    alone = CpuSample(busy=1100, total=5200, own_s=11.0)  # all the busy time was ours
    assert others_load(before, alone, cpus=2, hz=HZ) == pytest.approx(0.0)


def test_read_proc_stat_sums_only_our_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(  # user nice system idle iowait irq softirq steal guest guest_nice
        "cpu  300 0 30 900 30 0 0 0 0 0\n"
        "cpu0 100 0 10 300 10 0 0 0 0 0\n"
        "cpu1 200 0 20 300 10 0 0 0 0 0\n"
        "cpu2 0 0 0 300 10 0 0 0 0 0\n"
        "intr 12345\n")
    assert threads.read_proc_stat({0, 1}, stat) == (330, 950)
    assert threads.read_proc_stat({2}, stat) == (0, 310)
    assert threads.read_proc_stat({0}, tmp_path / "missing") is None
    assert threads.read_proc_stat({7}, stat) is None


@pytest.mark.parametrize("current, others, cores, ceiling, expected", [
    (2, 0.0, 2, 2, 2),  # quiet: all cores
    (2, 1.0, 2, 2, 1),  # one CPU-bound neighbour takes a core
    (2, 0.6, 2, 2, 1),  # part of a core is a whole one to OpenMP
    (2, 0.4, 2, 2, 2),  # below the claim threshold: kept
    (1, 1.0, 2, 2, 1),  # the neighbour is still there
    (1, 0.4, 2, 2, 1),  # between the thresholds: no change (hysteresis)
    (1, 0.1, 2, 2, 2),  # the neighbour went: the core comes back
    (2, 2.0, 2, 2, 1),  # never below 1
    (8, 3.0, 8, 8, 5),
    (5, 2.4, 8, 8, 5),  # between the thresholds of a third held core: stays
    (5, 1.2, 8, 8, 7),  # two of the three held cores released
    (4, 0.0, 16, 4, 4),  # never above the ceiling (the process's share)
    (4, 8.0, 16, 4, 4),  # torchrun siblings' load leaves the share
    (4, 13.0, 16, 4, 3),
])
def test_decide(current, others, cores, ceiling, expected):
    assert decide(current, others, cores, ceiling) == expected


def test_decide_does_not_flap_on_a_load_that_wavers():
    n, seen = 2, []
    for others in [1.0, 0.45, 0.3, 0.45, 0.3, 0.45, 0.1, 0.45, 0.3, 0.45]:
        n = decide(n, others, 2, 2)
        seen.append(n)
    assert seen == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]


class FakeMachine:
    """A 2-CPU /proc/stat and this process's CPU time, advanced by hand."""

    def __init__(self, path) -> None:
        self.path, self.t, self.busy, self.total, self.own = path, 0.0, 0, 0, 0.0
        self.write()

    def write(self) -> None:
        half = self.busy // 2
        self.path.write_text(f"cpu0 {half} 0 0 {self.total // 2 - half} 0 0 0 0\n"
                             f"cpu1 {self.busy - half} 0 0 "
                             f"{self.total - self.total // 2 - self.busy + half} 0 0 0 0\n")

    def run(self, seconds: float, ours: float, others: float) -> None:
        """`seconds` pass with `ours` and `others` cores busy."""
        hz = os.sysconf("SC_CLK_TCK")
        self.t += seconds
        self.total += round(2 * seconds * hz)
        self.busy += round((ours + others) * seconds * hz)
        self.own += ours * seconds
        self.write()


def test_governor_gives_a_core_to_a_neighbour_and_takes_it_back(tmp_path, cores):
    cores(2)
    m = FakeMachine(tmp_path / "stat")
    set_to = []
    gov = ThreadGovernor(2, True, stat_path=m.path, clock=lambda: m.t, own_time=lambda: m.own,
                         set_threads=set_to.append)
    assert gov.enabled and gov.step() == 2
    m.run(1.0, ours=1.0, others=1.0)
    assert gov.step() == 2 and set_to == []  # 1 s: too soon to look
    m.run(1.5, ours=1.0, others=1.0)
    assert gov.step() == 1 and set_to == [1]
    m.run(2.0, ours=1.0, others=1.0)
    assert gov.step() == 1 and set_to == [1]  # still there
    m.run(2.0, ours=1.0, others=0.0)
    assert gov.step() == 2 and set_to == [1, 2]  # gone: the quiet count again


def test_governor_is_fixed_when_the_user_fixed_the_count_or_on_a_gpu(monkeypatch,
                                                                     keep_torch_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert ThreadGovernor.for_run(None, "cpu").enabled == os.path.isfile("/proc/stat")
    fixed = ThreadGovernor.for_run(1, "cpu")
    assert not fixed.enabled and torch.get_num_threads() == 1 and fixed.step() == 1
    assert not ThreadGovernor.for_run(None, "cuda").enabled
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert not ThreadGovernor.for_run(None, "cpu").enabled


def test_governor_is_fixed_where_proc_stat_is_unreadable(tmp_path):
    gov = ThreadGovernor(2, True, stat_path=tmp_path / "missing")
    assert not gov.enabled and gov.step() == 2


# ---- the entry points ----------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    """No thread settings in the environment; whatever a test sets is undone after it."""
    for key in ("OMP_NUM_THREADS", threads.LAUNCHER_ENV, "LOCAL_WORLD_SIZE",
                "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.setenv(key, "")  # recorded, so restored afterwards
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.mark.parametrize("command", [["eval"], ["predict"], ["experiment"], ["bench", "ops"],
                                     ["bench", "data"], ["bench", "train"]])
def test_every_command_that_takes_a_device_takes_threads(command, capsys):
    from pose3d import cli

    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    assert "--threads N" in capsys.readouterr().out


def test_threads_flag_fixes_the_count_before_any_work(tmp_path, clean_env, keep_torch_threads,
                                                      capsys):
    from pose3d import cli

    torch.set_num_threads(2)
    # fails on its missing checkpoint, after the count was set
    assert cli.main(["eval", "--threads", "1", "--data", str(tmp_path), "--checkpoint",
                     str(tmp_path / "missing.pt"), "--out", str(tmp_path / "out")]) == 2
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"  # so the processes it starts keep it
    assert threads.user_threads() == 1  # and no governor adapts it
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--threads", "0", "--data", str(tmp_path), "--checkpoint", "x.pt",
                  "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "pose3d eval: error: argument --threads: must be a positive whole number, got '0'")


def test_demo_gives_each_torchrun_worker_its_share_marked_as_not_the_users(clean_env, cores):
    from pose3d import demo

    cores(4)
    seen = {}
    clean_env.setattr(demo.subprocess, "run", lambda cmd, check, env: seen.update(env))
    demo.run_stage(["stage=sv_pretrain"], nproc=2)
    assert seen["OMP_NUM_THREADS"] == "2"
    # in the worker (torchrun adds LOCAL_WORLD_SIZE): its share, still adaptive
    worker = {**seen, "LOCAL_WORLD_SIZE": "2"}
    assert threads.user_threads(None, worker) is None and default_threads(None, worker) == 2
    clean_env.setenv("OMP_NUM_THREADS", "1")
    demo.run_stage(["stage=sv_pretrain"], nproc=2)
    assert seen["OMP_NUM_THREADS"] == "1" and threads.user_threads(None, seen) == 1
