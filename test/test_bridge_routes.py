"""The bridge's route table is the one source of the names endpoints cannot take."""
import pytest

from radical_orbit import protocol
from radical_orbit.bridge import routes
from radical_orbit.errors import BadRequest
from radical_orbit.names import check_endpoint_name
from radical_orbit.router import class_router, route
from test_bridge_protocol import FakeEndpoint

#: SPEC 3: ``bridge`` and the first path segments of the bridge's own routes
SPEC_RESERVED = {"auth", "endpoint", "endpoints", "events", "health", "plugins", "register", "bridge"}


def test_the_reserved_names_are_the_first_segments_of_the_route_table():
    firsts = {rule.split("/", 1)[0] for _method, rule in routes.ROUTES.rules()} - {""}
    assert routes.RESERVED == firsts | {"bridge"}
    assert routes.RESERVED == SPEC_RESERVED


def test_a_route_added_to_the_table_reserves_its_first_segment(monkeypatch):
    check_endpoint_name("widgets")

    class Extended(routes.BridgeHandler):
        @route("GET", "widgets/{kind}")
        def route_widgets(self, kind: str) -> None:
            self.send_json({"kind": kind})

    table = class_router(Extended)
    assert table.match("GET", "widgets/round") == ("route_widgets", {"kind": "round"})
    monkeypatch.setattr(routes, "RESERVED", routes.reserved_names(table))
    with pytest.raises(BadRequest, match="reserved"):
        check_endpoint_name("widgets")
    assert class_router(routes.BridgeHandler) is routes.ROUTES   # the bridge's own table is untouched


def test_a_bridge_route_cannot_start_with_a_parameter():
    class Loose(routes.BridgeHandler):
        @route("GET", "v{version}/status")
        def route_status(self, version: str) -> None:
            pass

    with pytest.raises(ValueError, match="fixed segment"):
        routes.reserved_names(class_router(Loose))


@pytest.mark.parametrize("name", sorted(SPEC_RESERVED))
def test_every_reserved_name_is_refused_locally(name):
    with pytest.raises(BadRequest, match="reserved"):
        check_endpoint_name(name)


def test_every_reserved_name_is_refused_by_a_running_bridge(orbit_plain):
    orbit_plain.start_bridge("-p", "none")
    for name in sorted(routes.RESERVED):
        refusal = FakeEndpoint(orbit_plain, name=name).welcome
        assert refusal["k"] == protocol.REFUSE, name
        assert refusal["status"] == 400 and "reserved" in refusal["detail"], refusal


def test_every_route_in_the_table_is_served_by_the_bridge_not_proxied(orbit_plain):
    """A method no route allows gets the bridge's 405 (with Allow), never 'no endpoint'."""
    orbit_plain.start_bridge("-p", "none")
    for method, rule in routes.ROUTES.rules():
        if rule.split("/", 1)[0] == "bridge":
            continue    # bridge/<anything else> goes to the bridge's own plugins
        path = rule.replace("{file}", "x.js").replace("{name}", "x")
        r = orbit_plain.get(path, "PATCH")
        assert r.status_code == 405 and method in r.headers["Allow"], (rule, r.status_code, r.text)
