"""The credit pump (streams.pump) that both the bridge and the endpoint send bodies with."""
import threading

import pytest

from radical_orbit.errors import OrbitError, Timeout
from radical_orbit.streams import ReceiveStream, SendWindow, pump, with_last


class Peer:
    """A receiver on its own thread: buffers what arrives in a ReceiveStream bounded as the
    bridge and endpoint bound theirs (a window and two chunks), and grants credit as it reads."""

    def __init__(self, window: int, chunk: int):
        self.window = None
        self.size = window
        self.heads = []
        self.fed = 0
        self.stream = ReceiveStream(lambda n: self.window.grant(n), timeout=5.0,
                                    max_buffered=window + 2 * chunk)
        self.received = []
        self.reader = threading.Thread(target=lambda: self.received.extend(self.stream.iter_chunks()))

    def open_window(self) -> SendWindow:
        self.window = SendWindow(self.size)
        return self.window

    def head(self, chunk, last):
        self.heads.append((chunk, last))
        return self.data(chunk, last)

    def data(self, chunk, last):
        self.fed += len(chunk)
        self.stream.feed(chunk, last)
        return True


def test_a_body_larger_than_the_window_arrives_whole_and_in_order():
    chunks = [bytes([i]) * 1000 for i in range(50)]
    peer = Peer(window=4000, chunk=1000)
    peer.reader.start()
    assert pump(with_last(chunks), peer.head, peer.data, peer.open_window, idle=5.0)
    peer.reader.join(10)
    assert b"".join(peer.received) == b"".join(chunks)
    assert peer.heads == [(chunks[0], False)]


def test_a_single_piece_goes_with_the_head_and_opens_no_window():
    peer = Peer(window=10, chunk=10)
    assert pump(with_last([b"all"]), peer.head, peer.data, peer.open_window, idle=1.0)
    assert peer.heads == [(b"all", True)] and peer.window is None
    assert pump(with_last([]), peer.head, peer.data, peer.open_window, idle=1.0)
    assert peer.heads[-1] == (b"", True)


@pytest.mark.parametrize("sizes", [[10] * 6, [9, 9, 10, 10, 10, 10], [1, 13, 10, 10, 10]])
def test_the_sender_stops_when_the_window_is_used_up_within_what_the_receiver_allows(sizes):
    """Nobody reads: the pump stops for want of credit, and what it sent fits the
    receiver's bound (a window and two chunks), so the stream is not failed as a flood."""
    peer = Peer(window=15, chunk=max(sizes))
    chunks = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    with pytest.raises(Timeout):
        pump(with_last(chunks), peer.head, peer.data, peer.open_window, idle=0.2)
    sent = peer.fed
    assert 15 <= sent < 15 + 2 * max(sizes)
    assert peer.stream.read(sent) == b"".join(chunks)[:sent]


def test_a_gone_link_stops_the_pump_and_says_so():
    sent = []

    def data(chunk, last):
        sent.append(chunk)
        return len(sent) < 2

    assert not pump(with_last([b"a", b"b", b"c", b"d"]), lambda c, e: True, data,
                    lambda: SendWindow(100), idle=1.0)
    assert sent == [b"b", b"c"]


def test_a_failed_window_ends_the_pump_with_its_error():
    window = SendWindow(1)
    window.fail(OrbitError("cancelled by the peer", 499))
    with pytest.raises(OrbitError, match="cancelled"):
        pump(with_last([b"ab", b"cd"]), lambda c, e: True, lambda c, e: True, lambda: window, idle=1.0)


def test_the_source_is_closed_when_the_pump_stops_early():
    closed = []

    def source():
        try:
            yield from (b"x", b"y", b"z")
        finally:
            closed.append(True)

    pieces = with_last(source())
    assert not pump(pieces, lambda c, e: False, lambda c, e: True, lambda: SendWindow(10), idle=1.0)
    pieces.close()
    assert closed == [True]
