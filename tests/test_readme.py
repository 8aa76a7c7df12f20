"""The README's two commands for a fresh machine, and CI running the test command exactly as written there."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def two_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_each_command_does_its_own_set_up():
    run, test = two_commands()  # exactly two
    setup = "apt-get update && apt-get install -y $(cat packages.txt) python3-venv && python3 -m venv .venv && "
    assert run.startswith(setup) and run.endswith(".venv/bin/python app.py")
    assert test.startswith(setup) and test.endswith(".venv/bin/python -m pytest -q")


def test_ci_runs_the_readme_test_command_as_written():
    ci = (ROOT / ".ci" / "run").read_text()
    extract = next(line for line in ci.splitlines() if line.startswith("test_command="))
    found = subprocess.run(["bash", "-c", f'{extract}\nprintf %s "$test_command"'], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout
    assert found == two_commands()[1]
    assert 'bash -c "$test_command"' in ci
