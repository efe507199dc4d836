#!/usr/bin/env python3
"""A test Kubernetes API server for deployctl's tests (Python 3.11, stdlib only).

No real kube-apiserver can be installed on the machines the tests run on, so
this server speaks the Kubernetes REST API over plain HTTP (no TLS, no auth)
for what deployctl's Kubernetes code uses through kube-rs: discovery,
CustomResourceDefinitions and the custom resources they register, Leases,
Namespaces, ConfigMaps, Secrets and Events, with the semantics the
Kubernetes API documentation describes:

- one global resourceVersion counter bumped by every write; no-op writes
  do not bump it;
- optimistic concurrency (409 Conflict on a stale metadata.resourceVersion),
  generateName, 409 AlreadyExists, 404 NotFound, 422 Invalid, all as
  `Status` objects;
- metadata.generation bumped by spec changes only;
- the status subresource: the main resource ignores status, /status
  ignores everything else;
- PATCH as JSON merge patch, JSON patch, strategic merge patch (built-in
  types only: custom resources answer 415 as Kubernetes does) and
  server-side apply with field ownership and conflicts (409 unless force);
- finalizers: DELETE sets deletionTimestamp while finalizers remain and the
  object goes away when the last one is removed;
- watch: chunked newline-delimited JSON events from a resourceVersion on,
  bookmarks, sendInitialEvents, timeoutSeconds, and `410 Expired` as an
  ERROR event once the history a watch needs has been compacted;
- CRDs become Established (a separate write, shortly after creation) and
  only then are their resources served; structural pruning, nullable and
  defaults from the openAPIV3Schema.

What it approximates is listed in tests/emulators/README.md (kubeapi
section). Control endpoints live under /_emulator/.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import copy
import datetime
import json
import random
import re
import select
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CRD_GROUP = "apiextensions.k8s.io"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
# The parts of metadata that field management tracks, as Kubernetes does.
MANAGED_META = ("labels", "annotations", "finalizers", "ownerReferences")
MISSING = object()


class ApiError(Exception):
    """A Kubernetes `Status` failure answer."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class ResourceType:
    """One served (group, version, resource)."""

    def __init__(self, group, version, plural, kind, namespaced, *, singular=None, list_kind=None,
                 status_sub=False, custom=False, crd_name=None, schema=None, short_names=None,
                 generation=False):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.singular = singular or kind.lower()
        self.list_kind = list_kind or kind + "List"
        self.namespaced = namespaced
        self.status_sub = status_sub
        self.custom = custom
        self.crd_name = crd_name
        self.schema = schema
        self.short_names = short_names or []
        # Whether metadata.generation is maintained (CRs and CRDs).
        self.generation = generation

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`releases.deployctl.io` or `configmaps`: how Kubernetes names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def details(self, name: str, uid: str | None = None) -> dict:
        d = {"name": name, "group": self.group, "kind": self.plural}
        if uid:
            d["uid"] = uid
        return d

    def not_found(self, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{self.qualified} "{name}" not found', self.details(name))

    def conflict(self, name: str, why: str) -> ApiError:
        return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {self.qualified} "{name}": {why}',
                        self.details(name))

    def invalid(self, name: str, field: str, why: str) -> ApiError:
        details = self.details(name)
        details["kind"] = self.kind
        details["causes"] = [{"reason": "FieldValueInvalid", "message": why, "field": field}]
        return ApiError(422, "Invalid", f'{self.kind}.{self.group or "core"} "{name}" is invalid: {field}: {why}'
                        if self.group else f'{self.kind} "{name}" is invalid: {field}: {why}', details)


BUILTINS = [
    ResourceType("", "v1", "namespaces", "Namespace", False, status_sub=True, short_names=["ns"]),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "events", "Event", True, short_names=["ev"]),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"]),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, short_names=["ev"]),
    ResourceType(CRD_GROUP, "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                 status_sub=True, short_names=["crd", "crds"], generation=True),
]


# ---------------------------------------------------------------- JSON helpers

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_patch(target, patch, path=()):
    """Strategic merge patch, reduced to what built-in metadata needs: maps
    merge like a merge patch, `$patch: replace|delete` on maps,
    metadata.finalizers merges as a set and
    `$deleteFromPrimitiveList/finalizers` removes entries. Other lists are
    replaced (their merge keys are not modelled)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return MISSING
    if directive == "replace":
        return {k: v for k, v in copy.deepcopy(patch).items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch" or key.startswith("$setElementOrder/") or key.startswith("$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [x for x in result[field] if x not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif path == ("metadata",) and key == "finalizers" and isinstance(value, list):
            current = result.get(key) if isinstance(result.get(key), list) else []
            result[key] = current + [x for x in value if x not in current]
        else:
            merged = strategic_patch(result.get(key), value, path + (key,))
            if merged is MISSING:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"json patch: invalid path {path!r}: must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc, parts, op):
    node = doc
    for p in parts[:-1]:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        else:
            raise ApiError(422, "Invalid", f"json patch {op}: path /{'/'.join(parts)} does not exist")
    return node


def _get_pointer(doc, parts, op):
    if not parts:
        return doc
    node = _container(doc, parts, op)
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        return node[last]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node[int(last)]
    raise ApiError(422, "Invalid", f"json patch {op}: path /{'/'.join(parts)} does not exist")


def _remove_pointer(doc, parts, op):
    node = _container(doc, parts, op)
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        return node.pop(last)
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node.pop(int(last))
    raise ApiError(422, "Invalid", f"json patch {op}: path /{'/'.join(parts)} does not exist")


def _add_pointer(doc, parts, value, op, replace=False):
    if not parts:
        return value
    node = _container(doc, parts, op)
    last = parts[-1]
    if isinstance(node, dict):
        if replace and last not in node:
            raise ApiError(422, "Invalid", f"json patch replace: path /{'/'.join(parts)} does not exist")
        node[last] = value
    elif isinstance(node, list):
        if last == "-" and not replace:
            node.append(value)
        elif last.isdigit() and int(last) <= len(node) - (1 if replace else 0):
            if replace:
                node[int(last)] = value
            else:
                node.insert(int(last), value)
        else:
            raise ApiError(422, "Invalid", f"json patch {op}: index {last} out of range")
    else:
        raise ApiError(422, "Invalid", f"json patch {op}: path /{'/'.join(parts)} does not exist")
    return doc


def json_patch(doc, ops):
    """RFC 6902 JSON patch."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a JSON array of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch: malformed operation {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add_pointer(doc, parts, copy.deepcopy(op.get("value")), kind)
        elif kind == "remove":
            _remove_pointer(doc, parts, kind)
        elif kind == "replace":
            doc = _add_pointer(doc, parts, copy.deepcopy(op.get("value")), kind, replace=True)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove_pointer(doc, source, kind) if kind == "move" else copy.deepcopy(
                _get_pointer(doc, source, kind))
            doc = _add_pointer(doc, parts, value, kind)
        elif kind == "test":
            if _get_pointer(doc, parts, kind) != op.get("value"):
                raise ApiError(422, "Invalid", f"json patch test operation failed at {op['path']}")
        else:
            raise bad_request(f"json patch: unknown operation {kind!r}")
    return doc


def get_path(obj, path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return MISSING
        obj = obj[p]
    return obj


def set_path(obj, path, value):
    for p in path[:-1]:
        if not isinstance(obj.get(p), dict):
            obj[p] = {}
        obj = obj[p]
    obj[path[-1]] = copy.deepcopy(value)


def del_path(obj, path):
    """Removes a leaf and the maps it leaves empty (below the top level)."""
    parents = []
    node = obj
    for p in path[:-1]:
        if not isinstance(node, dict) or p not in node:
            return
        parents.append((node, p))
        node = node[p]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents[1:]):
        if parent[key] == {}:
            parent.pop(key)


def leaves(value, prefix=()):
    """Field paths of a value: maps are walked, lists and scalars are leaves
    (lists are atomic here), nulls own nothing."""
    out = set()
    if isinstance(value, dict):
        # An empty map owns nothing: applying `spec: {}` must not wipe spec.
        for k, v in value.items():
            out |= leaves(v, prefix + (k,))
    elif value is not None and prefix:
        out.add(prefix)
    return out


def managed_paths(obj, rtype: ResourceType, status_part: bool):
    """The field paths field management tracks for one side of an object:
    the status (status_part) or everything else."""
    out = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            if status_part and rtype.status_sub:
                continue
            for mk in MANAGED_META:
                if isinstance(value, dict) and mk in value:
                    out |= leaves(value[mk], ("metadata", mk))
            continue
        if rtype.status_sub and (key == "status") != status_part:
            continue
        out |= leaves(value, (key,))
    return out


def fields_v1(paths) -> dict:
    tree: dict = {}
    for path in sorted(paths):
        node = tree
        for p in path:
            node = node.setdefault(f"f:{p}", {})
    return tree


def path_text(path) -> str:
    return "".join(f".{p}" for p in path)


# ---------------------------------------------------------------- selectors

LABEL_REQ = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<val>[-A-Za-z0-9_.]*)|\s+(?P<setop>in|notin)\s*\((?P<vals>[^)]*)\))?\s*$")


def parse_label_selector(text: str):
    if not text:
        return []
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    reqs = []
    for part in parts:
        m = LABEL_REQ.match(part)
        if not m or (m.group("neg") and (m.group("op") or m.group("setop"))):
            raise bad_request(f"unable to parse requirement: invalid label selector {part.strip()!r}")
        key = m.group("key")
        if m.group("neg"):
            reqs.append(lambda labels, k=key: k not in labels)
        elif m.group("op") in ("=", "=="):
            reqs.append(lambda labels, k=key, v=m.group("val"): labels.get(k) == v)
        elif m.group("op") == "!=":
            reqs.append(lambda labels, k=key, v=m.group("val"): labels.get(k) != v)
        elif m.group("setop"):
            vals = {v.strip() for v in m.group("vals").split(",") if v.strip()}
            if m.group("setop") == "in":
                reqs.append(lambda labels, k=key, vs=vals: labels.get(k) in vs)
            else:
                reqs.append(lambda labels, k=key, vs=vals: labels.get(k) not in vs)
        else:
            reqs.append(lambda labels, k=key: k in labels)
    return reqs


FIELD_REQ = re.compile(r"^\s*(?P<key>[A-Za-z.]+)\s*(?P<op>==|=|!=)\s*(?P<val>[^,]*?)\s*$")


def parse_field_selector(text: str):
    if not text:
        return []
    reqs = []
    for part in text.split(","):
        m = FIELD_REQ.match(part)
        if not m:
            raise bad_request(f"invalid field selector {part!r}: expected FIELD=VALUE or FIELD!=VALUE")
        key, op, val = m.group("key"), m.group("op"), m.group("val")
        if key not in ("metadata.name", "metadata.namespace"):
            raise bad_request(f'"{key}" is not a known field selector: only "metadata.name", '
                              f'"metadata.namespace" (field label not supported: {key})')
        field = key.split(".", 1)[1]
        if op == "!=":
            reqs.append(lambda meta, f=field, v=val: meta.get(f, "") != v)
        else:
            reqs.append(lambda meta, f=field, v=val: meta.get(f, "") == v)
    return reqs


def selected(obj, label_reqs, field_reqs) -> bool:
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    return all(r(labels) for r in label_reqs) and all(r(meta) for r in field_reqs)


# ---------------------------------------------------------------- schemas

def apply_schema(value, schema, path, errors):
    """Structural pruning, nullable and defaulting as the apiextensions
    server does them, with type checks reported as 422 causes."""
    if not isinstance(schema, dict):
        return value
    if value is None:
        return None
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errors.append((path, "must be an integer or a string"))
        return value
    expected = {"object": dict, "array": list, "string": str, "boolean": bool,
                "integer": int, "number": (int, float)}.get(typ)
    if expected is not None and (not isinstance(value, expected) or
                                 (typ in ("integer", "number") and isinstance(value, bool))):
        errors.append((path, f"Invalid value: must be of type {typ}"))
        return value
    if "enum" in schema and value not in schema["enum"]:
        errors.append((path, f"Unsupported value: {json.dumps(value)}: supported values: "
                             + ", ".join(json.dumps(v) for v in schema["enum"])))
    if isinstance(value, dict) and (typ == "object" or "properties" in schema):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        embedded = schema.get("x-kubernetes-embedded-resource")
        out = {}
        for k, v in value.items():
            if props is not None and k in props:
                sub = props[k]
                if v is None and not sub.get("nullable"):
                    continue
                out[k] = apply_schema(v, sub, f"{path}.{k}", errors)
            elif isinstance(additional, dict):
                out[k] = apply_schema(v, additional, f"{path}.{k}", errors)
            elif preserve or additional is True or embedded and k in ("apiVersion", "kind", "metadata"):
                out[k] = v
            elif props is None and additional is None and not preserve and typ != "object":
                out[k] = v
            # else: pruned, as Kubernetes prunes unknown fields.
        for k, sub in (props or {}).items():
            if k not in out and isinstance(sub, dict) and "default" in sub:
                out[k] = copy.deepcopy(sub["default"])
        for k in schema.get("required", []):
            if k not in out:
                errors.append((f"{path}.{k}", "Required value"))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_schema(v, schema["items"], f"{path}[{i}]", errors) for i, v in enumerate(value)]
    return value


# ---------------------------------------------------------------- the store

class Watch:
    def __init__(self, storage, namespace):
        self.storage = storage
        self.namespace = namespace
        self.closed = False


class Store:
    """Everything the server holds, behind one lock."""

    def __init__(self, history_limit: int, establish_delay: float):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.history_limit = history_limit
        self.establish_delay = establish_delay
        self.continues: dict[str, tuple[int, list]] = {}
        self.reset()

    def reset(self):
        with self.lock:
            for w in getattr(self, "watches", []):
                w.closed = True
            self.rv = 1
            self.objects: dict[tuple, dict] = {}
            # managed fields: key -> {(manager, operation, subresource): set(paths)}
            self.managed: dict[tuple, dict] = {}
            # (key, manager entry) -> (apiVersion, time) of its last change
            self.managed_meta: dict[tuple, tuple] = {}
            self.types: dict[tuple, ResourceType] = {}
            for t in BUILTINS:
                self.types[(t.group, t.version, t.plural)] = t
            self.history: list[tuple] = []  # (rv, storage, namespace, type, obj, old)
            self.history_rvs: list[int] = []
            self.floor = 0  # watches from an older resourceVersion get 410
            self.ns_floor: dict[str, int] = {}
            self.watches: list[Watch] = []
            self.continues = {}
            for ns in ("default", "kube-system", "kube-public"):
                self._commit(self.types[("", "v1", "namespaces")], ("", "namespaces", "", ns),
                             self._new_meta({"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": ns}, "status": {"phase": "Active"}}),
                             "ADDED", None)
            self.cond.notify_all()

    # -- helpers

    def _new_meta(self, obj):
        meta = obj.setdefault("metadata", {})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        return obj

    def _commit(self, rtype, key, obj, event, old):
        """Stores (or, with obj None, removes) an object: bumps the global
        resourceVersion and records the watch event."""
        self.rv += 1
        rv = self.rv
        if obj is None:
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self.objects.pop(key, None)
            self.managed.pop(key, None)
            snapshot = gone
        else:
            obj["metadata"]["resourceVersion"] = str(rv)
            self.objects[key] = obj
            snapshot = copy.deepcopy(obj)
        self.history.append((rv, key[:2], key[2], event, snapshot, old))
        self.history_rvs.append(rv)
        if len(self.history) > self.history_limit:
            drop = len(self.history) - self.history_limit
            self.floor = self.history_rvs[drop - 1]
            del self.history[:drop]
            del self.history_rvs[:drop]
        self.cond.notify_all()
        return snapshot

    def served(self, group, version, plural) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def type_for_storage(self, storage) -> ResourceType | None:
        for t in self.types.values():
            if t.storage == storage:
                return t
        return None

    def render_managed(self, key) -> list:
        entries = []
        for (manager, operation, sub, api_version, stamp), paths in sorted(
                ((k + self.managed_meta.get((key, k), ("", "")), v) for k, v in self.managed.get(key, {}).items()),
                key=lambda kv: kv[0][:3]):
            if not paths:
                continue
            entry = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": stamp,
                     "fieldsType": "FieldsV1", "fieldsV1": fields_v1(paths)}
            if sub:
                entry["subresource"] = sub
            entries.append(entry)
        return entries


STORE: Store | None = None
SETTINGS = {"bookmark_interval": 60.0}


def random_suffix() -> str:
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def view(obj: dict, rtype: ResourceType, partial: bool) -> dict:
    """How an object is sent: at the requested version, or as
    PartialObjectMetadata when the client asked for metadata only."""
    out = copy.deepcopy(obj)
    if partial:
        return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": out["metadata"]}
    out["apiVersion"] = rtype.api_version
    out["kind"] = rtype.kind
    return out


class Api:
    """The Kubernetes semantics, independent of HTTP."""

    def __init__(self, store: Store):
        self.s = store

    # -- field management

    def _record_update(self, key, rtype, old, new, manager, sub):
        """An update operation (create, PUT, non-apply PATCH) owns the
        fields it changed; other managers lose them."""
        status_part = sub == "status"
        old_paths = managed_paths(old, rtype, status_part) if old else set()
        new_paths = managed_paths(new, rtype, status_part)
        changed = {p for p in new_paths if get_path(old or {}, p) != get_path(new, p)}
        removed = old_paths - new_paths
        entries = self.s.managed.setdefault(key, {})
        mine = (manager, "Update", sub)
        for k in list(entries):
            if k != mine:
                entries[k] -= changed | removed
        entries.setdefault(mine, set())
        entries[mine] = (entries[mine] | changed) - removed
        if changed or removed or not old:
            self.s.managed_meta[(key, mine)] = (rtype.api_version, now_iso())
        self._prune_entries(key)

    def _prune_entries(self, key):
        entries = self.s.managed.get(key, {})
        for k in [k for k, v in entries.items() if not v]:
            entries.pop(k)
            self.s.managed_meta.pop((key, k), None)

    # -- lookups

    def _namespace_exists(self, ns):
        obj = self.s.objects.get(("", "namespaces", "", ns))
        if obj is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                           {"name": ns, "kind": "namespaces"})
        return obj

    def _key(self, rtype, ns, name):
        return (rtype.group, rtype.plural, ns or "", name)

    def get(self, rtype, ns, name):
        obj = self.s.objects.get(self._key(rtype, ns, name))
        if obj is None:
            raise rtype.not_found(name)
        return self._out(obj, rtype)

    def _out(self, obj, rtype):
        out = copy.deepcopy(obj)
        key = self._key(rtype, out["metadata"].get("namespace"), out["metadata"]["name"])
        managed = self.s.render_managed(key)
        if managed:
            out["metadata"]["managedFields"] = managed
        return out

    def list(self, rtype, ns, query):
        label_reqs = parse_label_selector(query.get("labelSelector", ""))
        field_reqs = parse_field_selector(query.get("fieldSelector", ""))
        rv_param = query.get("resourceVersion", "")
        rv_match = query.get("resourceVersionMatch", "")
        cont = query.get("continue", "")
        limit = query.get("limit", "")
        try:
            limit = int(limit) if limit else 0
        except ValueError:
            raise bad_request(f"limit must be an integer, not {limit!r}") from None
        if rv_match and rv_match not in ("NotOlderThan", "Exact"):
            raise bad_request(f"resourceVersionMatch: unsupported value {rv_match!r}")
        if rv_match and not rv_param:
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if rv_param and rv_param != "0":
            try:
                want = int(rv_param)
            except ValueError:
                raise bad_request(f"invalid resource version {rv_param!r}") from None
            if want > self.s.rv:
                raise ApiError(504, "Timeout", f"Too large resource version: {want}, current: {self.s.rv}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1})
            if rv_match == "Exact" and want != self.s.rv:
                raise ApiError(410, "Expired", f"too old resource version: {want} ({self.s.rv}); "
                               "this server keeps no historical lists")
        if cont:
            entry = self.s.continues.pop(cont, None)
            if entry is None:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the continue parameter.")
            list_rv, items = entry
        else:
            items = []
            for key in sorted(self.s.objects):
                if key[:2] != rtype.storage or (ns is not None and key[2] != ns):
                    continue
                obj = self.s.objects[key]
                if selected(obj, label_reqs, field_reqs):
                    items.append(self._out(obj, rtype))
            list_rv = self.s.rv
        meta = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            token = base64.urlsafe_b64encode(json.dumps({"rv": list_rv, "id": uuid.uuid4().hex}).encode()).decode()
            self.s.continues[token] = (list_rv, items[limit:])
            while len(self.s.continues) > 256:
                self.s.continues.pop(next(iter(self.s.continues)))
            meta["continue"] = token
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": rtype.list_kind, "apiVersion": rtype.api_version, "metadata": meta,
                "items": [view(i, rtype, False) for i in items]}

    # -- validation shared by writes

    def _check_body(self, rtype, ns, body, url_name=None):
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        api_version = body.get("apiVersion")
        if api_version and api_version != rtype.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({rtype.api_version})")
        kind = body.get("kind")
        if kind and kind != rtype.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})")
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        body_ns = meta.get("namespace")
        if rtype.namespaced:
            if body_ns and body_ns != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent "
                                  "on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if url_name is not None and meta.get("name") and meta["name"] != url_name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                              f"({url_name})")

    def _validate(self, rtype, obj):
        name = obj["metadata"].get("name", "")
        if not NAME_RE.match(name) or len(name) > 253:
            raise rtype.invalid(name, "metadata.name",
                                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                                "lower case alphanumeric characters, '-' or '.', and must start and end with "
                                "an alphanumeric character")
        for field in ("labels", "annotations"):
            value = obj["metadata"].get(field)
            if value is not None and (not isinstance(value, dict) or
                                      not all(isinstance(v, str) for v in value.values())):
                raise rtype.invalid(name, f"metadata.{field}", "Invalid value: must be a map of strings")
        finalizers = obj["metadata"].get("finalizers")
        if finalizers is not None and (not isinstance(finalizers, list) or
                                       not all(isinstance(f, str) for f in finalizers)):
            raise rtype.invalid(name, "metadata.finalizers", "Invalid value: must be a list of strings")
        if rtype.custom and rtype.schema:
            errors: list = []
            pruned = apply_schema({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")},
                                  rtype.schema, "", errors)
            if errors:
                path, why = errors[0]
                raise rtype.invalid(name, path.lstrip("."), why)
            for k in [k for k in obj if k not in ("apiVersion", "kind", "metadata")]:
                obj.pop(k)
            obj.update(pruned)
        if rtype.plural == "customresourcedefinitions" and rtype.group == CRD_GROUP:
            self._validate_crd(rtype, obj)

    def _validate_crd(self, rtype, crd):
        name = crd["metadata"]["name"]
        spec = crd.get("spec")
        if not isinstance(spec, dict):
            raise rtype.invalid(name, "spec", "Required value")
        names = spec.get("names") or {}
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        if not group or not plural or not kind:
            raise rtype.invalid(name, "spec", "Required value: spec.group, spec.names.plural and "
                                "spec.names.kind must be set")
        if name != f"{plural}.{group}":
            raise rtype.invalid(name, "metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."'
                                f'+spec.group ("{plural}.{group}")')
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            raise rtype.invalid(name, "spec.scope", f'Unsupported value: "{spec.get("scope")}": supported values: '
                                '"Cluster", "Namespaced"')
        versions = spec.get("versions") or []
        if not versions or sum(1 for v in versions if v.get("storage")) != 1:
            raise rtype.invalid(name, "spec.versions", "Invalid value: must have exactly one version marked "
                                "as storage version")
        names.setdefault("singular", kind.lower())
        names.setdefault("listKind", kind + "List")

    # -- writes

    def create(self, rtype, ns, body, query, manager, dry_run=False, from_apply=False):
        self._check_body(rtype, ns, body)
        meta = body["metadata"]
        if rtype.namespaced:
            ns_obj = self._namespace_exists(ns)
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f'{rtype.qualified} "{meta.get("name", "")}" is forbidden: '
                               f"unable to create new content in namespace {ns} because it is being terminated",
                               rtype.details(meta.get("name", "")))
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise rtype.invalid("", "metadata.name", "Required value: name or generateName is required")
        name = meta["name"]
        key = self._key(rtype, ns, name)
        if key in self.s.objects:
            raise ApiError(409, "AlreadyExists", f'{rtype.qualified} "{name}" already exists', rtype.details(name))
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "managedFields", "generation", "selfLink"):
            obj["metadata"].pop(field, None)
        if rtype.status_sub:
            obj.pop("status", None)
        if rtype.generation or rtype.custom:
            obj["metadata"]["generation"] = 1
        if rtype.plural == "namespaces" and rtype.group == "":
            obj["status"] = {"phase": "Active"}
        is_crd = rtype.group == CRD_GROUP and rtype.plural == "customresourcedefinitions"
        if is_crd:
            obj["status"] = {"conditions": [], "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []}
        self._validate(rtype, obj)
        self.s._new_meta(obj)
        if dry_run:
            obj["metadata"]["resourceVersion"] = ""
            return 201, view(obj, rtype, False)
        if from_apply:
            out = self.s._commit(rtype, key, obj, "ADDED", None)
        else:
            self._record_update(key, rtype, None, obj, manager, "")
            out = self.s._commit(rtype, key, obj, "ADDED", None)
        if is_crd:
            self._schedule_establish(name, obj["metadata"]["uid"])
        return 201, self._out(out, rtype)

    def _finish_update(self, rtype, key, old, new, manager, sub, dry_run, operation="Update", applied=None):
        """Applies the rules every update shares and stores the result."""
        name = old["metadata"]["name"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "generateName"):
            if field in old["metadata"]:
                if field in ("name", "namespace", "uid") and new["metadata"].get(field, old["metadata"][field]) \
                        != old["metadata"][field]:
                    raise rtype.invalid(name, f"metadata.{field}", "Invalid value: field is immutable")
                new["metadata"][field] = old["metadata"][field]
            else:
                new["metadata"].pop(field, None)
        new["metadata"].pop("managedFields", None)
        new["metadata"].pop("selfLink", None)
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        if sub == "status":
            # Only .status changes through /status.
            status = new.get("status", MISSING)
            new = copy.deepcopy(old)
            if status is MISSING:
                new.pop("status", None)
            else:
                new["status"] = status
        elif rtype.status_sub:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if old["metadata"].get("deletionTimestamp"):
            before = set(old["metadata"].get("finalizers") or [])
            added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
            if added:
                raise ApiError(422, "Invalid", f'{rtype.kind} "{name}" is invalid: metadata.finalizers: '
                               f"Forbidden: no new finalizers can be added if the object is being deleted, "
                               f"found new finalizers {json.dumps(added)}", rtype.details(name))
        self._validate(rtype, new)
        if "generation" in old["metadata"]:
            skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.status_sub else set())
            if {k: v for k, v in old.items() if k not in skip} != {k: v for k, v in new.items() if k not in skip}:
                new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        comparable_old = {k: v for k, v in old.items()}
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == comparable_old:
            # A no-op write stores nothing and keeps the resourceVersion.
            return 200, self._out(old, rtype)
        if dry_run:
            return 200, view(new, rtype, False)
        if operation == "Update":
            self._record_update(key, rtype, old, new, manager, sub)
        finalizers = new["metadata"].get("finalizers")
        if new["metadata"].get("deletionTimestamp") and not finalizers:
            self._remove(rtype, key, new)
            return 200, view(new, rtype, False)
        out = self.s._commit(rtype, key, new, "MODIFIED", old)
        if rtype.group == CRD_GROUP and rtype.plural == "customresourcedefinitions" and sub != "status":
            self._register_crd(out)
        return 200, self._out(out, rtype)

    def replace(self, rtype, ns, name, body, manager, sub="", dry_run=False):
        self._check_body(rtype, ns, body, name)
        key = self._key(rtype, ns, name)
        old = self.s.objects.get(key)
        if old is None:
            raise rtype.not_found(name)
        new = copy.deepcopy(body)
        new["metadata"].setdefault("name", name)
        rv = new["metadata"].get("resourceVersion")
        if rv:
            if rv != old["metadata"]["resourceVersion"]:
                raise rtype.conflict(name, "the object has been modified; please apply your changes to the "
                                     "latest version and try again")
        elif rtype.custom:
            raise rtype.invalid(name, "metadata.resourceVersion",
                                "Invalid value: 0x0: must be specified for an update")
        return self._finish_update(rtype, key, old, new, manager, sub, dry_run)

    def patch(self, rtype, ns, name, content_type, raw, query, manager, sub="", dry_run=False):
        key = self._key(rtype, ns, name)
        try:
            patch = json.loads(raw or b"null")
        except ValueError:
            if content_type == APPLY_PATCH:
                raise ApiError(415, "UnsupportedMediaType", "this emulator accepts apply patches as JSON only "
                               "(kube-rs sends JSON); YAML bodies are not parsed") from None
            raise bad_request("the patch body is not valid JSON") from None
        if content_type == APPLY_PATCH:
            return self.apply(rtype, ns, name, patch, query, sub, dry_run)
        old = self.s.objects.get(key)
        if old is None:
            raise rtype.not_found(name)
        # Patches apply to the object as served at the requested version.
        old = view(old, rtype, False)
        if content_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            new = merge_patch(old, patch)
        elif content_type == JSON_PATCH:
            new = json_patch(old, patch)
            if not isinstance(new, dict):
                raise bad_request("the JSON patch did not leave an object")
        elif content_type == STRATEGIC_PATCH:
            if rtype.custom:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - accepted media types "
                               f"include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
            if not isinstance(patch, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            new = strategic_patch(old, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types include: "
                           f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}, {STRATEGIC_PATCH}")
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise rtype.conflict(name, "the object has been modified; please apply your changes to the latest "
                                 "version and try again")
        self._check_body(rtype, ns, new, name)
        return self._finish_update(rtype, key, old, new, manager, sub, dry_run)

    def apply(self, rtype, ns, name, config, query, sub, dry_run):
        """Server-side apply: the applier owns exactly the fields of its
        configuration; changing a field another manager owns is a 409
        conflict unless force=true; fields it stops applying are removed
        unless someone else owns them."""
        manager = query.get("fieldManager")
        if not manager:
            raise bad_request("PATCH with application/apply-patch+yaml requires the fieldManager "
                              "query parameter (metadata.managedFields tracking needs an owner)")
        force = query.get("force", "") in ("true", "1")
        if not isinstance(config, dict):
            raise bad_request("an apply configuration must be an object")
        if not config.get("apiVersion") or not config.get("kind"):
            raise bad_request("an apply configuration must set apiVersion and kind")
        self._check_body(rtype, ns, config, name)
        config["metadata"].setdefault("name", name)
        key = self._key(rtype, ns, name)
        old = self.s.objects.get(key)
        status_part = sub == "status"
        applied = managed_paths(config, rtype, status_part)
        mine = (manager, "Apply", sub)
        if old is None:
            if sub:
                raise rtype.not_found(name)
            code, out = self.create(rtype, ns, copy.deepcopy(config), query, manager, dry_run, from_apply=True)
            if not dry_run:
                stored = self.s.objects[key]
                self.s.managed.setdefault(key, {})[mine] = managed_paths(stored, rtype, False) & applied
                self.s.managed_meta[(key, mine)] = (rtype.api_version, now_iso())
                out = self._out(stored, rtype)
            return code, out
        entries = self.s.managed.get(key, {})
        conflicts = []
        for other, paths in entries.items():
            if other == mine:
                continue
            for p in sorted(paths & applied):
                live = get_path(old, p)
                if live is not MISSING and live != get_path(config, p):
                    conflicts.append((other, p))
        if conflicts and not force:
            causes = [{"type": "FieldManagerConflict",
                       "message": f'conflict with "{o[0]}"' + (" using " + rtype.api_version
                                                               if o[1] == "Update" else ""),
                       "field": path_text(p)} for o, p in conflicts]
            lines = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
            raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                           f"{'s' if len(conflicts) != 1 else ''}: {lines}",
                           dict(rtype.details(name), causes=causes))
        new = copy.deepcopy(old)
        for p in applied:
            set_path(new, p, get_path(config, p))
        previously = entries.get(mine, set())
        for p in previously - applied:
            if not any(p in paths for k, paths in entries.items() if k != mine):
                del_path(new, p)
        result = self._finish_update(rtype, key, old, new, manager, sub, dry_run, operation="Apply")
        if not dry_run:
            entries = self.s.managed.setdefault(key, {})
            if force:
                for other in list(entries):
                    if other != mine:
                        entries[other] -= {p for o, p in conflicts if o == other}
            # Fields whose value changed now belong to the applier alone.
            stored = self.s.objects.get(key)
            if stored is not None:
                changed = {p for p in applied if get_path(old, p) != get_path(stored, p)}
                for other in list(entries):
                    if other != mine:
                        entries[other] -= changed
                entries[mine] = applied & managed_paths(stored, rtype, status_part)
                self.s.managed_meta[(key, mine)] = (rtype.api_version, now_iso())
                self._prune_entries(key)
                result = (result[0], self._out(stored, rtype))
        return result

    def delete(self, rtype, ns, name, body, dry_run=False):
        key = self._key(rtype, ns, name)
        obj = self.s.objects.get(key)
        if obj is None:
            raise rtype.not_found(name)
        pre = (body or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise rtype.conflict(name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                 f"UID in object meta: {obj['metadata']['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise rtype.conflict(name, f"Precondition failed: ResourceVersion in precondition: "
                                 f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                 f"{obj['metadata']['resourceVersion']}")
        if dry_run:
            return 200, self._out(obj, rtype)
        return self._delete(rtype, key, obj)

    def _delete(self, rtype, key, obj):
        name = obj["metadata"]["name"]
        is_ns = rtype.group == "" and rtype.plural == "namespaces"
        is_crd = rtype.group == CRD_GROUP and rtype.plural == "customresourcedefinitions"
        if obj["metadata"].get("finalizers") or is_ns or is_crd:
            if obj["metadata"].get("deletionTimestamp"):
                return 200, self._out(obj, rtype)
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if "generation" in new["metadata"]:
                new["metadata"]["generation"] += 1
            if is_ns:
                new["status"] = {"phase": "Terminating"}
            if is_crd:
                conds = [c for c in new.get("status", {}).get("conditions", []) if c.get("type") != "Terminating"]
                conds.append({"type": "Terminating", "status": "True", "lastTransitionTime": now_iso(),
                              "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in "
                              "progress"})
                new.setdefault("status", {})["conditions"] = conds
            out = self.s._commit(rtype, key, new, "MODIFIED", obj)
            if is_ns:
                self._drain(lambda k: k[2] == name and k[:2] != ("", "namespaces"))
            if is_crd:
                storage = (new["spec"]["group"], new["spec"]["names"]["plural"])
                self._drain(lambda k: k[:2] == storage)
            self._maybe_finish_container(key)
            current = self.s.objects.get(key)
            if current is None:
                return 200, self._success(rtype, obj)
            return 200, self._out(current, rtype)
        self._remove(rtype, key, obj)
        return 200, self._success(rtype, obj)

    def _success(self, rtype, obj):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": rtype.details(obj["metadata"]["name"], obj["metadata"].get("uid"))}

    def _drain(self, match):
        for key in sorted(k for k in self.s.objects if match(k)):
            obj = self.s.objects.get(key)
            rtype = self.s.type_for_storage(key[:2])
            if obj is not None and rtype is not None and not obj["metadata"].get("deletionTimestamp"):
                self._delete(rtype, key, obj)

    def _remove(self, rtype, key, obj):
        self.s._commit(rtype, key, None, "DELETED", obj)
        if rtype.group == CRD_GROUP and rtype.plural == "customresourcedefinitions":
            self._unregister_crd(obj)
        # A namespace or CRD being deleted goes once it holds nothing.
        if key[2]:
            self._maybe_finish_container(("", "namespaces", "", key[2]))
        crd_key = (CRD_GROUP, "customresourcedefinitions", "", f"{key[1]}.{key[0]}")
        if key[0] and crd_key in self.s.objects:
            self._maybe_finish_container(crd_key)

    def _maybe_finish_container(self, key):
        obj = self.s.objects.get(key)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        if key[:2] == ("", "namespaces"):
            if any(k[2] == key[3] for k in self.s.objects if k[:2] != ("", "namespaces")):
                return
            if obj["metadata"].get("finalizers"):
                return
            self._remove(self.s.types[("", "v1", "namespaces")], key, obj)
        elif key[:2] == (CRD_GROUP, "customresourcedefinitions"):
            storage = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
            if any(k[:2] == storage for k in self.s.objects) or obj["metadata"].get("finalizers"):
                return
            self._remove(self.s.types[(CRD_GROUP, "v1", "customresourcedefinitions")], key, obj)

    # -- CRDs

    def _schedule_establish(self, name, uid):
        def establish():
            with self.s.lock:
                key = (CRD_GROUP, "customresourcedefinitions", "", name)
                crd = self.s.objects.get(key)
                if crd is None or crd["metadata"]["uid"] != uid:
                    return
                new = copy.deepcopy(crd)
                spec = new["spec"]
                names = dict(spec["names"])
                clash = [o for k, o in self.s.objects.items()
                         if k[:2] == (CRD_GROUP, "customresourcedefinitions") and k != key
                         and o["spec"]["group"] == spec["group"]
                         and o["spec"]["names"].get("kind") == names.get("kind")]
                stamp = now_iso()
                if clash:
                    conds = [{"type": "NamesAccepted", "status": "False", "lastTransitionTime": stamp,
                              "reason": "KindConflict", "message": f'"{names.get("kind")}" is already in use'},
                             {"type": "Established", "status": "False", "lastTransitionTime": stamp,
                              "reason": "NotAccepted", "message": "not all names are accepted"}]
                else:
                    conds = [{"type": "NamesAccepted", "status": "True", "lastTransitionTime": stamp,
                              "reason": "NoConflicts", "message": "no conflicts found"},
                             {"type": "Established", "status": "True", "lastTransitionTime": stamp,
                              "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]
                    new["status"]["acceptedNames"] = names
                new["status"]["conditions"] = conds
                new["status"]["storedVersions"] = [v["name"] for v in spec["versions"] if v.get("storage")]
                self.s._commit(self.s.types[(CRD_GROUP, "v1", "customresourcedefinitions")], key, new,
                               "MODIFIED", crd)
                if not clash:
                    self._register_crd(new)

        timer = threading.Timer(self.s.establish_delay, establish)
        timer.daemon = True
        timer.start()

    def _register_crd(self, crd):
        if not any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in crd.get("status", {}).get("conditions", [])):
            return
        spec = crd["spec"]
        self._unregister_crd(crd)
        names = spec["names"]
        for v in spec["versions"]:
            if not v.get("served"):
                continue
            schema = ((v.get("schema") or {}).get("openAPIV3Schema"))
            self.s.types[(spec["group"], v["name"], names["plural"])] = ResourceType(
                spec["group"], v["name"], names["plural"], names["kind"], spec["scope"] == "Namespaced",
                singular=names.get("singular"), list_kind=names.get("listKind"),
                status_sub="status" in ((v.get("subresources") or {})), custom=True,
                crd_name=crd["metadata"]["name"], schema=schema, short_names=names.get("shortNames"),
                generation=True)

    def _unregister_crd(self, crd):
        for k in [k for k, t in self.s.types.items() if t.crd_name == crd["metadata"]["name"]]:
            self.s.types.pop(k)


# ---------------------------------------------------------------- discovery

def discovery_resources(store, group, version):
    resources = []
    for t in sorted(store.types.values(), key=lambda t: t.plural):
        if (t.group, t.version) != (group, version):
            continue
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        entry = {"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                 "verbs": verbs}
        if t.short_names:
            entry["shortNames"] = t.short_names
        resources.append(entry)
        if t.status_sub:
            resources.append({"name": f"{t.plural}/status", "singularName": "", "namespaced": t.namespaced,
                              "kind": t.kind, "verbs": ["get", "patch", "update"]})
    return resources


def discovery_groups(store):
    groups: dict[str, list[str]] = {}
    for t in store.types.values():
        if t.group:
            versions = groups.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
    out = []
    for g in sorted(groups):
        versions = [{"groupVersion": f"{g}/{v}", "version": v} for v in groups[g]]
        out.append({"name": g, "versions": versions, "preferredVersion": versions[0]})
    return out


# ---------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "deployctl-kubeapi/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("kubeapi: " + (fmt % args) + "\n")

    # -- plumbing

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: ApiError) -> None:
        self._send(err.code, err.status())

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        try:
            if url.path.startswith("/_emulator/"):
                return self._control(method, url.path, query)
            return self._api(method, url.path, query, raw)
        except ApiError as err:
            return self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # noqa: BLE001 - a bug here must answer, not hang the client
            import traceback
            traceback.print_exc()
            return self._error(ApiError(500, "InternalError", f"kubeapi emulator bug: {exc!r}"))

    # -- control endpoints

    def _control(self, method, path, query):
        store = STORE
        if path == "/_emulator/health":
            return self._send(200, {"ok": True, "resourceVersion": store.rv})
        if path == "/_emulator/reset" and method == "POST":
            store.reset()
            return self._send(200, {"reset": True})
        if path == "/_emulator/compact" and method == "POST":
            ns = query.get("namespace")
            with store.lock:
                if ns:
                    store.ns_floor[ns] = store.rv
                else:
                    store.floor = store.rv
                    store.history.clear()
                    store.history_rvs.clear()
                closed = 0
                for w in store.watches:
                    if ns is None or w.namespace == ns:
                        w.closed = True
                        closed += 1
                store.cond.notify_all()
                return self._send(200, {"compactedTo": store.rv, "namespace": ns, "watchesClosed": closed})
        if path == "/_emulator/state" and method == "GET":
            ns = query.get("namespace")
            with store.lock:
                objects = [o for k, o in sorted(store.objects.items()) if ns is None or k[2] == ns]
                return self._send(200, {
                    "resourceVersion": store.rv, "compactedTo": store.floor, "namespaceFloors": store.ns_floor,
                    "historyLength": len(store.history), "openWatches": len(store.watches),
                    "served": sorted(f"{t.api_version}/{t.plural}" for t in store.types.values()),
                    "objects": objects})
        raise ApiError(404, "NotFound", f"no control endpoint {method} {path}; see tests/emulators/README.md")

    # -- Kubernetes API

    def _api(self, method, path, query, raw):
        store = STORE
        segs = [s for s in path.split("/") if s]
        if method == "GET" and path in ("/version", "/version/"):
            return self._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-deployctl-kubeapi",
                                    "gitCommit": "0" * 40, "gitTreeState": "clean",
                                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                                    "compiler": "gc", "platform": "linux/amd64"})
        if method == "GET" and segs == ["api"]:
            host = self.headers.get("Host", "127.0.0.1")
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        with store.lock:
            if method == "GET" and segs == ["apis"]:
                return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                        "groups": discovery_groups(store)})
            if segs[:1] == ["api"] and len(segs) >= 2:
                group, version, rest = "", segs[1], segs[2:]
            elif segs[:1] == ["apis"] and len(segs) >= 3:
                group, version, rest = segs[1], segs[2], segs[3:]
            elif segs[:1] == ["apis"] and len(segs) == 2 and method == "GET":
                groups = [g for g in discovery_groups(store) if g["name"] == segs[1]]
                if not groups:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return self._send(200, dict(groups[0], kind="APIGroup", apiVersion="v1"))
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if not rest:
                resources = discovery_resources(store, group, version)
                if not resources:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a discovery document")
                return self._send(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": f"{group}/{version}" if group else version,
                                        "resources": resources})
            ns = None
            if rest[0] == "namespaces" and len(rest) >= 3 and store.served(group, version, rest[2]) \
                    and store.served(group, version, rest[2]).namespaced:
                ns, rest = rest[1], rest[2:]
            plural = rest[0]
            name = rest[1] if len(rest) > 1 else None
            sub = rest[2] if len(rest) > 2 else ""
            rtype = store.served(group, version, plural)
            if rtype is None or len(rest) > 3:
                raise ApiError(404, "NotFound", "the server could not find the requested resource",
                               {"group": group, "kind": plural})
            if sub and not (sub == "status" and rtype.status_sub):
                raise ApiError(404, "NotFound", "the server could not find the requested resource",
                               {"group": group, "kind": f"{plural}/{sub}"})
            if rtype.namespaced and name is not None and ns is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource "
                               f"({rtype.qualified} is namespaced: use /namespaces/NS/{plural}/{name})")
            if rtype.namespaced and ns is None and method not in ("GET", "DELETE"):
                raise ApiError(404, "NotFound", "the server could not find the requested resource "
                               f"({rtype.qualified} is namespaced: use /namespaces/NS/{plural})")
            if not rtype.namespaced and ns is not None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            partial = "as=PartialObjectMetadata" in self.headers.get("Accept", "")
            dry_run = query.get("dryRun") == "All"
            manager = query.get("fieldManager") or (self.headers.get("User-Agent") or "unknown").split("/")[0]
            api = Api(store)
            if method == "GET" and name is None:
                if query.get("watch") in ("true", "1"):
                    watch = self._start_watch(rtype, ns, query)
                else:
                    result = api.list(rtype, ns, query)
                    if partial:
                        result = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                                  "metadata": result["metadata"],
                                  "items": [view(i, rtype, True) for i in result["items"]]}
                    return self._send(200, result)
            elif method == "GET":
                return self._send(200, view(api.get(rtype, ns, name), rtype, partial))
            elif method == "POST" and name is None:
                body = self._json(raw)
                code, out = api.create(rtype, ns, body, query, manager, dry_run)
                return self._send(code, out)
            elif method == "PUT" and name is not None:
                code, out = api.replace(rtype, ns, name, self._json(raw), manager, sub, dry_run)
                return self._send(code, out)
            elif method == "PATCH" and name is not None:
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                code, out = api.patch(rtype, ns, name, content_type, raw, query, manager, sub, dry_run)
                return self._send(code, view(out, rtype, partial) if "metadata" in out else out)
            elif method == "DELETE" and name is not None and not sub:
                body = self._json(raw) if raw.strip() else {}
                dry_run = dry_run or (isinstance(body, dict) and "All" in (body.get("dryRun") or []))
                code, out = api.delete(rtype, ns, name, body, dry_run)
                return self._send(code, out)
            elif method == "DELETE" and name is None:
                body = self._json(raw) if raw.strip() else {}
                listed = api.list(rtype, ns, {k: v for k, v in query.items()
                                              if k in ("labelSelector", "fieldSelector")})
                for item in listed["items"]:
                    meta = item["metadata"]
                    api.delete(rtype, meta.get("namespace"), meta["name"], body, dry_run)
                return self._send(200, listed)
            else:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
        # The watch streams outside the lock.
        return self._stream_watch(watch)

    def _json(self, raw):
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise bad_request("the request body is not valid JSON (this server speaks JSON only)") from None

    # -- watch

    def _start_watch(self, rtype, ns, query):
        store = STORE
        label_reqs = parse_label_selector(query.get("labelSelector", ""))
        field_reqs = parse_field_selector(query.get("fieldSelector", ""))
        try:
            timeout = float(query.get("timeoutSeconds") or 1800)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number") from None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        send_initial = query.get("sendInitialEvents")
        rv_param = query.get("resourceVersion", "")
        initial = []
        gone = None
        if send_initial == "true" or rv_param in ("", "0"):
            if send_initial == "true" and (query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
                raise ApiError(422, "Invalid", "sendInitialEvents requires resourceVersionMatch=NotOlderThan "
                               "and allowWatchBookmarks=true")
            for key in sorted(store.objects):
                if key[:2] == rtype.storage and (ns is None or key[2] == ns):
                    obj = store.objects[key]
                    if selected(obj, label_reqs, field_reqs):
                        initial.append({"type": "ADDED", "object": view(obj, rtype, False)})
            cursor = store.rv
            if send_initial == "true":
                initial.append({"type": "BOOKMARK", "object": {
                    "kind": rtype.kind, "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(cursor),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}})
        else:
            try:
                cursor = int(rv_param)
            except ValueError:
                raise bad_request(f"invalid resource version {rv_param!r}") from None
            floor = max(store.floor, store.ns_floor.get(ns, 0) if ns else 0)
            if cursor < floor:
                gone = {"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {cursor} ({floor})").status()}
        watch = Watch(rtype.storage, ns)
        watch.rtype, watch.cursor, watch.initial, watch.gone = rtype, cursor, initial, gone
        watch.labels, watch.fields, watch.bookmarks = label_reqs, field_reqs, bookmarks
        watch.deadline = time.monotonic() + timeout
        if gone is None:
            store.watches.append(watch)
        return watch

    def _chunk(self, event: dict) -> None:
        data = (json.dumps(event) + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream_watch(self, watch):
        store = STORE
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            if watch.gone:
                self._chunk(watch.gone)
            else:
                self._watch_loop(watch)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        finally:
            with store.lock:
                if watch in store.watches:
                    store.watches.remove(watch)
        try:
            # The terminating chunk: the watch ends cleanly.
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the client closed its end (readable with no data)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _watch_loop(self, watch):
        """Sends the initial events, then history events from the watch's
        cursor on, until the timeout, a close or a 410."""
        store = STORE
        for event in watch.initial:
            self._chunk(event)
        next_bookmark = time.monotonic() + SETTINGS["bookmark_interval"]
        while True:
            events, expired, bookmark = [], None, None
            with store.cond:
                while True:
                    now = time.monotonic()
                    if watch.closed or now >= watch.deadline:
                        break
                    i = bisect.bisect_right(store.history_rvs, watch.cursor)
                    if i < len(store.history_rvs):
                        break
                    if watch.bookmarks and now >= next_bookmark:
                        bookmark = store.rv
                        break
                    if self._client_gone():
                        watch.closed = True
                        break
                    # Wake at least every second to notice a client that left.
                    store.cond.wait(timeout=min(1.0, min(watch.deadline, next_bookmark if watch.bookmarks
                                                         else watch.deadline) - now + 0.01))
                if watch.closed or time.monotonic() >= watch.deadline:
                    break
                floor = max(store.floor, store.ns_floor.get(watch.namespace, 0) if watch.namespace else 0)
                if watch.cursor < floor:
                    expired = floor
                else:
                    i = bisect.bisect_right(store.history_rvs, watch.cursor)
                    for rv, storage, ns, kind, obj, old in store.history[i:]:
                        watch.cursor = rv
                        if storage != watch.storage or (watch.namespace and ns != watch.namespace):
                            continue
                        event = self._filter(watch, kind, obj, old)
                        if event:
                            events.append(event)
                    if bookmark is not None:
                        watch.cursor = max(watch.cursor, bookmark)
                        bookmark = watch.cursor
            for event in events:
                self._chunk(event)
            if expired is not None:
                self._chunk({"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {watch.cursor} ({expired})").status()})
                break
            if bookmark is not None:
                next_bookmark = time.monotonic() + SETTINGS["bookmark_interval"]
                self._chunk({"type": "BOOKMARK", "object": {
                    "kind": watch.rtype.kind, "apiVersion": watch.rtype.api_version,
                    "metadata": {"resourceVersion": str(bookmark)}}})

    def _filter(self, watch, kind, obj, old):
        """A label or field selector turns a MODIFIED event into ADDED or
        DELETED when the object moves into or out of it, as Kubernetes does."""
        rtype = watch.rtype
        now_in = selected(obj, watch.labels, watch.fields)
        if kind == "MODIFIED" and old is not None:
            was_in = selected(old, watch.labels, watch.fields)
            if was_in and not now_in:
                return {"type": "DELETED", "object": view(obj, rtype, False)}
            if not was_in and now_in:
                return {"type": "ADDED", "object": view(obj, rtype, False)}
            if not now_in:
                return None
        elif not now_in:
            return None
        return {"type": kind, "object": view(obj, rtype, False)}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    verbose = False


def main() -> None:
    global STORE
    parser = argparse.ArgumentParser(description="deployctl's test Kubernetes API server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--history", type=int, default=10000,
                        help="watch events kept; a watch from before them gets 410 Expired")
    parser.add_argument("--crd-establish-delay", type=float, default=0.2,
                        help="seconds between creating a CRD and it becoming Established")
    parser.add_argument("--bookmark-interval", type=float, default=60.0,
                        help="seconds between BOOKMARK events on watches that allow them")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()
    STORE = Store(args.history, args.crd_establish_delay)
    SETTINGS["bookmark_interval"] = args.bookmark_interval
    server = Server(("127.0.0.1", args.port), Handler)
    server.verbose = args.verbose
    print(f"kubeapi: listening on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
