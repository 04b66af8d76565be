"""README's quickstart must run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quickstart_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python quickstart"
    exec(compile(blocks[0], "README-quickstart", "exec"), {})
    out = capsys.readouterr().out
    assert "True" in out
