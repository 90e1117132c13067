"""The wire schema, the name rules and what keeps the topology alive, in process."""
import math

import msgpack
import pytest

from orbit_procs import wait_for
from radical_orbit import names, protocol
from radical_orbit.bridge.events import TOPOLOGY, EventHub, Filter, Listener
from radical_orbit.bridge.topology import Topology
from radical_orbit.errors import BadRequest, Conflict
from radical_orbit.plugin import Plugin
from radical_orbit.plugin_host import PluginHost


def refusal(kind, accepted=protocol.KINDS, **fields):
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(protocol.encode(kind, **fields), accepted)
    return err.value


def test_every_kind_as_the_peers_send_it_passes():
    samples = [
        (protocol.HELLO, dict(name="ep1", resume=None, pid=12, endpoint={"type": "login"},
                              plugins={"echo": {"type": "echo", "ui_config": {"a": 1}, "enabled": True}},
                              notes={"stream": "0123456789abcdef", "acked": 0})),
        (protocol.WELCOME, dict(resume="k", settings=protocol.DEFAULT_SETTINGS, notes={"acked": 12})),
        (protocol.ACK, dict(stream="0123456789abcdef", seq=12)),
        (protocol.REFUSE, dict(status=409, detail="taken", retry=True)),
        (protocol.REQUEST, dict(id=1, method="GET", path="echo/ping", query="a=1", headers={"x": "y"},
                                body=b"", end=True, length=None, deadline=300.0)),
        (protocol.RESPONSE, dict(id=1, status=200, headers={}, body=b"{}", end=True, length=2)),
        (protocol.DATA, dict(id=1, body=b"x", end=False)),
        (protocol.CREDIT, dict(id=1, n=65536)),
        (protocol.CANCEL, dict(id=1, detail="gone")),
        (protocol.NOTE, dict(plugin="echo", topic="t", data={"a": [1, 2.5, None, b"raw"]}, ts=1.5,
                             stream="0123456789abcdef", seq=13)),
        (protocol.PLUGINS, dict(plugins={})),
        (protocol.SHUTDOWN, dict(reason="bye")),
        (protocol.ERROR, dict(detail="x", id=3, fatal=False)),
    ]
    assert {kind for kind, _ in samples} == protocol.KINDS == set(protocol.SCHEMA)
    for kind, fields in samples:
        assert protocol.decode(protocol.encode(kind, **fields))["k"] == kind


@pytest.mark.parametrize("kind,fields,problem", [
    (protocol.NOTE, dict(plugin="p", topic="t", stream="s", seq=0), "'seq' must be a notification number"),
    (protocol.NOTE, dict(plugin="p", topic="t", stream="s" * 65, seq=1), "'stream' must be a notification stream id"),
    (protocol.ACK, dict(stream="s"), "'seq' is missing"),
    (protocol.HELLO, dict(name="ep1", notes={"acked": 1}), "'notes' needs 'stream'"),
    (protocol.HELLO, dict(name="ep1", notes={"stream": "s", "acked": -1}), "'notes' needs 'acked'"),
    (protocol.WELCOME, dict(resume="k", notes={"acked": "3"}), "'notes' needs 'acked'"),
])
def test_notification_numbers_are_checked(kind, fields, problem):
    assert problem in refusal(kind, **fields).detail


def test_unknown_fields_are_left_alone():
    assert protocol.decode(protocol.encode(protocol.CREDIT, id=1, n=2, later="x"))["later"] == "x"


def test_a_stream_message_names_its_stream_and_is_not_fatal():
    err = refusal(protocol.DATA, id=7, body="text")
    assert err.id == 7 and not err.fatal and err.kind == protocol.DATA
    assert "malformed data message: 'body' must be bytes (msgpack bin), got str 'text'" == err.detail
    err = refusal(protocol.REQUEST)
    assert err.id is None and "'id' is missing" in err.detail


def test_handshake_kinds_are_fatal_and_envelope_breaks_are_fatal():
    assert refusal(protocol.HELLO, plugins={}).fatal              # no name
    assert refusal(protocol.WELCOME, resume="k", settings={"chunk": 0}).fatal
    for raw in (b"\xc1", msgpack.packb([1]), msgpack.packb({"v": 2, "k": "req"})):
        with pytest.raises(protocol.ProtocolError) as err:
            protocol.decode(raw)
        assert err.value.fatal


@pytest.mark.parametrize("value", [True, -1, 2**63, 1.0, "1"])
def test_ids_are_non_negative_ints_not_bools(value):
    assert "'id' must be a stream id" in refusal(protocol.CREDIT, id=value, n=1).detail


def test_unknown_and_unexpected_kinds_are_refused_without_closing():
    err = refusal("mystery", id=4)
    assert not err.fatal and err.id is None and "unknown message kind" in err.detail
    err = refusal(protocol.REQUEST, protocol.TO_BRIDGE, id=1, method="GET", path="x")
    assert not err.fatal and "unexpected req message" in err.detail


@pytest.mark.parametrize("data,problem", [
    ({b"k": 1}, "map key that is not a str"),
    ({"a": [{"b": math.nan}]}, "JSON cannot carry"),
    ({"a": math.inf}, "JSON cannot carry"),
    (msgpack.ExtType(5, b"x"), "ExtType"),
])
def test_note_data_must_be_json(data, problem):
    assert problem in refusal(protocol.NOTE, plugin="p", topic="t", data=data).detail


def test_nesting_is_bounded():
    data = []
    for _ in range(protocol.MAX_DEPTH + 5):
        data = [data]
    assert "nested deeper" in refusal(protocol.NOTE, plugin="p", topic="t", data=data).detail


@pytest.mark.parametrize("plugins,problem", [
    ({b"echo": {}}, "invalid plugin instance name bytes"),
    ({"echo\n": {}}, "invalid plugin instance name"),
    ({"echo": {}, "Echo": {}}, "lists plugin 'Echo' twice"),
    ({"echo": "x"}, "not a map"),
    ({"echo": {"ui_config": [1]}}, "ui_config that is not a map"),
    ({"echo": {"ui_config": {"a": "x" * protocol.MAX_UI_CONFIG}}}, "ui_config of"),
    ({"echo": {"doc": "x" * protocol.MAX_PLUGIN_DESCRIPTION}}, "describes plugin 'echo' in"),
    ({"p%d" % i: {} for i in range(protocol.MAX_PLUGINS + 1)}, "plugins, more than"),
])
def test_the_plugin_table_is_bounded_and_json(plugins, problem):
    assert problem in refusal(protocol.PLUGINS, plugins=plugins).detail


def test_a_hello_is_bounded_as_a_whole():
    plugins = {"p%d" % i: {"doc": "x" * 10000} for i in range(7)}
    err = refusal(protocol.HELLO, name="ep", plugins=plugins)
    assert err.fatal and "exceed the %d-byte limit of a hello" % protocol.MAX_DESCRIPTION in err.detail


def test_a_message_over_the_limit_is_refused_before_unpacking():
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(b"\x00" * (protocol.MAX_MESSAGE + 1))
    assert "exceeds" in err.value.detail


def test_a_hello_over_its_limit_is_refused_before_unpacking():
    # 4 MiB of empty maps: 300 MB once unpacked, if it were
    raw = b"\xdd" + (protocol.MAX_MESSAGE - 5).to_bytes(4, "big") + b"\x80" * (protocol.MAX_MESSAGE - 5)
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(raw, (protocol.HELLO,))
    assert err.value.fatal and "refused unread" in err.value.detail


def test_the_maps_and_arrays_of_a_message_are_bounded_while_unpacking():
    items = protocol.MAX_CONTAINERS + 1
    bomb = b"\x82\xa1v\x01\xa1d\xdd" + items.to_bytes(4, "big") + b"\x80" * items
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(bomb)
    assert "more than %d maps and arrays" % protocol.MAX_CONTAINERS in err.value.detail
    # as many containers as allowed, in a message larger than the count: unpacked
    data = [{}] * (protocol.MAX_CONTAINERS - 2)
    msg = protocol.decode(protocol.encode(protocol.NOTE, plugin="p", topic="t", data=data, pad="x" * 10))
    assert len(msg["data"]) == protocol.MAX_CONTAINERS - 2


def test_an_undecodable_message_says_why():
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(b"\x91" * 100000 + b"\xc0")
    assert err.value.detail != "undecodable message: "
    assert "StackError" in err.value.detail


# -- names ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bridge\n", "ep1\n", "ep1\r", "", "-x", "a" * 65, "é"])
def test_names_match_whole(name):
    assert not names.is_name(name)
    assert not names.NAME_RE.match(name)          # anchored at both ends, for any caller
    with pytest.raises(BadRequest):
        names.check_name(name)


@pytest.mark.parametrize("name", ["bridge", "BRIDGE", "Bridge", "Events", "REGISTER"])
def test_reserved_names_compare_case_insensitively(name):
    with pytest.raises(BadRequest, match="reserved"):
        names.check_endpoint_name(name)


class _Echo(Plugin):
    plugin_name = "echo"


def test_plugin_instance_names_are_unique_case_insensitively():
    host = PluginHost("ep", "standalone", {"hostname": "h"}, lambda *a: None)
    host.add("echo", _Echo)
    with pytest.raises(Conflict, match="already loaded as 'echo'"):
        host.add("ECHO", _Echo)
    host.stop()


# -- the topology stays alive and small for listeners ----------------------------------------
class _Conn:
    def __init__(self, name, plugins):
        self.name, self.closed, self.plugins = name, False, plugins

    def describe(self):
        return {"endpoint": {"type": "x"}, "plugins": self.plugins}


def test_names_are_unique_in_the_topology_in_any_case_but_routed_exactly():
    topology = Topology(EventHub(), "http://b")
    conn = _Conn("ep1", {})
    topology.add(conn)
    assert topology.holder("EP1") is conn and topology.get("EP1") is None and topology.get("ep1") is conn
    assert topology.remove(_Conn("EP1", {})) is False and topology.remove(conn) is True


def test_an_entry_json_cannot_carry_is_left_out_not_a_broken_topology():
    hub = EventHub()
    topology = Topology(hub, "http://b", coalesce=0.01)
    topology.start()
    try:
        topology.add(_Conn("bad", {b"bin": {}}))        # as if it had slipped past the schema
        topology.add(_Conn("good", {"echo": {}}))
        wait_for(lambda: b'"good"' in topology.snapshot_json(), 5, "a topology listing 'good'")
        assert b'"bad"' not in topology.snapshot_json()
        listener, _ = hub.subscribe(Filter(), None, topology.snapshot)
        topology.add(_Conn("later", {}))
        wait_for(lambda: any(b'"later"' in e.wire for e in listener.take(0.1)), 5, "a later topology event")
    finally:
        topology.stop()


def test_a_newer_topology_supersedes_the_queued_one_and_never_overflows():
    hub = EventHub(listener_bytes=1000)
    listener = Listener(Filter(), 10, 1000)
    for i in range(5):
        listener.offer(hub.publish(TOPOLOGY, {"endpoints": {"ep%d" % i: "x" * 5000}}))
    listener.offer(hub.notify("ep", "p", "t", 1))
    events = listener.take(0)
    assert not listener.overflowed
    assert [e.topic for e in events] == [TOPOLOGY, "notification"] and b"ep4" in events[0].wire


class _Huge(Plugin):
    plugin_name = "huge"
    ui_config = {"blob": "x" * (2 * protocol.MAX_UI_CONFIG)}


def test_an_endpoint_refuses_to_load_a_plugin_the_bridge_would_refuse():
    from radical_orbit.endpoint.service import EndpointService
    service = EndpointService("ep", "http://127.0.0.1:9", None, None)
    service.host.add("echo", _Echo)
    with pytest.raises(BadRequest, match="plugin huge cannot be loaded here: .*ui_config of"):
        service.host.add("huge", _Huge)
    assert service.host.names() == ["echo"]
    protocol.decode(protocol.encode(protocol.HELLO, **service._hello()), (protocol.HELLO,))
    service.host.stop()
