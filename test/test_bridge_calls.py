"""Units of the bridge's calls for its own plugins (radical_orbit/bridge/calls.py); the
calls end to end are in test_staging_client.py (copies between endpoints)."""
import json

import pytest

from radical_orbit.bridge.calls import CallResponse, ChunkReader
from radical_orbit.errors import FileNotFound, OrbitError, Unavailable


def test_a_chunk_reader_hands_chunks_on_and_knows_its_end():
    chunks = [b"a" * 10, b"b" * 10, b"c" * 5]
    reader = ChunkReader(iter(chunks), 25)
    first = reader.read(16)
    assert first is chunks[0] and not reader.done         # a chunk that fits goes as is
    assert reader.read(4) == b"b" * 4 and reader.read(16) == b"b" * 6
    assert reader.read(16) == b"c" * 5 and reader.done     # done with the last byte, no empty read
    assert reader.read(16) == b"" and reader.consumed == 25


def test_a_chunk_reader_runs_its_source_to_the_end_and_refuses_more_than_declared():
    ended = []

    def source(extra):
        yield b"x" * 8
        if extra:
            yield b"y"
        ended.append(True)
    assert ChunkReader(source(False), 8).read(8) == b"x" * 8 and ended == [True]
    with pytest.raises(OrbitError) as exc:
        ChunkReader(source(True), 8).read(8)
    assert exc.value.status_code == 502
    unknown = ChunkReader(iter([b"ab", b"cd"]))              # no length: done at the source's end
    assert unknown.read(-1) == b"abcd" and unknown.done
    assert ChunkReader(b"raw").length == 3 and ChunkReader(None).read(5) == b""


def test_a_call_response_maps_errors_and_releases_once():
    released = []
    body = json.dumps({"error": True, "status_code": 404, "detail": "no such file",
                       "kind": "FileNotFoundError"}).encode()
    resp = CallResponse(404, {"Content-Type": "application/json"}, iter([body]), len(body), released.append)
    with pytest.raises(FileNotFound) as exc:
        resp.raise_for_status("source hpc1:/x")
    assert isinstance(exc.value, FileNotFoundError) and exc.value.detail == "source hpc1:/x: no such file"
    assert released == [True]                               # read to its end: finished, not cancelled
    resp.close()
    assert released == [True]
    resp = CallResponse(503, {"Retry-After": "2"}, iter([b"not json"]), None, released.append)
    with pytest.raises(Unavailable):
        resp.raise_for_status("destination")
    ok = CallResponse(200, {}, iter([b'{"sid": ', b'"s1"}']), None, released.append)
    ok.raise_for_status("x")
    assert ok.json() == {"sid": "s1"} and ok.headers == {}
    with CallResponse(200, {}, iter([b"12345"]), 5, released.append) as big:
        with pytest.raises(OrbitError):
            big.read_all(4)
