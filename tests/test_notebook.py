"""clients/examples/quickstart.ipynb runs top to bottom against a live server."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from structlog.testing import capture_logs

from flight_lake.serve import Server
from flight_lake_client import connect
from tests.support import REPO

NOTEBOOK = REPO / "clients" / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # A committed notebook carries no outputs: they would go stale and bloat diffs.
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")

    workdir = tmp_path / "notebook"
    workdir.mkdir()
    with capture_logs():
        # The kernel is a child process: it inherits the server address and the import path.
        monkeypatch.setenv("FLIGHT_LAKE_SERVER", server.flight_uri)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            [str(REPO), str(REPO / "clients"), os.environ.get("PYTHONPATH", "")]))
        NotebookClient(notebook, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()

        with connect(server.flight_uri) as lake:
            assert lake.manifest("readings").row_count == 2000
            assert lake.manifest("stations").row_count == 4

    outputs = "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "readings version 1 - 2000 rows" in outputs
    assert "2000 rows streamed" in outputs
    assert "NotFound:" in outputs and "PermissionDenied - permission_denied" in outputs
    assert (workdir / "readings.csv").is_file()
