"""A failing rank's one line reaches whoever reads its stderr before the job is aborted."""
import os
import threading
import time

from dptrain import last_words


def test_say_returns_only_once_a_slow_reader_has_the_line():
    r, w = os.pipe()
    got = []

    def slow_reader():                       # a launcher starved of CPU under load
        time.sleep(0.5)
        got.append(os.read(r, 4096))

    reader = threading.Thread(target=slow_reader)
    reader.start()
    try:
        last_words.say("dptrain: rank 1 failed at step 3: boom", fd=w)
        assert got == [b"dptrain: rank 1 failed at step 3: boom\n"]
    finally:
        reader.join()
        os.close(r)
        os.close(w)


def test_unread_bytes_of_a_pipe_and_of_a_file(tmp_path):
    r, w = os.pipe()
    try:
        last_words.write_line("twelve bytes", fd=w)
        assert last_words.unread_bytes(w) == 13
        os.read(r, 100)
        assert last_words.unread_bytes(w) == 0
    finally:
        os.close(r)
        os.close(w)
    with open(tmp_path / "log", "w") as f:
        assert last_words.unread_bytes(f.fileno()) is None     # a file keeps what it gets


def test_wait_gives_up_when_nobody_reads():
    r, w = os.pipe()
    try:
        last_words.write_line("x", fd=w)
        assert not last_words.wait_until_read(w, timeout_s=0.05)
    finally:
        os.close(r)
        os.close(w)
