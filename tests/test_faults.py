"""Faults injected into real short runs (LeNet on a Fashion-MNIST subset): a damaged or stray
checkpoint folder, a changed state structure, a second run into the same workdir, SIGKILL at
random points and inside a save, SIGINT and SIGTERM, a full disk, an unusable workdir. After
each, nothing written is lost, and a resumed run equals an uninterrupted one bit for bit."""

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

from conftest import (TINY_CLI, assert_same_checkpoints, held_by_another_process, params_of,
                      run_cli, tiny)
from hparams_jax import cli
from hparams_jax.models.lenet import LeNet
from hparams_jax.train import (CheckpointMismatchError, History, TrainConfig,
                               TrainingInterrupted, WorkdirLocked, WorkdirWriteError, fit,
                               workdir_lock)
from hparams_jax.train.checkpoint import Checkpointer
from hparams_jax.train.metrics import MetricsLog, read_rows, untimed

# Rows at steps 4, 8, ..., 24, evaluations at 12 and 24, checkpoints at 8, 16 and 24.
FAULT = dict(steps=24, checkpoint_every=8, eval_every=12)


def config(workdir) -> TrainConfig:
    return tiny(**FAULT, workdir=str(workdir))


@pytest.fixture(scope="module", autouse=True)
def persistent_compilation_cache(tmp_path_factory):
    """A persistent XLA cache for this module's runs, in this process and in the processes it
    starts (through the environment): each program compiles once, not once a run."""
    settings = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla_cache")),
                "jax_persistent_cache_min_compile_time_secs": 0,
                "jax_persistent_cache_min_entry_size_bytes": -1}
    previous = {name: getattr(jax.config, name) for name in settings}
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings.items():
            jax.config.update(name, value)
            env.setenv(name.upper(), str(value))
        compilation_cache.reset_cache()
        yield
        for name, value in previous.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def reference(persistent_compilation_cache, tmp_path_factory) -> Path:
    """One uninterrupted run, the yardstick of every test here."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    fit(config(workdir))
    return workdir


def snapshot(folder) -> dict[str, bytes | None]:
    """Every entry under `folder`: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(Path(folder).rglob("*"))}


def copy_of(reference, tmp_path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "run"))


def assert_same_as(workdir, reference) -> None:
    """A finished run whose metrics (all but the timings) and newest checkpoint equal the
    reference's."""
    assert untimed(read_rows(workdir / "metrics.jsonl")) == untimed(
        read_rows(reference / "metrics.jsonl"))
    assert_same_checkpoints(workdir, reference)
    summary = json.loads((workdir / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("completed", 24)
    assert not (workdir / ".lock").exists()


def one_line_error(stderr: str) -> str:
    """Our message: the last line of stderr, the only one of ours (no traceback)."""
    assert "Traceback" not in stderr, stderr
    ours = [line for line in stderr.splitlines() if line.startswith("hparams-jax:")]
    assert len(ours) == 1 and stderr.strip().endswith(ours[0]), stderr
    return ours[0]


# A process that trains (`fit CONFIG_JSON` or `cli ARG...`), optionally pausing after writing
# the rows of step P until a gate file exists, or dying by SIGKILL inside the save of step S
# (its files written, the folder not yet renamed into place).
CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from orbax.checkpoint._src.path import atomicity
    from hparams_jax import cli
    from hparams_jax.train import TrainConfig, fit, metrics

    hook, entry, args = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if "pause_after" in hook:
        write = metrics.MetricsLog.write
        def write_then_wait(self, rows):
            write(self, rows)
            if rows[0]["step"] == hook["pause_after"]:
                print("paused", flush=True)
                while not Path(hook["gate"]).exists():
                    time.sleep(0.01)
        metrics.MetricsLog.write = write_then_wait
    if "die_in_save" in hook:
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        async def die_before_rename(self, *a, **k):
            if self.get().name.startswith(f"{hook['die_in_save']}."):
                os.kill(os.getpid(), signal.SIGKILL)
            return await finalize(self, *a, **k)
        atomicity.AtomicRenameTemporaryPath.finalize = die_before_rename
    if entry == "fit":
        fit(TrainConfig.from_dict(json.loads(args[0])))
    else:
        sys.exit(cli.main(args))
""")


def child(hook: dict, entry: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(hook), entry, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def child_fit(workdir, **hook) -> subprocess.Popen:
    return child(hook, "fit", json.dumps(config(workdir).to_dict()))


def holder(workdir) -> int | None:
    """The process id in the workdir's lock file (that of a killed holder stays there)."""
    try:
        return int((Path(workdir) / ".lock").read_text())
    except (FileNotFoundError, ValueError):
        return None


def wait_paused(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "paused", proc.communicate()[1]


# --- damaged and stray checkpoint folders --------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "item_folder_gone"])
def test_damaged_newest_checkpoint_is_moved_aside_and_its_steps_retrained(reference, tmp_path,
                                                                          damage):
    workdir = copy_of(reference, tmp_path)
    newest = workdir / "checkpoints" / "24"
    if damage == "truncated":
        for f in newest.rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    else:
        shutil.rmtree(newest / "default")
    damaged = snapshot(newest)
    moved = workdir / "checkpoints" / "damaged" / "24"
    with pytest.warns(RuntimeWarning, match=f"step 24 .* is damaged .*: moved it to {moved}; "
                                            "resuming from step 16"):
        fit(config(workdir))
    assert snapshot(moved) == damaged  # set aside as it was
    assert_same_as(workdir, reference)


def test_empty_step_folder_is_set_aside_and_stray_entries_are_left_alone(reference, tmp_path):
    """The empty `checkpoints/320/` that once made every intact checkpoint unreadable."""
    workdir = copy_of(reference, tmp_path)
    ckpts = workdir / "checkpoints"
    shutil.rmtree(ckpts / "24")  # killed before its last save: resumes from step 16
    (ckpts / "320").mkdir()
    (ckpts / "notes").mkdir()
    (ckpts / "notes" / "todo.txt").write_text("keep me")
    (ckpts / "README").write_text("not a checkpoint")
    (ckpts / "24.orbax-checkpoint-tmp").mkdir()  # an unfinished save is no checkpoint either
    (ckpts / "damaged" / "320").mkdir(parents=True)  # set aside before: the new one is 320-1
    (ckpts / "damaged" / "320" / "earlier").write_text("earlier")
    strays = {k: v for k, v in snapshot(ckpts).items()
              if k.split("/")[0] in ("notes", "README", "damaged")}
    with pytest.warns(RuntimeWarning, match=f"step 320 .* moved it to {ckpts}/damaged/320-1; "
                                            "resuming from step 16") as caught:
        fit(config(workdir))
    assert sum("damaged" in str(w.message) for w in caught) == 1
    assert (ckpts / "damaged" / "320-1").is_dir() and not any((ckpts / "damaged" / "320-1")
                                                             .iterdir())
    after = snapshot(ckpts)
    assert {k: after.get(k) for k in strays} == strays
    assert_same_as(workdir, reference)


def test_changed_state_structure_is_refused_and_every_file_kept(reference, tmp_path,
                                                                monkeypatch):
    workdir = copy_of(reference, tmp_path)
    before = snapshot(workdir)
    init = LeNet.__init__

    def with_another_layer(self, **kwargs):  # the network as a code upgrade might change it
        init(self, **kwargs)
        self.fc3 = nnx.Linear(10, 10, rngs=kwargs["rngs"])

    monkeypatch.setattr(LeNet, "__init__", with_another_layer)
    with pytest.raises(CheckpointMismatchError) as err:
        fit(config(workdir))
    message = str(err.value)
    assert f"workdir={str(workdir)!r}" in message and "\n" not in message
    assert "only in this program: params.fc3.bias.value, params.fc3.kernel.value" in message
    assert "step 24" in message
    assert snapshot(workdir) == before


def test_rerunning_a_finished_run_changes_no_file(reference, tmp_path):
    workdir = copy_of(reference, tmp_path)
    before = snapshot(workdir)
    history = fit(config(workdir))
    assert snapshot(workdir) == before
    assert history.rows == History.load(reference).rows
    assert history.summary == json.loads((reference / "summary.json").read_text())


# --- one writer per workdir ----------------------------------------------------------------

def test_second_run_into_a_workdir_is_refused_at_once_and_the_first_completes(reference,
                                                                               tmp_path):
    workdir, gate = tmp_path / "run", tmp_path / "gate"
    first = child_fit(workdir, pause_after=4, gate=str(gate))
    try:
        wait_paused(first)  # mid-run, holding the lock
        assert holder(workdir) == first.pid
        before = snapshot(workdir)
        second = run_cli([*TINY_CLI, "--workdir", str(workdir)], timeout=120)
        assert second.returncode == 2
        line = one_line_error(second.stderr)
        assert f"workdir={str(workdir)!r} is in use by another run (process {first.pid}" in line
        with pytest.raises(WorkdirLocked, match=f"process {first.pid}"):
            fit(config(workdir))
        assert snapshot(workdir) == before  # the refused runs wrote nothing
        gate.touch()
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert_same_as(workdir, reference)


def test_every_entry_point_refuses_a_locked_workdir_and_a_killed_holder_frees_it(tmp_path,
                                                                                 capsys):
    workdir = tmp_path / "busy"
    with held_by_another_process(workdir) as proc:
        before = snapshot(workdir)
        for argv in ([*TINY_CLI, "--workdir", str(workdir)],
                     ["range-test", "--steps", "20", "--workdir", str(workdir)],
                     ["demo", "--epochs", "1", "--workdir", str(workdir), "--no-progress"]):
            assert cli.main(argv) == 2, argv
            assert f"(process {proc.pid} holds" in one_line_error(capsys.readouterr().err)
        assert snapshot(workdir) == before
        proc.kill()  # SIGKILL: the lock file stays, the lock itself goes with the process
        proc.wait()
    assert holder(workdir) == proc.pid
    with workdir_lock(workdir):
        assert holder(workdir) == os.getpid()
        with workdir_lock(workdir):  # re-entrant within a process
            pass
        assert (workdir / ".lock").exists()
    assert not (workdir / ".lock").exists()


# --- kills and signals ---------------------------------------------------------------------

def test_sigkill_inside_a_save_and_at_random_points_then_resume_equals_uninterrupted(
        reference, tmp_path):
    workdir = tmp_path / "run"
    ckpts = workdir / "checkpoints"
    killed = child_fit(workdir, die_in_save=16)
    assert killed.wait(timeout=300) == -signal.SIGKILL, killed.stderr.read()
    assert (ckpts / "16.orbax-checkpoint-tmp" / "default").is_dir()  # written, not committed
    assert not (ckpts / "16").exists() and (ckpts / "8").is_dir()
    assert max(r["step"] for r in read_rows(workdir / "metrics.jsonl")) == 16

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    points = []
    for training in (False, True, True):
        # at a random time after the lock (loading, restoring, compiling), or once training
        # has gone past the checkpoint it resumed from (training, evaluating, saving)
        resumed_from = max((int(p.name) for p in ckpts.iterdir() if p.name.isdigit()),
                           default=0)
        proc = child_fit(workdir)
        rewritten = False
        while proc.poll() is None:
            last = max((r["step"] for r in read_rows(workdir / "metrics.jsonl")), default=0)
            if holder(workdir) == proc.pid:
                if not training:
                    break
                rewritten = rewritten or last <= resumed_from
                if rewritten and last > resumed_from:
                    break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4 if training else 1.5))
        proc.kill()
        proc.wait()
        points.append((proc.returncode, sorted(p.name for p in ckpts.iterdir()),
                       [r["step"] for r in read_rows(workdir / "metrics.jsonl")]))
    fit(config(workdir))
    try:
        assert_same_as(workdir, reference)
    except AssertionError as err:
        raise AssertionError(f"random seed {seed}, kill points {points}: {err}") from err


def test_sigint_saves_the_last_completed_step_exits_130_and_resumes(tmp_path):
    workdir, gate = tmp_path / "run", tmp_path / "gate"
    argv = [*TINY_CLI, "--steps", "24", "--checkpoint-every", "8", "--eval-every", "24",
            "--workdir", str(workdir)]
    proc = child({"pause_after": 12, "gate": str(gate)}, "cli", *argv)
    try:
        wait_paused(proc)
        proc.send_signal(signal.SIGINT)  # Ctrl-C mid-run, between two checkpoints
        time.sleep(0.5)
        gate.touch()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    line = one_line_error(stderr)
    assert "interrupted by SIGINT at step 12 of 24; saved a checkpoint of step 12" in line
    summary = json.loads((workdir / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("interrupted", 12)
    assert Checkpointer(workdir / "checkpoints", keep=3).latest_step == 12
    rows = (workdir / "metrics.jsonl").read_bytes()
    assert max(r["step"] for r in read_rows(workdir / "metrics.jsonl")) == 12

    assert cli.main(argv) == 0  # the same command resumes
    assert (workdir / "metrics.jsonl").read_bytes().startswith(rows)
    summary = json.loads((workdir / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("completed", 24)


def test_sigterm_stops_fit_cleanly_restores_the_handlers_and_resumes(reference, tmp_path,
                                                                     monkeypatch):
    workdir = tmp_path / "run"
    write = MetricsLog.write

    def write_then_terminate(self, rows):
        write(self, rows)
        if rows[0]["step"] == 12:
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's stop notice

    monkeypatch.setattr(MetricsLog, "write", write_then_terminate)
    def mine(signum, frame):
        raise AssertionError("fit's own handler should have taken the signal")

    previous = signal.signal(signal.SIGTERM, mine)
    interrupt = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(TrainingInterrupted) as err:
            fit(config(workdir))
        assert signal.getsignal(signal.SIGTERM) is mine  # fit's handlers are gone
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert err.value.exit_code == 143 and "SIGTERM at step 12 of 24" in str(err.value)
    assert json.loads((workdir / "summary.json").read_text())["status"] == "interrupted"
    assert Checkpointer(workdir / "checkpoints", keep=3).latest_step == 12
    monkeypatch.undo()
    fit(config(workdir))
    assert_same_as(workdir, reference)


# --- a full disk and an unusable workdir ---------------------------------------------------

def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


# orbax's failed save leaves a callback on its closed event loop
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_full_disk_fails_clearly_and_keeps_the_last_checkpoint_and_metrics(reference,
                                                                           tmp_path):
    one = sum(math.ceil(f.stat().st_size / 4096) * 4096
              for f in (reference / "checkpoints" / "8").rglob("*") if f.is_file())
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, f"size={int(2.5 * one) + 16 * 4096}")  # room for two checkpoints
    try:
        with pytest.raises(WorkdirWriteError) as err:
            fit(config(disk / "run"))
        message = str(err.value)
        assert "could not write the checkpoint of step 24" in message
        assert "the last good checkpoint is step 16" in message and "\n" not in message
        assert params_of(disk / "run")  # step 16 reads back
        assert [r["step"] for r in read_rows(disk / "run" / "metrics.jsonl")
                if r["kind"] == "train"] == [4, 8, 12, 16, 20, 24]
        saved = Path(shutil.copytree(disk / "run", tmp_path / "run"))  # space freed elsewhere
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    fit(config(saved))
    assert_same_as(saved, reference)


@pytest.mark.parametrize("kind", ["file", "under_a_file", "read_only"])
def test_unusable_workdir_is_a_one_line_error(tmp_path, capsys, kind):
    workdir = tmp_path / "workdir"
    if kind == "file":
        workdir.write_text("a file")
    elif kind == "under_a_file":
        (tmp_path / "file").write_text("a file")
        workdir = tmp_path / "file" / "workdir"
    elif os.geteuid() == 0:  # permissions do not stop root: a read-only filesystem does
        _mount_tmpfs(workdir, "ro,size=64k")
    else:
        workdir.mkdir()
        workdir.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=f"workdir={str(workdir)!r} cannot be used"):
            fit(config(workdir))
        assert cli.main([*TINY_CLI, "--workdir", str(workdir)]) == 2
        assert "cannot be used" in one_line_error(capsys.readouterr().err)
    finally:
        if kind == "read_only" and os.geteuid() == 0:
            subprocess.run(["umount", str(workdir)], check=True)
        elif kind == "read_only":
            workdir.chmod(0o755)


# --- files handed over that cannot be read: one line naming the file, exit 2 ----------------

@pytest.mark.parametrize("kind, cause", [
    ("syntax_error.py", "syntax error at line 3: '(' was never closed"),
    ("raises.py", "running it raised ConfigError at line 2: batch_size=0 is not allowed"),
    ("a_folder", "it is a folder, not a file"),
    ("junk.json", "not UTF-8 text (byte 0 is 0xff)"),
    ("cut.json", "it is not JSON (Expecting ',' delimiter: line 1 column 16)"),
])
def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path, capsys, kind, cause):
    path = tmp_path / kind
    if kind == "a_folder":
        path.mkdir()
    else:
        path.write_bytes({
            "syntax_error.py": b"from hparams_jax.train import TrainConfig\n\n"
                               b"config = TrainConfig(\n",
            "raises.py": b"from hparams_jax.train import TrainConfig\n"
                         b"config = TrainConfig(batch_size=0)\n",
            "junk.json": b"\xff\xfe{}",
            "cut.json": b'{"max_lr": 0.1 "min',
        }[kind])
    workdir = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--workdir", str(workdir)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"hparams-jax: error: --config {str(path)!r} cannot be read: {cause}")
    assert not workdir.exists()


def test_a_network_keyword_it_does_not_take_is_refused_before_anything_is_written(tmp_path,
                                                                                  capsys):
    workdir = tmp_path / "run"
    for argv in (["train", "--workdir", str(workdir)],
                 ["range-test", "--workdir", str(workdir)],
                 ["tune", "--workdir", str(workdir)]):
        assert cli.main([*argv, "--set", 'model_options={"in_channels": 1}']) == 2
        assert one_line_error(capsys.readouterr().err) == (
            'hparams-jax: error: model_options={"in_channels": 1} is not allowed: '
            "model='lenet' takes no keyword 'in_channels': the keywords it takes are "
            "input_size.")
        assert not workdir.exists()


def _run_files(reference, folder: Path) -> Path:
    """A copy of the reference run's records (no checkpoints): what diagnose reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        shutil.copy(reference / name, folder / name)
    return folder


def test_diagnose_names_a_damaged_summary(reference, tmp_path, capsys):
    run = _run_files(reference, tmp_path / "run")
    (run / "summary.json").write_bytes(b"\x00 not a summary {")
    assert cli.main(["diagnose", str(run)]) == 2
    assert one_line_error(capsys.readouterr().err) == (
        f"hparams-jax: error: {run / 'summary.json'} cannot be read: it is not JSON (Expecting "
        "value: line 1 column 1).")
    assert not (run / "diagnosis.png").exists()


def test_diagnose_on_a_read_only_run_prints_findings_and_skips_the_figure(reference, tmp_path,
                                                                         capsys):
    run = tmp_path / "read_only"
    if os.geteuid() == 0:  # permissions do not stop root: a read-only filesystem does
        _mount_tmpfs(run, "size=4m")
        _run_files(reference, run)
        subprocess.run(["mount", "-o", "remount,ro", str(run)], check=True)
        cause = "Read-only file system"
    else:
        _run_files(reference, run).chmod(0o555)
        cause = "Permission denied"
    try:
        assert cli.main(["diagnose", str(run)]) == 0
        out, err = capsys.readouterr()
        assert "verdict:" in out and "saved" not in out
        assert err.strip() == (f"hparams-jax: note: figure skipped: cannot write "
                               f"{run / 'diagnosis.png'} ({cause}); --output FILE writes it "
                               "elsewhere")
        figure = tmp_path / "figures" / "diagnosis.png"
        assert cli.main(["diagnose", str(run), "--output", str(figure)]) == 0
        assert f"saved {figure}" in capsys.readouterr().out
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(run)], check=True)
        else:
            run.chmod(0o755)


# --- the experiment grid: bad input refused before any work, a report never emptied ----------

@pytest.mark.parametrize("scale", ["0", "2", "-0.5", "nan"])
def test_experiment_run_refuses_a_scale_outside_0_1_before_any_work(tmp_path, capsys,
                                                                    monkeypatch, scale):
    from hparams_jax import experiment

    def work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(experiment, "run_range_test", work)
    monkeypatch.setattr(experiment, "run_setting", work)
    root = tmp_path / "records"
    assert cli.main(["experiment", "run", "fashion_mnist_lenet", "--scale", scale,
                     "--root", str(root)]) == 2
    assert one_line_error(capsys.readouterr().err) == (
        f"hparams-jax: error: --scale {float(scale):g} is not allowed: --scale must be a "
        "number in (0, 1] (the fraction of each setting's length).")
    assert not root.exists()


def test_a_report_with_rows_is_never_replaced_by_one_without_unless_asked(tmp_path, capsys):
    output = tmp_path / "RESULTS.md"
    output.write_text("# Results\n\n| setting | accuracy |\n|---|---|\n| one_cycle | 0.91 |\n")
    before = snapshot(tmp_path)
    for root in (tmp_path / "nonexistent", tmp_path):  # missing, and holding no records
        assert cli.main(["experiment", "report", "--root", str(root), "--output",
                         str(output)]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert line.startswith(f"hparams-jax: error: root={str(root)!r} ")
        assert (f"the report would have no rows; {str(output)!r} is left as it is" in line
                and "--allow-empty" in line)
        assert snapshot(tmp_path) == before
    assert cli.main(["experiment", "report", "--root", str(tmp_path / "nonexistent"),
                     "--output", str(output), "--allow-empty"]) == 0
    assert "not run here" in output.read_text()
