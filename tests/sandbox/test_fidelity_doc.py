"""docs/sandbox-fidelity.md names the test that shows each behaviour: every one must exist."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "sandbox-fidelity.md"
SHORT = {"fv": "test_fidelity_voice.py", "fm": "test_fidelity_messaging.py", "e2e": "test_e2e.py"}


def test_every_test_the_fidelity_table_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = re.findall(r"`(fv|fm|e2e|test_\w+\.py)?::(test_\w+)`", text)
    assert len(named) > 40
    current = ""
    for file, test in named:
        current = SHORT.get(file, file) or current  # `::test` continues the previous file
        source = (HERE / current).read_text(encoding="utf-8")
        assert f"def {test}(" in source, f"{current}::{test} is named in the doc but missing"
