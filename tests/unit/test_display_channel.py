"""The display channel's kernel end: frames however they are split, each acked,
counted toward the output cap, dropped (never buffered) past it; and
`run_process` showing a child's displays in order with its printed text."""

from __future__ import annotations

import json
import select
import socket
import sys
import textwrap
from typing import Any

from ipyrunner.display_channel import ACK, HEADER, MAX_NOTES, DisplayChannel, display_pair
from ipyrunner.process import CappedOutput, ChannelSpec, Limits, run_process
from ipyrunner.sinks import DisplayBundle, RunStatus, Stream
from ipyrunner.stages.mime import check_display


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def write(self, stream: Stream, text: str) -> None:
        self.events.append((stream, text))

    def display(self, bundle: DisplayBundle) -> None:
        self.events.append(("display", dict(bundle.data)))

    def status(self, status: RunStatus) -> None:
        pass

    def notes(self) -> str:
        return "".join(text for kind, text in self.events if kind == "stderr")


def frame(data: dict[str, Any]) -> bytes:
    body = json.dumps({"data": data}).encode()
    return HEADER.pack(len(body)) + body


def channel(cap: int = 1 << 20) -> tuple[DisplayChannel, socket.socket, Recorder, CappedOutput]:
    ours, theirs = display_pair()
    sink, output = Recorder(), CappedOutput(cap)
    return DisplayChannel(ours, check_display, output, sink), theirs, sink, output


def read_all(shown: DisplayChannel) -> bool:
    """Read until nothing is waiting; False once the other end closed."""
    while select.select([shown.sock], [], [], 0)[0]:
        if not shown.read():
            return False
    return True


def test_frames_split_anywhere_are_shown_once_each_and_acked() -> None:
    shown, theirs, sink, _ = channel()
    data = frame({"text/plain": "one"}) + frame({"text/plain": "two"})
    for i in range(len(data)):  # one byte at a time
        theirs.send(data[i : i + 1])
        read_all(shown)
    assert [e for e in sink.events if e[0] == "display"] == [
        ("display", {"text/plain": "one"}),
        ("display", {"text/plain": "two"}),
    ]
    assert theirs.recv(16) == ACK * 2
    assert [b.data["text/plain"] for b in shown.shown] == ["one", "two"]


def test_displays_count_toward_the_output_cap_and_one_past_it_is_skipped() -> None:
    big = frame({"text/plain": "x" * 5000})
    shown, theirs, sink, output = channel(cap=8000)
    theirs.sendall(big)
    read_all(shown)
    assert output.total == len(big) - HEADER.size
    theirs.sendall(big)  # would pass the cap: skipped, acked, noted
    read_all(shown)
    theirs.sendall(frame({"text/plain": "small"}))
    read_all(shown)
    displays = [e[1]["text/plain"][:5] for e in sink.events if e[0] == "display"]
    assert displays == ["xxxxx", "small"]
    assert "would pass the output cap" in sink.notes()
    assert theirs.recv(16) == ACK * 3
    assert not output.exceeded  # a display flood is not an output flood


def test_a_frame_past_the_cap_is_never_buffered() -> None:
    shown, theirs, _, output = channel(cap=1000)
    theirs.sendall(HEADER.pack(1 << 30) + b"y" * 200_000)
    read_all(shown)
    assert len(shown._frame) == 0
    assert shown._skip == (1 << 30) - 200_000
    assert output.total == 0


def test_a_flood_of_bad_displays_gets_a_bounded_number_of_notes() -> None:
    shown, theirs, sink, _ = channel()
    for _ in range(MAX_NOTES * 3):
        theirs.sendall(HEADER.pack(3) + b"bad")
        read_all(shown)
    notes = sink.notes()
    assert notes.count("malformed") == MAX_NOTES
    assert notes.count("no more notes") == 1


def test_a_stage_that_ends_inside_a_frame_gets_a_note() -> None:
    shown, theirs, sink, _ = channel()
    theirs.sendall(frame({"text/plain": "cut"})[:-2])
    theirs.close()
    assert not read_all(shown)
    assert "ended in the middle of a display" in sink.notes()
    assert not shown.shown


def test_acks_never_block_the_kernel_when_the_stage_does_not_read_them() -> None:
    shown, theirs, _, _ = channel()
    shown.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    one = frame({"text/plain": "."})
    for _ in range(5000):  # far more acks than the socket's buffer holds
        theirs.sendall(one)
        read_all(shown)
    assert len(shown.shown) == 5000


PROGRAM = textwrap.dedent(
    """
    import json, os, sys
    fd = int(os.environ["IPYRUNNER_DISPLAY_FD"])

    def show(text):
        body = json.dumps({"data": {"text/plain": text}}).encode()
        os.write(fd, len(body).to_bytes(4, "big") + body)
        assert os.read(fd, 1) == b"\\x06"

    for i in range(30):
        print(f"line {i}", flush=True)
        show(f"display {i}")
    print("a forged display:", json.dumps({"data": {"text/html": "<script>x</script>"}}))
    """
)


def test_run_process_shows_displays_in_order_with_printed_text() -> None:
    sink = Recorder()
    done = run_process(
        [sys.executable, "-c", PROGRAM],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        limits=Limits(timeout=30),
        sink=sink,
        channel=ChannelSpec("RESULT_FD", 1 << 20, check_display),
    )
    assert done.returncode == 0, done.stderr
    seen: list[str] = []
    for kind, payload in sink.events:
        if kind == "stdout":
            seen += [line for line in payload.splitlines() if line]
        elif kind == "display":
            seen.append(payload["text/plain"])
    expected = [item for i in range(30) for item in (f"line {i}", f"display {i}")]
    assert seen[:60] == expected
    assert len(done.displays) == 30
    assert "<script>" in done.stdout  # printed, so it is text: never a display
    assert all("text/html" not in bundle.data for bundle in done.displays)
