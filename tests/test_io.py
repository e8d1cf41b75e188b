"""sparsemb._io: outputs are checked before work, written atomically, and a failed write leaves nothing."""
import os
import stat

import numpy as np
import pytest

from sparsemb import _io
from sparsemb.word2vec import KeyedVectors


def _kv():
    return KeyedVectors.from_arrays(np.arange(6, dtype=np.float32).reshape(3, 2), ["a", "b", "c"])


def _leftovers(directory):
    return [p for p in os.listdir(directory) if p.startswith(_io.TMP_PREFIX)]


def test_output_that_is_the_input_is_refused_as_file_hard_link_and_symlink(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b c\n")
    os.link(corpus, tmp_path / "hard.txt")
    os.symlink(corpus, tmp_path / "soft.vec")
    for out in ("corpus.txt", "hard.txt", "soft.vec"):
        with pytest.raises(ValueError, match="is the input"):
            _io.check_output(tmp_path / out, inputs=[corpus])
    assert corpus.read_text() == "a b c\n"
    assert _io.check_output(tmp_path / "other.txt", inputs=[corpus]) == str(tmp_path / "other.txt")


def test_directories_fifos_and_missing_directories_are_refused(tmp_path):
    with pytest.raises(IsADirectoryError):
        _io.check_output(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="not a regular file"):
        _kv().save_word2vec_format(tmp_path / "fifo")
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
    with pytest.raises(FileNotFoundError, match="nodir"):
        _io.check_output(tmp_path / "nodir" / "v.bin")


def test_device_is_refused_and_left_in_place():
    with pytest.raises(ValueError, match="not a regular file"):
        _kv().save_word2vec_format("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_names_too_long_for_a_temporary_file_are_refused_up_front(tmp_path):
    with pytest.raises(OSError, match="too long"):
        _io.check_output(tmp_path / ("x" * 300 + ".bin"))
    longest = tmp_path / ("y" * 251 + ".bin")  # 255 bytes: its temporary name is shortened to fit
    _kv().save_word2vec_format(longest, binary=True)
    assert longest.exists() and _leftovers(tmp_path) == []


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        _kv().save_word2vec_format(tmp_path / "new.txt")
        assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o640
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        os.chmod(kept, 0o604)
        _kv().save_word2vec_format(kept)
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o604
    finally:
        os.umask(old)


def test_a_symlink_output_writes_its_target(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    os.symlink(target, link)
    _kv().save_word2vec_format(link)
    assert os.path.islink(link) and target.read_text().startswith("3 2\n")


def test_a_failing_write_leaves_nothing_and_the_old_file_intact(tmp_path):
    out = tmp_path / "v.bin"
    out.write_bytes(b"precious")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with _io.atomic_write(out) as f:
            f.write(b"half")
            raise Boom
    with pytest.raises(KeyboardInterrupt):
        with _io.atomic_write(out) as f:
            raise KeyboardInterrupt
    assert out.read_bytes() == b"precious" and _leftovers(tmp_path) == []


def test_an_error_at_close_removes_the_temporary_file_and_names_the_path(tmp_path, monkeypatch):
    out = tmp_path / "v.bin"
    writer = _io.atomic_write(out)
    f = writer.__enter__()
    f.write(b"data")
    real_close = f.close

    def full_disk():
        real_close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(f, "close", full_disk)
    with pytest.raises(OSError, match="No space left") as info:
        writer.__exit__(None, None, None)
    assert info.value.filename == str(out)
    assert not out.exists() and _leftovers(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_write_error_names_the_output(tmp_path, monkeypatch):
    # Every write to /dev/full fails with ENOSPC: the temporary file is made to be it.
    real = _io._mkstemp

    def onto_full(target):
        fd, tmp = real(target)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(_io, "_mkstemp", onto_full)
    out = tmp_path / "v.txt"
    with pytest.raises(OSError) as info:
        _kv().save_word2vec_format(out)
    assert info.value.errno == 28 and info.value.filename == str(out)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_an_unwritable_directory_is_refused_before_work_naming_the_path(tmp_path, monkeypatch):
    # Root writes into any directory, so the refusal of the operating system is simulated.
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match="cannot write in") as info:
        _io.check_output(tmp_path / "v.bin")
    assert info.value.filename == str(tmp_path / "v.bin")
