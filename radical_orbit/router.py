"""The small router shared by the bridge and the endpoint.

Routes are declared once, on the methods that serve them, with ``@route``;
``class_router`` collects a class's declarations into a ``Router``. Rules such
as ``GET metrics/{sid}`` or ``GET files/{path:path}`` are compiled once to
regular expressions; ``match`` returns the target and the path parameters, or
raises NotFound / MethodNotAllowed.
"""
import re
from typing import Any, Callable, Dict, FrozenSet, List, Tuple, Type

from .errors import MethodNotAllowed, NotFound

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(segment|path|int))?\}")
_KINDS = {"segment": r"[^/]+", "path": r".+", "int": r"-?\d+"}


def route(method: str, rule: str) -> Callable:
    """Declare that the decorated method serves ``method rule``; stackable."""
    def mark(func):
        func.__dict__.setdefault("_orbit_routes", []).append((method.upper(), rule))
        return func
    return mark


def class_router(cls: Type) -> "Router":
    """The ``@route`` declarations of ``cls`` and its bases (the most derived wins),
    compiled once per class; each target is the method's attribute name."""
    cached = cls.__dict__.get("_orbit_router")
    if cached is not None:
        return cached
    router = Router()
    taken = set()
    for klass in cls.__mro__:
        for attr, func in vars(klass).items():
            for method, rule in getattr(func, "_orbit_routes", ()):
                if (method, rule) not in taken:
                    taken.add((method, rule))
                    router.add(method, rule, attr)
    cls._orbit_router = router
    return router


def compile_rule(rule: str) -> Tuple["re.Pattern", Dict[str, str]]:
    """``a/{x}/{rest:path}`` -> regex with named groups, and each parameter's kind."""
    pattern, kinds, pos = [], {}, 0
    rule = rule.strip("/")
    for m in _PARAM.finditer(rule):
        pattern.append(re.escape(rule[pos:m.start()]))
        name, kind = m.group(1), m.group(2) or "segment"
        if name in kinds:
            raise ValueError("duplicate parameter %r in rule %r" % (name, rule))
        kinds[name] = kind
        pattern.append("(?P<%s>%s)" % (name, _KINDS[kind]))
        pos = m.end()
    pattern.append(re.escape(rule[pos:]))
    return re.compile("^" + "".join(pattern) + "$"), kinds


class Router:
    """Method + path pattern -> target, with typed path parameters."""

    def __init__(self) -> None:
        self._static: Dict[str, Dict[str, Any]] = {}
        self._dynamic: List[Tuple[str, "re.Pattern", Dict[str, str], str, Any]] = []

    def add(self, method: str, rule: str, target: Any) -> None:
        method = method.upper()
        regex, kinds = compile_rule(rule)
        if not kinds:
            self._static.setdefault(rule.strip("/"), {})[method] = target
        else:
            self._dynamic.append((method, regex, kinds, rule.strip("/"), target))

    def rules(self) -> List[Tuple[str, str]]:
        out = [(m, r) for r, methods in self._static.items() for m in methods]
        return out + [(m, r) for m, _x, _k, r, _t in self._dynamic]

    def first_segments(self) -> FrozenSet[str]:
        """The first path segment of every rule (the root rule has none); ValueError for a
        rule whose first segment has a parameter (it has no fixed prefix to reserve)."""
        out = set()
        for _method, rule in self.rules():
            first = rule.split("/", 1)[0]
            if _PARAM.search(first):
                raise ValueError("rule %r does not start with a fixed segment" % rule)
            if first:
                out.add(first)
        return frozenset(out)

    def match(self, method: str, path: str) -> Tuple[Any, Dict[str, Any]]:
        method = method.upper()
        path = path.strip("/")
        allowed = set()
        methods = self._static.get(path)
        if methods:
            target = methods.get(method) or (method == "HEAD" and methods.get("GET"))
            if target:
                return target, {}
            allowed.update(methods)
        for rule_method, regex, kinds, _rule, target in self._dynamic:
            m = regex.match(path)
            if not m:
                continue
            if rule_method != method and not (method == "HEAD" and rule_method == "GET"):
                allowed.add(rule_method)
                continue
            params = m.groupdict()
            for name, kind in kinds.items():
                if kind == "int":
                    params[name] = int(params[name])
            return target, params
        if allowed:
            raise MethodNotAllowed("%s not allowed on /%s (allowed: %s)"
                                   % (method, path, ", ".join(sorted(allowed))),
                                   headers={"Allow": ", ".join(sorted(allowed))})
        raise NotFound("no route for %s /%s" % (method, path))
