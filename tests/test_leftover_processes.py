"""A process the tests leave running fails the run and is stopped, rather than holding CI open."""

import subprocess
import sys

import psutil

from tests.conftest import ROOT

A_TEST_THAT_LEAVES_A_PROCESS = """
import subprocess, sys

def test_starts_a_process_and_forgets_it():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "left-behind-by-a-test"])
"""


def test_a_process_left_running_by_the_tests_is_killed_named_and_fails_the_run(tmp_path):
    (tmp_path / "test_leaves.py").write_text(A_TEST_THAT_LEAVES_A_PROCESS)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_leaves.py")],
                         cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "left-behind-by-a-test" in run.stdout
    assert not [p for p in psutil.process_iter(["cmdline"]) if "left-behind-by-a-test" in (p.info["cmdline"] or [])]
