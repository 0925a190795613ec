from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import encode


@pytest.fixture
def make_dataset(tmp_path):
    """Write a dataset folder: ``rows`` are (file name, group, role, image or bytes); returns its path."""

    def make(rows, *, header: str = "path,group,role", name: str = "dataset") -> Path:
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        lines = [header]
        for file_name, group, role, content in rows:
            data = encode(content) if isinstance(content, Image.Image) else content
            if data is not None:
                (root / "images" / file_name).write_bytes(data)
            lines.append(f"images/{file_name},{group},{role}")
        (root / "groups.csv").write_text("\n".join(lines) + "\n")
        return root

    return make
