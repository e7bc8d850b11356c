"""The code in docs/ runs as written (the README's own commands are tests/test_readme.py)."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_own_training_loop_page_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", (DOCS / "own_loop.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/own_loop.md", "exec"), {})
    assert "val mean IU" in capsys.readouterr().out and (tmp_path / "mine.pt").is_file()
