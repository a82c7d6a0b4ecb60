"""Where the lab writes: run ids are one safe path segment."""

from __future__ import annotations

import argparse

import pytest


@pytest.mark.parametrize("run_id", ["../../..", "a/b", "..", ".hidden", "", "x" * 200, "a..b"])
def test_a_run_id_that_could_leave_the_output_folder_is_refused(run_id):
    from coldstart import paths

    with pytest.raises(ValueError, match="invalid run id"):
        paths.run_log_path("tiny", "fast", run_id)
    assert paths.check_run_id("20261129T160322Z-2787") == "20261129T160322Z-2787"


def test_service_refuses_a_bad_run_id_with_exit_2(capsys):
    from coldstart.lab import service

    parser = argparse.ArgumentParser()
    service.add_cli_args(parser)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["tiny", "fast", "--run-id", "../../etc"])
    assert info.value.code == 2
    assert "invalid run id" in capsys.readouterr().err
