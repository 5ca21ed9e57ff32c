"""Atomic writes: durable renames, and the leftovers of a killed writer cleaned up on resume."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from archbench import files


def test_atomic_write_syncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(handle):
        synced.append(os.path.realpath(f"/proc/self/fd/{handle}"))
        return real_fsync(handle)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    files.write_json(tmp_path / "result.json", {"status": "complete"})
    assert files.read_json(tmp_path / "result.json") == {"status": "complete"}
    assert synced[-1] == str(tmp_path)  # the directory, after the file itself


def test_a_writer_killed_mid_write_leaves_a_temporary_that_is_removed(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from archbench import files

        def write(stream):
            stream.write(b"half a checkpoint")
            stream.flush()
            os._exit(9)  # killed here: no clean-up runs

        files._atomic(Path(sys.argv[1]) / "last.pt", write)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)])
    assert killed.returncode == 9
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    leftovers = list(tmp_path.glob(".last.pt.*.tmp"))
    assert len(leftovers) == 1 and not (tmp_path / "last.pt").exists()
    assert files.remove_stale_temporaries(tmp_path) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]
