def test_shipped_commit_wins_over_the_copys_own_git(monkeypatch, tmp_path):
    # The GPU machine's copy may hold a stale .git: the commit the caller shipped is the truth.
    from coldstart.analysis import results as res

    monkeypatch.setenv("COLDSTART_GIT_COMMIT", "b3f09b8")
    monkeypatch.setattr(res, "_git", lambda *a, **k: "cc2cadae2e9132259ef1045affe336590f45e8ce")
    prov = res.collect_provenance()
    assert prov.git_commit == "b3f09b8"
    assert prov.git_dirty is None


def test_boot_id_names_the_machine_boot_and_is_none_where_there_is_none(tmp_path):
    from coldstart.analysis import results as res

    f = tmp_path / "boot_id"
    f.write_text("5f1c-lease\n")
    assert res.boot_id(f) == "5f1c-lease"
    assert res.boot_id(tmp_path / "absent") is None
