"""The bridge's event hub and topology, in process."""
import json
import threading

from radical_orbit.bridge.events import NOTIFICATION, TOPOLOGY, EventHub, Filter
from radical_orbit.bridge.topology import Topology
from orbit_procs import wait_for


class FakeConn:
    def __init__(self, name):
        self.name = name
        self.closed = False

    def describe(self):
        return {"endpoint": {"type": "standalone"}, "plugins": {"echo": {"type": "echo"}}}


def test_new_listener_gets_one_snapshot_then_live_events():
    hub = EventHub()
    listener, backlog = hub.subscribe(Filter(), None, lambda: {"endpoints": {}})
    assert [e.topic for e in backlog] == [TOPOLOGY]
    hub.notify("ep", "echo", "t", {"x": 1})
    events = listener.take(1.0)
    assert len(events) == 1 and events[0].topic == NOTIFICATION
    assert b'"endpoint":"ep"' in events[0].wire and events[0].wire.startswith(b"id: ")


def test_last_event_id_replays_exactly_what_was_missed():
    hub = EventHub()
    first = hub.notify("ep", "p", "a", 1)
    hub.notify("ep", "p", "b", 2)
    hub.notify("ep", "p", "c", 3)
    _listener, backlog = hub.subscribe(Filter(), first.seq, lambda: {})
    assert [e.ntopic for e in backlog] == ["b", "c"]


def test_an_id_from_an_earlier_bridge_run_gets_all_of_this_run():
    old = EventHub()
    last_of_old_run = old.notify("ep", "p", "old", 0).seq
    hub = EventHub()
    hub.notify("ep", "p", "new1", 1)
    hub.notify("ep", "p", "new2", 2)
    _listener, backlog = hub.subscribe(Filter(), last_of_old_run, lambda: {})
    assert [e.ntopic for e in backlog] == ["new1", "new2"]


def test_an_id_older_than_the_ring_gets_a_snapshot():
    hub = EventHub(ring_size=2)
    first = hub.notify("ep", "p", "a", 1)
    for i in range(5):
        hub.notify("ep", "p", "more", i)
    _listener, backlog = hub.subscribe(Filter(), first.seq, lambda: {"snap": True})
    assert [e.topic for e in backlog] == [TOPOLOGY]


def test_filters_pass_topology_and_matching_notifications():
    flt = Filter(endpoint="ep1", plugin="psij", topic="job_status")
    hub = EventHub()
    listener, _ = hub.subscribe(flt, None, lambda: {})
    hub.notify("ep1", "psij", "job_status", 1)
    hub.notify("ep2", "psij", "job_status", 2)
    hub.notify("ep1", "sysinfo", "job_status", 3)
    hub.notify("ep1", "psij", "other", 4)
    hub.publish(TOPOLOGY, {})
    assert [(e.topic, e.endpoint) for e in listener.take(1.0)] == [(NOTIFICATION, "ep1")]
    listener2, _ = hub.subscribe(Filter(), None, lambda: {})
    hub.publish(TOPOLOGY, {})
    assert [e.topic for e in listener2.take(1.0)] == [TOPOLOGY]


def test_a_slow_listener_is_cut_off_not_grown():
    hub = EventHub(listener_queue=3)
    listener, _ = hub.subscribe(Filter(), None, lambda: {})
    for i in range(10):
        hub.notify("ep", "p", "t", i)
    assert listener.overflowed and len(listener.queue) == 3


def test_a_burst_of_registrations_publishes_few_topology_events():
    hub = EventHub(ring_size=100000)
    topology = Topology(hub, "http://x", coalesce=0.05)
    topology.start()
    try:
        threads = [threading.Thread(target=lambda i=i: topology.add(FakeConn("ep%d" % i))) for i in range(1000)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        def last_published():
            events = [e for e in hub._ring if e.topic == TOPOLOGY]
            if not events:
                return 0
            payload = json.loads(events[-1].wire.split(b"data: ", 1)[1])
            return len(payload["data"]["endpoints"])
        wait_for(lambda: last_published() == 1000, 10, "a topology event with all 1000")
        published = [e for e in hub._ring if e.topic == TOPOLOGY]
        assert len(published) < 100, len(published)
        assert len(topology.summary()["endpoints"]) == 1000
    finally:
        topology.stop()


def test_ring_and_listener_queues_are_bounded_in_bytes():
    hub = EventHub(ring_bytes=10000, listener_bytes=5000)
    listener, _ = hub.subscribe(Filter(), None, lambda: {})
    for i in range(20):
        hub.notify("ep", "p", "big", "x" * 1000)
    assert sum(len(e.wire) for e in hub._ring) <= 10000
    assert listener.overflowed and listener.queued_bytes <= 5000


def test_concurrent_publishers_reach_every_listener_in_id_order():
    hub = EventHub(listener_queue=100000)
    listener, _ = hub.subscribe(Filter(), None, lambda: {})

    def publish(n):
        for i in range(500):
            hub.notify("ep%d" % n, "p", "t", i)
    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in listener.take(1.0)]
    assert len(seqs) == 2000 and seqs == sorted(seqs)


def test_one_event_larger_than_a_listener_queue_does_not_cut_the_listener():
    """A 4 MiB notification of control characters is 24 MiB as JSON, more than a listener's
    16 MiB: it cut every listener (again after each resume, since it is in the backlog)."""
    hub = EventHub(listener_bytes=5000)
    listener, _ = hub.subscribe(Filter(), None, lambda: {})
    hub.notify("ep", "p", "huge", "\x01" * 2000)        # 12,000 bytes of JSON
    assert not listener.overflowed and len(listener.take(0)) == 1
    hub.notify("ep", "p", "huge", "\x01" * 2000)
    hub.notify("ep", "p", "huge", "\x01" * 2000)         # a second one queued behind: too slow
    assert listener.overflowed
