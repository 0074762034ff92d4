"""Every command the README shows is accounted for, so the README cannot drift from the code.

Each command (a line of a ```bash block, a `$ ` line, an inline `make …`, `airflow …`...) must
match one rule below: run here as written (those that run offline in seconds or so), its flags
parsed by the real parser, run by another test of the suite (named), or needing a cloud or
Docker (said why). A command added to the README that matches no rule fails the first test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
COMMAND_WORDS = ("make", "airflow", "aws", "docker", "npm", "spark-submit", "PYTHONPATH=", "python")
VENV = (".venv/bin/python", ".venv/bin/pytest")


def readme_commands() -> list[str]:
    """The README's commands, one per line, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"^\$ (.+)$", README, re.M)  # a shown session: `$ command`
    commands = [" ".join(line.split("  #")[0].split()) for line in lines]
    for span in re.findall(r"`([^`\n]+)`", README):  # inline commands of two words or more
        if len(span.split()) > 1 and span.split()[0].startswith(COMMAND_WORDS + VENV):
            commands.append(span)
    return sorted({c for c in commands if c and not c.startswith("#")})


# Commands that other tests run, or that need what CI has not (a cloud account, Docker).
ELSEWHERE = {
    r"make test": "the suite itself: .ci/run runs `make test` (checked below)",
    r"\.venv/bin/pytest tests/test_airflow_services\.py": "in the suite (make test)",
    r"airflow standalone": "tests/test_airflow_services.py",
    r"airflow dags trigger.*": "tests/test_airflow_services.py (CLI trigger)",
    r"airflow backfill create": "tests/test_airflow_services.py (backfill)",
    r"airflow dags test.*": "tests/test_local_pipeline_e2e.py (localdev.run_pipeline runs it)",
    r"aws .*": "needs an AWS account",
    r"docker compose up": "no Docker engine in CI; tests/test_docker_compose.py checks the file",
    r"npm ci": "make's venv target runs it on every fresh clone",
    r"make featurize": "test_make_featurize_runs_as_written runs the README's whole line",
    r"make bench-latency": "needs /dev/fuse and fuse3; tests/test_slow_fs.py checks the mount",
    r"make grid-screenshot": "needs Chromium and playwright, not in CI; test_dag_structure.py "
    "pins the shape the picture shows",
    r"spark-submit --deploy-mode client .*": "the EMR step; tests/test_dag_emr_*.py check steps",
}
RUN_HERE = {
    r"make run": "test_make_run_is_the_local_main_job",
    r"(\$ )?make run ARGS=.*": "test_make_run_flags_parse",
    r"PYTHONPATH=plugins \.venv/bin/python -m fruits\.iam .*": "test_iam_commands_render",
    r"\.venv/bin/python -m benchmarks\.\w+.*": "test_benchmark_commands_start",
    r"make featurize .*": "test_make_featurize_runs_as_written",
    r"PYTHONPATH=plugins \.venv/bin/python -m fruits\.local_platform": "test_local_options_print",
    r"spark-submit spark_jobs/featurize\.py .*": "test_featurize_synopsis_flags_parse",
}


def rule_of(command: str) -> str | None:
    for pattern, where in {**ELSEWHERE, **RUN_HERE}.items():
        if re.fullmatch(pattern, command):
            return where
    return None


def matching(pattern: str) -> list[str]:
    return [c for c in readme_commands() if re.fullmatch(pattern, c)]


def test_every_readme_command_is_accounted_for():
    commands = readme_commands()
    assert len(commands) > 15, commands  # the extraction itself works
    unaccounted = [c for c in commands if rule_of(c) is None]
    assert not unaccounted, f"README commands no test runs or explains: {unaccounted}"
    for pattern in RUN_HERE:  # a rule whose command left the README is dead: remove it
        assert matching(pattern), f"no README command matches {pattern!r}"


def dry_run(target: str) -> str:
    """What `make <target>` would run, without running it."""
    return subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_make_run_is_the_local_main_job():
    # test_local_pipeline_e2e.py runs localdev.run_pipeline.main; this pins the target to it.
    assert "-m localdev.run_pipeline" in dry_run("run")
    assert (REPO / ".ci" / "run").read_text().strip().endswith("exec make test")
    assert "-m pytest" in dry_run("test")


def test_make_run_flags_parse():
    from localdev import run_pipeline

    for command in matching(r"(\$ )?make run ARGS=.*"):
        for args in re.findall(r'ARGS="([^"]*)"', command):
            run_pipeline.parse_args(shlex.split(args))  # SystemExit on an unknown flag


def in_scratch_folder(tmp_path: Path) -> Path:
    """A folder where README commands with relative paths run without writing into the repo."""
    for name in (".venv", "plugins", "spark_jobs", "benchmarks", "Makefile", "requirements.txt"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def test_iam_commands_render(tmp_path):
    # Run as written, on the example config the kept policies in iam/ are rendered from.
    folder = in_scratch_folder(tmp_path)
    shutil.copy(REPO / "iam" / "example-fruits_config.json", folder / "fruits_config.json")
    commands = matching(r"PYTHONPATH=plugins \.venv/bin/python -m fruits\.iam .*")
    assert len(commands) == 3, commands
    for command in commands:
        subprocess.run(command, shell=True, cwd=folder, check=True, env=without_pythonpath())  # noqa: S602 (as a shell runs it)
        written = command.split("> ")[1]
        assert json.loads((folder / written).read_text()) == json.loads(
            (REPO / "iam" / written).read_text()
        )


def without_pythonpath() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH from the Makefile or pytest."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_benchmark_commands_start():
    # `--help` after the README's own flags: the module imports without PYTHONPATH and its flags
    # parse, without running the benchmark.
    commands = matching(r"\.venv/bin/python -m benchmarks\.\w+.*")
    assert len(commands) >= 5, commands
    for command in commands:
        result = subprocess.run(
            [*shlex.split(command), "--help"],
            cwd=REPO,
            env=without_pythonpath(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"


def test_local_options_print():
    (command,) = matching(r"PYTHONPATH=plugins \.venv/bin/python -m fruits\.local_platform")
    printed = subprocess.run(
        shlex.split(command.split(" ", 1)[1]),
        cwd=REPO,
        env={**without_pythonpath(), "PYTHONPATH": "plugins"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "local[" in printed  # the master make featurize runs


def test_featurize_synopsis_flags_parse():
    import featurize

    for command in matching(r"spark-submit spark_jobs/featurize\.py .*"):
        flags = re.findall(r"(--[a-z-]+)", command)
        words = []
        for flag in flags:  # each flag with a value its parser accepts
            words += [flag, {"--engine": "tflite", "--image-size": "224"}.get(flag, "x")]
        featurize.parse_args(words)


def test_make_featurize_runs_as_written(tmp_path, sample_dir):
    (command,) = matching(r"make featurize .*")
    home = tmp_path / "home"  # `~/photos/fruits` of the README: a few real photos
    photos = home / "photos" / "fruits"
    for source in sorted((sample_dir / "Test").iterdir())[:2]:
        (photos / "Test" / source.name).mkdir(parents=True)
        for image in sorted(source.glob("*.jpg"))[:2]:
            shutil.copy(image, photos / "Test" / source.name / image.name)
    output = Path(re.search(r"OUTPUT=(\S+)", command).group(1))
    shutil.rmtree(output, ignore_errors=True)
    env = {**without_pythonpath(), "HOME": str(home)}
    result = subprocess.run(  # noqa: S602 (the README's command line, as a user's shell runs it)
        command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((output / "_manifest.json").read_text())
    assert manifest["counts"] == {"read": 4, "featurized": 4, "quarantined": 0}
    assert manifest["input"].endswith(str(photos))
    shutil.rmtree(output)


def test_the_readme_commands_run_with_this_python():
    # The README's commands call .venv/bin/python: the suite must run in that venv.
    assert Path(sys.executable).parent.parent.resolve() == (REPO / ".venv").resolve()
