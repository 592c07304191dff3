"""`gridproof grid import`, run in-process against both engines."""

import pytest

from app.models import GridCell, GridImport
from tests import grid_samples as samples
from tests import test_cli
from tests.test_cli import count, run

cli_settings = test_cli.cli_settings  # the fixture: the command's environment for this test


def test_grid_import_loads_then_changes_nothing(cli_settings, zone, capsys, tmp_path):
    path = tmp_path / "grid.geojson"
    path.write_bytes(samples.dumps(samples.zone_grid()))
    status, out, _err = run(capsys, "grid", "import", str(path))
    assert status == 0
    assert out.strip() == "grid: 7 added, 0 changed, 0 retired, 0 unchanged"
    status, out, _err = run(capsys, "grid", "import", str(path))
    assert (status, out.strip()) == (0, "grid: 0 added, 0 changed, 0 retired, 7 unchanged")
    assert count(cli_settings, GridImport) == 1


@pytest.mark.parametrize(
    ("kind", "data", "index", "word"), samples.REFUSED, ids=[r[0] for r in samples.REFUSED]
)
def test_grid_import_refuses_a_bad_file(
    cli_settings, zone, capsys, tmp_path, kind, data, index, word
):
    path = tmp_path / "grid.geojson"
    path.write_bytes(data)
    status, _out, err = run(capsys, "grid", "import", str(path))
    assert status != 0
    assert word in err
    assert ("文件" if index is None else f"features[{index}]") in err
    assert count(cli_settings, GridCell) == 0
    assert count(cli_settings, GridImport) == 0


def test_grid_import_takes_gcj02(cli_settings, zone, capsys, tmp_path):
    path = tmp_path / "grid.geojson"
    path.write_bytes(samples.dumps(samples.zone_grid()))
    status, _out, _err = run(capsys, "grid", "import", str(path), "--crs", "gcj02")
    assert status == 0
    status, _out, err = run(capsys, "grid", "import", str(path), "--crs", "bd09")
    assert status != 0 and "bd09" in err
