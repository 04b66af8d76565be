"""README's quickstart must run as written (every python block, in order, in one namespace)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quickstart_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python quickstart"
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README-block-{i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "True" in out
    assert "nodes," in out and "edges:" in out
    # the pruning example finds a real circuit: a small part of the model's 2,816 nodes
    circuit = namespace["circuit"]
    assert circuit.n_nodes < 2816 // 4, circuit
    assert repr(circuit) in out and "\n" not in repr(circuit)
