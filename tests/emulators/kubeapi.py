#!/usr/bin/env python3
"""A test Kubernetes API server for deployctl's tests (Python 3.11, stdlib only).

No real kube-apiserver can be installed on the machines the tests run on, so
this server speaks the Kubernetes REST API over plain HTTP (no TLS)
for what deployctl's Kubernetes code uses through kube-rs: discovery,
CustomResourceDefinitions and the custom resources they register, Leases,
Namespaces, ConfigMaps, Secrets and Events, the workload and networking
kinds (Deployments, ReplicaSets, Pods, Services, EndpointSlices,
Gateways, HTTPRoutes) together with the controllers that make them move,
and RBAC (Roles, ClusterRoles and their bindings), with the semantics the
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
  defaults from the openAPIV3Schema;
- server-side apply and strategic merge patch merge the associative
  lists of the built-in kinds by their keys (containers by name, ports,
  env, ownerReferences by uid...);
- built-in kinds are defaulted and validated as the real API server does;
  a controller thread plays kube-controller-manager (deployments,
  replicasets, garbage collector, endpointslices), the scheduler and a
  kubelet for one node, and a Gateway API controller; a traffic model
  answers which pods a request through a route or Service would reach;
- authentication and authorization: a request without an Authorization
  header is the old insecure port's (user system:admin, group
  system:masters) unless --require-auth; a bearer token is a static or
  ServiceAccount token registered through /_emulator/tokens or issued by
  the TokenRequest API (serviceaccounts/NAME/token), or an EKS
  token (a presigned STS GetCallerIdentity URL whose SigV4 signature is
  recomputed, as aws-iam-authenticator has STS do); bearer requests are
  authorized by the stored RBAC objects (401/403 in Kubernetes' words).

What it approximates is listed in tests/emulators/README.md (kubeapi
section). Control endpoints live under /_emulator/.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import datetime
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import select
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

CRD_GROUP = "apiextensions.k8s.io"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_CONTROLLER = "deployctl.test/gateway-controller"
RBAC_GROUP = "rbac.authorization.k8s.io"
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


def clone(value):
    """A deep copy of JSON data (objects hold nothing else), faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class ResourceType:
    """One served (group, version, resource)."""

    def __init__(self, group, version, plural, kind, namespaced, *, singular=None, list_kind=None,
                 status_sub=False, custom=False, crd_name=None, schema=None, short_names=None,
                 generation=False, scale_sub=False, log_sub=False, token_sub=False):
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
        # Whether metadata.generation is maintained (CRs, CRDs and the
        # workload kinds whose controllers report observedGeneration).
        self.generation = generation
        # autoscaling/v1 Scale at .../scale (Deployments, ReplicaSets).
        self.scale_sub = scale_sub
        # Plain-text container logs at .../log (Pods).
        self.log_sub = log_sub
        # TokenRequest at .../token (ServiceAccounts).
        self.token_sub = token_sub

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
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"], token_sub=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, short_names=["ev"]),
    ResourceType(CRD_GROUP, "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                 status_sub=True, short_names=["crd", "crds"], generation=True),
    # Workloads and networking, run by the controllers further down.
    ResourceType("apps", "v1", "deployments", "Deployment", True, status_sub=True, generation=True,
                 scale_sub=True, short_names=["deploy"]),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, status_sub=True, generation=True,
                 scale_sub=True, short_names=["rs"]),
    ResourceType("", "v1", "pods", "Pod", True, status_sub=True, log_sub=True, short_names=["po"]),
    ResourceType("", "v1", "services", "Service", True, status_sub=True, short_names=["svc"]),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    # Gateway API kinds are custom resources in a real cluster (installed
    # by CRDs): custom=True gives them CR semantics (no strategic merge
    # patch, PUT needs a resourceVersion, generation from 1).
    ResourceType(GATEWAY_GROUP, "v1", "gateways", "Gateway", True, status_sub=True, generation=True,
                 custom=True, short_names=["gtw"]),
    ResourceType(GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute", True, status_sub=True, generation=True,
                 custom=True),
    ResourceType(GATEWAY_GROUP, "v1", "gatewayclasses", "GatewayClass", False, status_sub=True,
                 generation=True, custom=True, short_names=["gc"]),
    # RBAC: stored like any kind; the authorizer (the RBAC section) reads
    # them for every request that carries a bearer token.
    ResourceType(RBAC_GROUP, "v1", "roles", "Role", True),
    ResourceType(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", True),
    ResourceType(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", False),
    ResourceType(RBAC_GROUP, "v1", "clusterrolebindings", "ClusterRoleBinding", False),
]


BUILTIN_STORAGES = {t.storage for t in BUILTINS}


# ---------------------------------------------------------------- JSON helpers

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_patch(target, patch, path=(), rtype=None):
    """Strategic merge patch: maps merge like a merge patch, `$patch:
    replace|delete` on maps, metadata.finalizers merges as a set and
    `$deleteFromPrimitiveList/finalizers` removes entries. Lists with a
    patch merge key (the associative lists of LIST_KEYS: containers by
    name, ports, env, ownerReferences...) merge entry by entry, with
    `$patch: delete` in an entry and `{"$patch": "replace"}` in the list;
    other lists are replaced."""
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return MISSING
    if directive == "replace":
        return {k: v for k, v in clone(patch).items() if k != "$patch"}
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch" or key.startswith("$setElementOrder/") or key.startswith("$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [x for x in result[field] if x not in value]
            continue
        spec = list_key_spec(rtype, path + (key,)) if rtype is not None else None
        if value is None:
            result.pop(key, None)
        elif path == ("metadata",) and key == "finalizers" and isinstance(value, list):
            current = result.get(key) if isinstance(result.get(key), list) else []
            result[key] = current + [x for x in value if x not in current]
        elif spec and isinstance(value, list):
            result[key] = _strategic_list(result.get(key), value, spec, path + (key,), rtype)
        else:
            merged = strategic_patch(result.get(key), value, path + (key,), rtype)
            if merged is MISSING:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _strategic_list(current, patch_list, spec, path, rtype):
    """Merges a list by its patch merge key (the first key field)."""
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch_list):
        return [clone(x) for x in patch_list if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    merge_key, default = spec[0]
    if not all(isinstance(x, dict) and merge_key in x for x in patch_list):
        return clone(patch_list)
    result = clone(current) if isinstance(current, list) else []
    for item in patch_list:
        at = next((i for i, x in enumerate(result) if isinstance(x, dict)
                   and x.get(merge_key, default) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                result.pop(at)
            continue
        merged = strategic_patch(result[at] if at is not None else {}, item, path + ("*",), rtype)
        if at is not None:
            result[at] = merged
        else:
            result.append(merged)
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
    doc = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch: malformed operation {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add_pointer(doc, parts, clone(op.get("value")), kind)
        elif kind == "remove":
            _remove_pointer(doc, parts, kind)
        elif kind == "replace":
            doc = _add_pointer(doc, parts, clone(op.get("value")), kind, replace=True)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove_pointer(doc, source, kind) if kind == "move" else clone(
                _get_pointer(doc, source, kind))
            doc = _add_pointer(doc, parts, value, kind)
        elif kind == "test":
            if _get_pointer(doc, parts, kind) != op.get("value"):
                raise ApiError(422, "Invalid", f"json patch test operation failed at {op['path']}")
        else:
            raise bad_request(f"json patch: unknown operation {kind!r}")
    return doc


# ---------------------------------------------------------------- associative lists
#
# Server-side apply merges the lists Kubernetes declares `listType: map`
# entry by entry, keyed by their key fields; every other list is atomic
# (owned and replaced whole). A field path is a tuple of map keys and K
# elements, a K naming one list entry by its key (FieldsV1's
# `k:{"name":"api"}`). The same table gives strategic merge patch its
# patch merge keys (the first key field).

class K(str):
    """One entry of an associative list, by its key fields (defaults filled)."""

    def __new__(cls, fields: dict, defaults: dict):
        self = super().__new__(cls, "k:" + json.dumps(fields, sort_keys=True, separators=(",", ":")))
        self.fields = fields
        self.defaults = defaults
        return self

    def __reduce__(self):
        return (K, (self.fields, self.defaults))

    def matches(self, item) -> bool:
        return isinstance(item, dict) and all(item.get(f, self.defaults.get(f)) == v
                                              for f, v in self.fields.items())


def _pod_lists(prefix):
    table = {prefix + ("volumes",): [("name", None)]}
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        table[prefix + (kind,)] = [("name", None)]
        table[prefix + (kind, "*", "env")] = [("name", None)]
        table[prefix + (kind, "*", "ports")] = [("containerPort", None), ("protocol", "TCP")]
        table[prefix + (kind, "*", "volumeMounts")] = [("mountPath", None)]
    return table


# (group, plural) -> {schema path ("*" for a list entry): [(key field, default)]}
LIST_KEYS = {
    ("", "pods"): {**_pod_lists(("spec",)), ("status", "conditions"): [("type", None)]},
    ("apps", "deployments"): {**_pod_lists(("spec", "template", "spec")),
                              ("status", "conditions"): [("type", None)]},
    ("apps", "replicasets"): {**_pod_lists(("spec", "template", "spec")),
                              ("status", "conditions"): [("type", None)]},
    ("", "services"): {("spec", "ports"): [("port", None), ("protocol", "TCP")]},
    (GATEWAY_GROUP, "gateways"): {("spec", "listeners"): [("name", None)]},
}
COMMON_LIST_KEYS = {("metadata", "ownerReferences"): [("uid", None)]}


def list_key_spec(rtype, path):
    schema = tuple("*" if isinstance(p, K) else p for p in path)
    spec = COMMON_LIST_KEYS.get(schema)
    if spec is None and rtype is not None:
        spec = LIST_KEYS.get(rtype.storage, {}).get(schema)
    return spec


def entry_keys(items, spec):
    """The K of every entry, or None when the list cannot be keyed (an
    entry that is not an object, lacks a key or repeats one): then it is
    treated as atomic."""
    keys, seen = [], set()
    defaults = {f: d for f, d in spec if d is not None}
    for item in items:
        if not isinstance(item, dict):
            return None
        fields = {}
        for f, d in spec:
            v = item.get(f, d)
            if v is None:
                return None
            fields[f] = v
        k = K(fields, defaults)
        if k in seen:
            return None
        seen.add(k)
        keys.append(k)
    return keys


def _find_entry(items, k):
    for i, item in enumerate(items):
        if k.matches(item):
            return i
    return None


def get_path(obj, path):
    for p in path:
        if isinstance(p, K):
            if not isinstance(obj, list):
                return MISSING
            i = _find_entry(obj, p)
            if i is None:
                return MISSING
            obj = obj[i]
        elif not isinstance(obj, dict) or p not in obj:
            return MISSING
        else:
            obj = obj[p]
    return obj


def set_path(obj, path, value):
    """Sets a leaf; a path ending in a K only makes sure the entry exists
    (with its key fields), its fields are set one by one."""
    node = obj
    for i, p in enumerate(path):
        last = i == len(path) - 1
        if isinstance(p, K):
            at = _find_entry(node, p)
            if at is None:
                node.append(dict(p.fields))
                at = len(node) - 1
            if last:
                return
            node = node[at]
            continue
        if last:
            node[p] = clone(value)
            return
        want = list if isinstance(path[i + 1], K) else dict
        if not isinstance(node.get(p), want):
            node[p] = want()
        node = node[p]


def del_path(obj, path):
    """Removes a leaf or a list entry, and the maps and lists it leaves
    empty (below the top level)."""
    parents = []
    node = obj
    for p in path[:-1]:
        child = get_path(node, (p,))
        if not isinstance(child, (dict, list)):
            return
        parents.append((node, p))
        node = child
    last = path[-1]
    if isinstance(last, K):
        if isinstance(node, list):
            at = _find_entry(node, last)
            if at is not None:
                node.pop(at)
    elif isinstance(node, dict):
        node.pop(last, None)
    for parent, key in reversed(parents[1:]):
        if isinstance(key, K) or not isinstance(parent, dict):
            break
        if parent.get(key) in ({}, []):
            parent.pop(key)
        else:
            break


ENTRY = "<list entry>"  # the value of a list entry's own path in path_values


def _walk(value, prefix, rtype, out: dict):
    if isinstance(value, dict):
        # An empty map owns nothing: applying `spec: {}` must not wipe spec.
        for k, v in value.items():
            _walk(v, prefix + (k,), rtype, out)
    elif isinstance(value, list) and prefix and (spec := list_key_spec(rtype, prefix)) \
            and (keys := entry_keys(value, spec)) is not None:
        for item, k in zip(value, keys):
            out[prefix + (k,)] = ENTRY
            _walk(item, prefix + (k,), rtype, out)
    elif value is not None and prefix:
        out[prefix] = value


def ordered_paths(value, prefix=(), rtype=None):
    """Field paths of a value in document order: maps are walked,
    associative lists are walked entry by entry (the entry itself is a
    path too, FieldsV1's "."), other lists and scalars are leaves, nulls
    own nothing."""
    out: dict = {}
    _walk(value, prefix, rtype, out)
    return list(out)


def leaves(value, prefix=(), rtype=None):
    return set(ordered_paths(value, prefix, rtype))


def path_values(obj, rtype: ResourceType, status_part: bool) -> dict:
    """path -> value of every field field management tracks for one side of
    an object (the status, or everything else), in document order."""
    out: dict = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            if status_part and rtype.status_sub:
                continue
            for mk in MANAGED_META:
                if isinstance(value, dict) and mk in value:
                    _walk(value[mk], ("metadata", mk), rtype, out)
            continue
        if rtype.status_sub and (key == "status") != status_part:
            continue
        _walk(value, (key,), rtype, out)
    return out


def ordered_managed_paths(obj, rtype: ResourceType, status_part: bool):
    return list(path_values(obj, rtype, status_part))


def managed_paths(obj, rtype: ResourceType, status_part: bool):
    return set(path_values(obj, rtype, status_part))


def differs(old, new, path) -> bool:
    """Whether a write changed a field. A list entry changes only by
    appearing or going: its fields are paths of their own."""
    a, b = get_path(old, path), get_path(new, path)
    if isinstance(path[-1], K):
        return (a is MISSING) != (b is MISSING)
    return a != b


def is_key_field(path) -> bool:
    return len(path) >= 2 and isinstance(path[-2], K) and path[-1] in path[-2].fields


def fields_v1(paths) -> dict:
    tree: dict = {}
    for path in sorted(paths):
        node = tree
        for p in path:
            node = node.setdefault(p if isinstance(p, K) else f"f:{p}", {})
        if isinstance(path[-1], K):
            node.setdefault(".", {})
    return tree


def path_text(path) -> str:
    """`.spec.template.spec.containers[name="api"].image`, as conflicts name fields."""
    out = ""
    for p in path:
        if isinstance(p, K):
            out += "[" + ",".join(f"{f}={json.dumps(v)}" for f, v in sorted(p.fields.items())) + "]"
        else:
            out += f".{p}"
    return out


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


# Fields Kubernetes indexes for field selectors, beyond metadata.name and
# metadata.namespace (which every kind has).
FIELD_SELECTORS = {
    ("", "pods"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                   "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    ("", "events"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                     "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("apps", "replicasets"): ("status.replicas",),
}


def parse_field_selector(text: str, rtype=None):
    if not text:
        return []
    allowed = ("metadata.name", "metadata.namespace") + FIELD_SELECTORS.get(rtype.storage if rtype else None, ())
    reqs = []
    for part in text.split(","):
        m = FIELD_REQ.match(part)
        if not m:
            raise bad_request(f"invalid field selector {part!r}: expected FIELD=VALUE or FIELD!=VALUE")
        key, op, val = m.group("key"), m.group("op"), m.group("val")
        if key not in allowed:
            raise bad_request(f'"{key}" is not a known field selector: only '
                              + ", ".join(f'"{a}"' for a in allowed) + f" (field label not supported: {key})")
        path = tuple(key.split("."))

        def value(obj, path=path):
            v = get_path(obj, path)
            if v is MISSING or v is None:
                return ""
            return json.dumps(v) if isinstance(v, bool) else str(v)
        if op == "!=":
            reqs.append(lambda obj, v=val, f=value: f(obj) != v)
        else:
            reqs.append(lambda obj, v=val, f=value: f(obj) == v)
    return reqs


def selected(obj, label_reqs, field_reqs) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r(labels) for r in label_reqs) and all(r(obj) for r in field_reqs)


def selector_matches(selector, labels) -> bool:
    """A metav1.LabelSelector against labels (an empty selector matches all)."""
    if not isinstance(selector, dict):
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_text(selector) -> str:
    """A LabelSelector as a labelSelector query string (Scale's status.selector)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op = e.get("operator")
        if op in ("In", "NotIn"):
            parts.append(f"{e.get('key')} {op.lower()} ({','.join(sorted(e.get('values') or []))})")
        elif op == "Exists":
            parts.append(e.get("key"))
        elif op == "DoesNotExist":
            parts.append(f"!{e.get('key')}")
    return ",".join(parts)


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
                out[k] = clone(sub["default"])
        for k in schema.get("required", []):
            if k not in out:
                errors.append((f"{path}.{k}", "Required value"))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_schema(v, schema["items"], f"{path}[{i}]", errors) for i, v in enumerate(value)]
    return value


# ---------------------------------------------------------------- built-in kinds
#
# What the real API server does to workload and networking objects on
# every write: defaulting (SetDefaults_* and, for Gateway API, the CRD
# schema defaults), validation (422 with the field, in Kubernetes' words)
# and allocation (Service cluster IPs and node ports). Run on create and on
# every update, so a defaulted field comes back after an apply drops it.

def go_map(value) -> str:
    """A Go map as %#v prints it in validation messages."""
    if not value:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items())) + "}"


def go_selector(sel) -> str:
    sel = sel or {}
    exprs = sel.get("matchExpressions")
    return (f"v1.LabelSelector{{MatchLabels:{go_map(sel.get('matchLabels'))}, MatchExpressions:"
            + ("[]v1.LabelSelectorRequirement(nil)" if not exprs else json.dumps(exprs)) + "}")


def default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_pod_spec(spec, pod: bool):
    """SetDefaults_PodSpec and SetDefaults_Container (and, for Pods, what
    the ServiceAccount and DefaultTolerationSeconds admission add)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if pod:
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        tolerations = spec.setdefault("tolerations", [])
        if isinstance(tolerations, list):
            for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                if not any(isinstance(t, dict) and t.get("key") == taint for t in tolerations):
                    tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                        "tolerationSeconds": 300})
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            if isinstance(c.get("image"), str) and "imagePullPolicy" not in c:
                c["imagePullPolicy"] = default_pull_policy(c["image"])
            for port in c.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def validate_pod_spec(rtype, name, spec, field, pod: bool):
    if not isinstance(spec, dict):
        raise rtype.invalid(name, field, "Required value")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise rtype.invalid(name, f"{field}.containers", "Required value")
    for kind in ("initContainers", "containers"):
        seen = set()
        for i, c in enumerate(spec.get(kind) or []):
            where = f"{field}.{kind}[{i}]"
            if not isinstance(c, dict) or not c.get("name"):
                raise rtype.invalid(name, f"{where}.name", "Required value")
            if c["name"] in seen:
                raise rtype.invalid(name, f"{where}.name", f'Duplicate value: "{c["name"]}"')
            seen.add(c["name"])
            if pod and not c.get("image"):
                raise rtype.invalid(name, f"{where}.image", "Required value")
            for j, port in enumerate(c.get("ports") or []):
                cp = port.get("containerPort") if isinstance(port, dict) else None
                if not isinstance(cp, int) or isinstance(cp, bool) or not 0 < cp < 65536:
                    raise rtype.invalid(name, f"{where}.ports[{j}].containerPort",
                                        f"Invalid value: {json.dumps(cp)}: must be between 1 and 65535, inclusive")


def int_or_percent(value, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        scaled = pct * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _percent_value(value):
    if isinstance(value, str) and value.endswith("%"):
        try:
            return int(value[:-1]), True
        except ValueError:
            return None, True
    if isinstance(value, int) and not isinstance(value, bool):
        return value, False
    return None, False


def default_workload(spec, deployment: bool):
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    if deployment:
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxUnavailable", "25%")
                    ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.get("spec"), pod=False)


def validate_workload(rtype, obj, old, deployment: bool):
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise rtype.invalid(name, "spec.selector", "Required value")
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        raise rtype.invalid(name, "spec.selector", "Required value")
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        raise rtype.invalid(name, "spec.selector", f"Invalid value: {go_selector(sel)}: empty selector is "
                            f"invalid for {'deployment' if deployment else 'replicaset'}")
    template = spec.get("template")
    if not isinstance(template, dict):
        raise rtype.invalid(name, "spec.template.metadata.labels", "Required value")
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector_matches(sel, labels):
        raise rtype.invalid(name, "spec.template.metadata.labels",
                            f"Invalid value: {go_map(labels)}: `selector` does not match template `labels`")
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise rtype.invalid(name, "spec.replicas",
                            f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0")
    validate_pod_spec(rtype, name, template.get("spec"), "spec.template.spec", pod=False)
    if deployment:
        strategy = spec.get("strategy") or {}
        kind = strategy.get("type")
        if kind not in ("Recreate", "RollingUpdate"):
            raise rtype.invalid(name, "spec.strategy.type",
                                f"Unsupported value: {json.dumps(kind)}: supported values: "
                                '"Recreate", "RollingUpdate"')
        if kind == "Recreate" and strategy.get("rollingUpdate") is not None:
            raise rtype.invalid(name, "spec.strategy.rollingUpdate",
                                "Forbidden: may not be specified when strategy `type` is 'Recreate'")
        if kind == "RollingUpdate":
            ru = strategy.get("rollingUpdate") or {}
            surge, _ = _percent_value(ru.get("maxSurge"))
            unavail, unavail_pct = _percent_value(ru.get("maxUnavailable"))
            if surge is None or unavail is None:
                bad = "maxSurge" if surge is None else "maxUnavailable"
                raise rtype.invalid(name, f"spec.strategy.rollingUpdate.{bad}",
                                    f"Invalid value: {json.dumps(ru.get(bad))}: must be an integer or percentage "
                                    "(e.g '5%')")
            if unavail_pct and unavail > 100:
                raise rtype.invalid(name, "spec.strategy.rollingUpdate.maxUnavailable",
                                    f'Invalid value: "{ru.get("maxUnavailable")}": must not be greater than 100%')
            if surge == 0 and unavail == 0:
                raise rtype.invalid(name, "spec.strategy.rollingUpdate.maxUnavailable",
                                    f"Invalid value: {json.dumps(ru.get('maxUnavailable'))}: may not be 0 when "
                                    "`maxSurge` is 0")
        pds = spec.get("progressDeadlineSeconds")
        if isinstance(pds, int) and pds <= (spec.get("minReadySeconds") or 0):
            raise rtype.invalid(name, "spec.progressDeadlineSeconds",
                                f"Invalid value: {pds}: must be greater than minReadySeconds")
    if old is not None and (old.get("spec") or {}).get("selector") != sel:
        raise rtype.invalid(name, "spec.selector", f"Invalid value: {go_selector(sel)}: field is immutable")


def pod_qos(spec) -> str:
    containers = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                  if isinstance(c, dict)]
    res = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    for r in res:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for what in ("cpu", "memory"):
            if what not in limits or requests.get(what, limits[what]) != limits[what]:
                return "Burstable"
    return "Guaranteed"


def _strip_mutable(spec):
    spec = clone(spec)
    for kind in ("containers", "initContainers"):
        for c in spec.get(kind) or []:
            if isinstance(c, dict):
                c.pop("image", None)
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        spec.pop(field, None)
    return spec


def builtin_pod(api, rtype, obj, old):
    name = obj["metadata"].get("name", "")
    default_pod_spec(obj.get("spec"), pod=True)
    validate_pod_spec(rtype, name, obj.get("spec"), "spec", pod=True)
    if old is not None:
        before, after = _strip_mutable(old.get("spec") or {}), _strip_mutable(obj.get("spec") or {})
        if not before.get("nodeName"):
            # Binding (setting nodeName once) is allowed.
            before.pop("nodeName", None)
            after.pop("nodeName", None)
        if before != after:
            raise rtype.invalid(name, "spec", "Forbidden: pod updates may not change fields other than "
                                "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                                "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                                "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
                                "was previously negative)")


def builtin_deployment(api, rtype, obj, old):
    default_workload(obj.get("spec"), deployment=True)
    validate_workload(rtype, obj, old, deployment=True)


def builtin_replicaset(api, rtype, obj, old):
    default_workload(obj.get("spec"), deployment=False)
    validate_workload(rtype, obj, old, deployment=False)


def builtin_service(api, rtype, obj, old):
    name = obj["metadata"].get("name", "")
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise rtype.invalid(name, "spec", "Required value")
    spec.setdefault("type", "ClusterIP")
    kind = spec["type"]
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise rtype.invalid(name, "spec.type", f'Unsupported value: {json.dumps(kind)}: supported values: '
                            '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"')
    if kind == "ExternalName":
        if not spec.get("externalName"):
            raise rtype.invalid(name, "spec.externalName", "Required value")
    else:
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    ports = spec.get("ports") or []
    if not isinstance(ports, list):
        raise rtype.invalid(name, "spec.ports", "Invalid value: must be a list")
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        raise rtype.invalid(name, "spec.ports", "Required value")
    names = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            raise rtype.invalid(name, f"spec.ports[{i}]", "Invalid value: must be an object")
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            raise rtype.invalid(name, f"spec.ports[{i}].port",
                                f"Invalid value: {json.dumps(number)}: must be between 1 and 65535, inclusive")
        if len(ports) > 1 and not port.get("name"):
            raise rtype.invalid(name, f"spec.ports[{i}].name", "Required value")
        if port.get("name") in names:
            raise rtype.invalid(name, f"spec.ports[{i}].name", f'Duplicate value: "{port.get("name")}"')
        names.add(port.get("name"))
        port.setdefault("protocol", "TCP")
        if kind != "ExternalName":
            port.setdefault("targetPort", number)
    old_spec = (old or {}).get("spec") or {}
    if kind == "ExternalName":
        return
    # Allocated values stay: an update that leaves them out keeps them, one
    # that changes them is refused (Kubernetes' PatchAllocatedValues).
    for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if field not in spec and field in old_spec and old_spec.get("type") != "ExternalName":
            spec[field] = clone(old_spec[field])
    if old_spec.get("clusterIP") and spec.get("clusterIP") not in (None, "", old_spec["clusterIP"]):
        raise rtype.invalid(name, "spec.clusterIPs[0]",
                            f'Invalid value: []string{{"{spec["clusterIP"]}"}}: may not change once set')
    if not spec.get("clusterIP"):
        spec["clusterIP"] = api.s.allocate_cluster_ip()
    if spec["clusterIP"] != "None":
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        for port in ports:
            if not port.get("nodePort"):
                port["nodePort"] = old_ports.get((port["port"], port["protocol"])) or api.s.allocate_node_port()


def builtin_endpointslice(api, rtype, obj, old):
    name = obj["metadata"].get("name", "")
    kind = obj.get("addressType")
    if kind not in ("IPv4", "IPv6", "FQDN"):
        raise rtype.invalid(name, "addressType", f'Unsupported value: {json.dumps(kind)}: supported values: '
                            '"FQDN", "IPv4", "IPv6"')
    if old is not None and old.get("addressType") != kind:
        raise rtype.invalid(name, "addressType", f"Invalid value: {json.dumps(kind)}: field is immutable")
    for i, e in enumerate(obj.get("endpoints") or []):
        if not isinstance(e, dict) or not e.get("addresses"):
            raise rtype.invalid(name, f"endpoints[{i}].addresses", "Required value: must contain at least 1 "
                                "address")


def builtin_gateway(api, rtype, obj, old):
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not spec.get("gatewayClassName"):
        raise rtype.invalid(name, "spec.gatewayClassName", "Required value")
    listeners = spec.get("listeners")
    if not isinstance(listeners, list) or not listeners:
        raise rtype.invalid(name, "spec.listeners", "Required value")
    for i, listener in enumerate(listeners):
        for field in ("name", "port", "protocol"):
            if not isinstance(listener, dict) or listener.get(field) in (None, ""):
                raise rtype.invalid(name, f"spec.listeners[{i}].{field}", "Required value")
        allowed = listener.setdefault("allowedRoutes", {})
        if isinstance(allowed, dict):
            allowed.setdefault("namespaces", {})
            if isinstance(allowed["namespaces"], dict):
                allowed["namespaces"].setdefault("from", "Same")


def _default_match(match):
    if isinstance(match, dict):
        path = match.setdefault("path", {"type": "PathPrefix", "value": "/"})
        if isinstance(path, dict):
            path.setdefault("type", "PathPrefix")
            path.setdefault("value", "/")
        for h in match.get("headers") or []:
            if isinstance(h, dict):
                h.setdefault("type", "Exact")
        for q in match.get("queryParams") or []:
            if isinstance(q, dict):
                q.setdefault("type", "Exact")


def builtin_httproute(api, rtype, obj, old):
    """The defaults of the HTTPRoute CRD's schema, and what its CEL rules check."""
    name = obj["metadata"].get("name", "")
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise rtype.invalid(name, "spec", "Invalid value: must be an object")
    for i, ref in enumerate(spec.get("parentRefs") or []):
        if not isinstance(ref, dict) or not ref.get("name"):
            raise rtype.invalid(name, f"spec.parentRefs[{i}].name", "Required value")
        ref.setdefault("group", GATEWAY_GROUP)
        ref.setdefault("kind", "Gateway")
    rules = spec.setdefault("rules", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}])
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict):
            raise rtype.invalid(name, f"spec.rules[{i}]", "Invalid value: must be an object")
        rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
        for match in rule["matches"] or []:
            _default_match(match)
        for j, ref in enumerate(rule.get("backendRefs") or []):
            where = f"spec.rules[{i}].backendRefs[{j}]"
            if not isinstance(ref, dict) or not ref.get("name"):
                raise rtype.invalid(name, f"{where}.name", "Required value")
            ref.setdefault("group", "")
            ref.setdefault("kind", "Service")
            ref.setdefault("weight", 1)
            weight = ref["weight"]
            if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 1000000:
                raise rtype.invalid(name, f"{where}.weight", f"Invalid value: {json.dumps(weight)}: should be "
                                    "between 0 and 1000000")
            if ref["group"] == "" and ref["kind"] == "Service" and "port" not in ref:
                raise rtype.invalid(name, where, 'Invalid value: "object": Must have port for Service reference')


def builtin_gatewayclass(api, rtype, obj, old):
    name = obj["metadata"].get("name", "")
    if not (obj.get("spec") or {}).get("controllerName"):
        raise rtype.invalid(name, "spec.controllerName", "Required value")
    if old is not None and old["spec"].get("controllerName") != obj["spec"]["controllerName"]:
        raise rtype.invalid(name, "spec.controllerName", "Invalid value: Value is immutable")


def rbac_name_problem(name: str) -> str | None:
    """RBAC objects are named by path segments (`system:discovery`), not
    DNS subdomains: ValidateRBACName's words."""
    if name in (".", ".."):
        return f"may not be '{name}'"
    for bad in ("/", "%"):
        if bad in name:
            return f"may not contain '{bad}'"
    return None


def _go_strings(values) -> str:
    """A []string as Go's %#v prints it in field errors."""
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def builtin_role(api, rtype, obj, old):
    """Roles and ClusterRoles: ValidatePolicyRule's checks and words. An
    aggregationRule is stored but not acted on."""
    name = obj["metadata"].get("name", "")
    rules = obj.get("rules")
    if rules is None:
        return
    if not isinstance(rules, list):
        raise rtype.invalid(name, "rules", "Invalid value: must be a list of PolicyRules")
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise rtype.invalid(name, where, "Invalid value: must be a PolicyRule object")
        for field in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
            value = rule.get(field)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise rtype.invalid(name, f"{where}.{field}", "Invalid value: must be a list of strings")
        if not rule.get("verbs"):
            raise rtype.invalid(name, f"{where}.verbs", "Required value: verbs must contain at least one value")
        urls = rule.get("nonResourceURLs")
        if urls:
            if rtype.namespaced:
                raise rtype.invalid(name, f"{where}.nonResourceURLs", f"Invalid value: {_go_strings(urls)}: "
                                    "namespaced rules cannot apply to non-resource URLs")
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                raise rtype.invalid(name, f"{where}.nonResourceURLs", f"Invalid value: {_go_strings(urls)}: "
                                    "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not rule.get("apiGroups"):
            raise rtype.invalid(name, f"{where}.apiGroups",
                                "Required value: resource rules must supply at least one api group")
        if not rule.get("resources"):
            raise rtype.invalid(name, f"{where}.resources",
                                "Required value: resource rules must supply at least one resource")


def builtin_binding(api, rtype, obj, old):
    """RoleBindings and ClusterRoleBindings: ValidateRoleBinding's checks
    and words, SetDefaults_Subject's apiGroup, and an immutable roleRef
    (changing it means deleting and recreating the binding, as in Kubernetes)."""
    name = obj["metadata"].get("name", "")
    ref = obj.get("roleRef")
    if not isinstance(ref, dict) or not ref:
        raise rtype.invalid(name, "roleRef", "Required value")
    if ref.get("apiGroup") != RBAC_GROUP:
        raise rtype.invalid(name, "roleRef.apiGroup", f'Unsupported value: {json.dumps(ref.get("apiGroup", ""))}: '
                            f'supported values: "{RBAC_GROUP}"')
    kinds = ("Role", "ClusterRole") if rtype.namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        raise rtype.invalid(name, "roleRef.kind", f'Unsupported value: {json.dumps(ref.get("kind", ""))}: '
                            "supported values: " + ", ".join(f'"{k}"' for k in kinds))
    if not ref.get("name") or not isinstance(ref["name"], str):
        raise rtype.invalid(name, "roleRef.name", "Required value")
    problem = rbac_name_problem(ref["name"])
    if problem:
        raise rtype.invalid(name, "roleRef.name", f'Invalid value: "{ref["name"]}": {problem}')
    subjects = obj.get("subjects")
    if subjects is not None and not isinstance(subjects, list):
        raise rtype.invalid(name, "subjects", "Invalid value: must be a list of Subjects")
    for i, subject in enumerate(subjects or []):
        where = f"subjects[{i}]"
        if not isinstance(subject, dict):
            raise rtype.invalid(name, where, "Invalid value: must be a Subject object")
        kind = subject.get("kind")
        if not subject.get("apiGroup") and kind in ("User", "Group"):
            subject["apiGroup"] = RBAC_GROUP
        if not subject.get("name"):
            raise rtype.invalid(name, f"{where}.name", "Required value")
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                raise rtype.invalid(name, f"{where}.apiGroup",
                                    f'Unsupported value: {json.dumps(subject["apiGroup"])}: supported values: ""')
            if not rtype.namespaced and not subject.get("namespace"):
                raise rtype.invalid(name, f"{where}.namespace", "Required value")
        elif kind in ("User", "Group"):
            if subject["apiGroup"] != RBAC_GROUP:
                raise rtype.invalid(name, f"{where}.apiGroup", f'Unsupported value: '
                                    f'{json.dumps(subject["apiGroup"])}: supported values: "{RBAC_GROUP}"')
        else:
            raise rtype.invalid(name, f"{where}.kind", f"Unsupported value: {json.dumps(kind or '')}: supported "
                                'values: "ServiceAccount", "User", "Group"')
    if old is not None and old.get("roleRef") != ref:
        raise rtype.invalid(name, "roleRef", f'Invalid value: rbac.RoleRef{{APIGroup:"{ref["apiGroup"]}", '
                            f'Kind:"{ref["kind"]}", Name:"{ref["name"]}"}}: cannot change roleRef')


BUILTIN_HOOKS = {
    ("", "pods"): builtin_pod,
    ("apps", "deployments"): builtin_deployment,
    ("apps", "replicasets"): builtin_replicaset,
    ("", "services"): builtin_service,
    ("discovery.k8s.io", "endpointslices"): builtin_endpointslice,
    (GATEWAY_GROUP, "gateways"): builtin_gateway,
    (GATEWAY_GROUP, "httproutes"): builtin_httproute,
    (GATEWAY_GROUP, "gatewayclasses"): builtin_gatewayclass,
    (RBAC_GROUP, "roles"): builtin_role,
    (RBAC_GROUP, "clusterroles"): builtin_role,
    (RBAC_GROUP, "rolebindings"): builtin_binding,
    (RBAC_GROUP, "clusterrolebindings"): builtin_binding,
}


def _pending_conditions(*types):
    return [{"type": t, "status": "Unknown", "reason": "Pending", "message": "Waiting for controller",
             "lastTransitionTime": "1970-01-01T00:00:00Z"} for t in types]


def initial_status(rtype, obj):
    """The status a new object starts with (status sent on create is
    dropped for kinds with a status subresource)."""
    storage = rtype.storage
    if storage == ("", "pods"):
        return {"phase": "Pending", "qosClass": pod_qos(obj.get("spec") or {})}
    if storage == ("", "services"):
        return {"loadBalancer": {}}
    if storage == ("apps", "replicasets"):
        return {"replicas": 0}
    if storage == ("apps", "deployments"):
        return {}
    if storage == (GATEWAY_GROUP, "gateways"):
        return {"conditions": _pending_conditions("Accepted", "Programmed")}
    if storage == (GATEWAY_GROUP, "gatewayclasses"):
        return {"conditions": _pending_conditions("Accepted")}
    return None


# ---------------------------------------------------------------- the store

class Watch:
    def __init__(self, storage, namespace):
        self.storage = storage
        self.namespace = namespace
        self.closed = False


class Store:
    """Everything the server holds, behind one lock."""

    def __init__(self, history_limit: int, establish_delay: float, delays: dict | None = None):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.history_limit = history_limit
        self.establish_delay = establish_delay
        # The defaults of the per-namespace settings (POST /_emulator/settings).
        self.default_settings = dict(DEFAULT_SETTINGS, **(delays or {}))
        self.continues: dict[str, tuple[int, list]] = {}
        # The request log has a lock of its own: handlers append outside the store lock.
        self.requests_lock = threading.Lock()
        # namespace -> [{"verb", "resource", "seconds", "count"}]: requests
        # held unanswered (/_emulator/stalls).
        self.stalls = {}
        self.reset()

    def reset(self):
        with self.lock:
            for w in getattr(self, "watches", []):
                w.closed = True
            self.rv = 1
            self.objects: dict[tuple, dict] = {}
            # Indexes the controllers read: uid -> key, namespace -> keys,
            # storage -> keys; and the namespaces written since they last looked.
            self.by_uid: dict[str, tuple] = {}
            self.by_ns: dict[str, set] = {}
            self.by_storage: dict[tuple, set] = {}
            self.dirty: set[str] = set()
            self.cluster_removed = False
            # Writes that concern routes in other namespaces.
            self.namespaces_changed = False
            self.gateways_changed = False
            # Per-namespace test controls.
            self.ns_settings: dict[str, dict] = {}
            self.images: dict[str, dict] = {}
            # Authentication (POST /_emulator/tokens and /_emulator/eks):
            # token -> {"user", "groups"}; cluster -> access key id ->
            # {"secretAccessKey", "user", "groups", "sessionToken"?}.
            self.tokens: dict[str, dict] = {}
            self.eks: dict[str, dict] = {}
            self.eks_any_host = False
            with self.requests_lock:
                self.requests: dict[str, collections.deque] = {}
            self.ip_counter = 0
            self.pod_ip_counter = 0
            self.node_port_counter = 0
            # managed fields: key -> {(manager, operation, subresource): set(paths)}
            self.managed: dict[tuple, dict] = {}
            # (key, manager entry) -> (apiVersion, time) of its last change
            self.managed_meta: dict[tuple, tuple] = {}
            # key -> (object, resourceVersion, managedFields, JSON text): how
            # a plain LIST last sent the object (see Api.list_json).
            self.rendered: dict[tuple, tuple] = {}
            self.types: dict[tuple, ResourceType] = {}
            for t in BUILTINS:
                self.types[(t.group, t.version, t.plural)] = t
            self.history: list[tuple] = []  # (rv, storage, namespace, type, obj, old)
            self.history_rvs: list[int] = []
            # Watches from before a floor get 410: `floor` is the newest event
            # dropped from the history (any namespace) or a global compaction,
            # `global_floor` a global compaction only, `ns_dropped` the newest
            # dropped event per namespace ("" for cluster-scoped objects) and
            # `ns_floor` a compaction of one namespace. A watch of one namespace
            # only expires when an event of its own namespace was dropped, so a
            # busy test does not force the watches of the others to relist.
            self.floor = 0
            self.global_floor = 0
            self.ns_dropped: dict[str, int] = {}
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
            gone = clone(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self.objects.pop(key, None)
            self.managed.pop(key, None)
            self.rendered.pop(key, None)
            self.by_uid.pop(old["metadata"].get("uid"), None)
            self.by_ns.get(key[2], set()).discard(key)
            self.by_storage.get(key[:2], set()).discard(key)
            if not key[2] and key[:2] != ("", "namespaces"):
                self.cluster_removed = True
            if key[:2] == ("", "namespaces"):
                # A namespace made again later starts with fresh controls.
                self.ns_settings.pop(key[3], None)
                self.images.pop(key[3], None)
            snapshot = gone
        else:
            obj["metadata"]["resourceVersion"] = str(rv)
            self.objects[key] = obj
            self.by_uid[obj["metadata"]["uid"]] = key
            self.by_ns.setdefault(key[2], set()).add(key)
            self.by_storage.setdefault(key[:2], set()).add(key)
            snapshot = clone(obj)
        if key[:2] == ("", "namespaces"):
            self.namespaces_changed = True
        elif key[:2] == (GATEWAY_GROUP, "gateways"):
            self.gateways_changed = True
        self.dirty.add(key[3] if key[:2] == ("", "namespaces") else key[2])
        self.history.append((rv, key[:2], key[2], event, snapshot, old))
        self.history_rvs.append(rv)
        if len(self.history) > self.history_limit:
            drop = len(self.history) - self.history_limit
            for dropped in self.history[:drop]:
                self.ns_dropped[dropped[2]] = dropped[0]
            self.floor = self.history_rvs[drop - 1]
            del self.history[:drop]
            del self.history_rvs[:drop]
        self.cond.notify_all()
        return snapshot

    def floor_for(self, rtype, ns) -> int:
        """The oldest resourceVersion a watch of (rtype, ns) may resume from."""
        if ns:
            return max(self.global_floor, self.ns_dropped.get(ns, 0), self.ns_floor.get(ns, 0))
        if rtype is not None and not rtype.namespaced:
            return max(self.global_floor, self.ns_dropped.get("", 0))
        return self.floor

    def settings_for(self, ns) -> dict:
        return dict(self.default_settings, **self.ns_settings.get(ns, {}))

    def keys_of(self, storage, ns=None):
        """The keys of one kind (in one namespace), sorted."""
        keys = self.by_storage.get(storage, set())
        if ns is not None:
            keys = keys & self.by_ns.get(ns, set())
        return sorted(keys)

    def allocate_cluster_ip(self) -> str:
        self.ip_counter += 1
        n = self.ip_counter % 65000 + 10
        return f"10.96.{n // 250}.{n % 250 + 1}"

    def allocate_pod_ip(self) -> str:
        self.pod_ip_counter += 1
        n = self.pod_ip_counter % 65000
        return f"10.244.{n // 250}.{n % 250 + 2}"

    def allocate_node_port(self) -> int:
        self.node_port_counter += 1
        return 30000 + self.node_port_counter % 2768

    def log_request(self, ns, entry):
        with self.requests_lock:
            log = self.requests.get(ns)
            if log is None:
                log = self.requests[ns] = collections.deque(maxlen=REQUEST_LOG_LIMIT)
                while len(self.requests) > REQUEST_LOG_NAMESPACES:
                    self.requests.pop(next(iter(self.requests)))
            log.append(entry)

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
# Per-namespace settings and their defaults (the command line changes the defaults).
DEFAULT_SETTINGS = {"podReadyDelay": 0.3, "endpointDelay": 0.1, "routeStatusDelay": 0.1}
REQUEST_LOG_LIMIT = 20000
REQUEST_LOG_NAMESPACES = 2000


def random_suffix() -> str:
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def matching(store, rtype, ns, label_reqs, field_reqs):
    """(key, object) of every stored object of `rtype` in `ns` (any
    namespace when None) that the selectors select, in key order: what a
    LIST answers and a watch starts from."""
    for key in sorted(store.by_storage.get(rtype.storage, ())):
        if ns is not None and key[2] != ns:
            continue
        obj = store.objects[key]
        if selected(obj, label_reqs, field_reqs):
            yield key, obj


def view(obj: dict, rtype: ResourceType, partial: bool) -> dict:
    """How an object is sent: at the requested version, or as
    PartialObjectMetadata when the client asked for metadata only."""
    out = clone(obj)
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
        old_values = path_values(old, rtype, status_part) if old else {}
        new_values = path_values(new, rtype, status_part)
        changed = {p for p, v in new_values.items() if old_values.get(p, MISSING) != v}
        removed = old_values.keys() - new_values.keys()
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
        out = clone(obj)
        key = self._key(rtype, out["metadata"].get("namespace"), out["metadata"]["name"])
        managed = self.s.render_managed(key)
        if managed:
            out["metadata"]["managedFields"] = managed
        return out

    def list_json(self, rtype, ns, query):
        """A plain LIST (no limit, continue or resourceVersion), answered as
        JSON text. Each object is rendered once per version and kept, as the
        real API server's watch cache keeps objects serialized: a client
        listing a thousand Releases twice a second then costs a join, not a
        thousand deep copies while every other request waits for the store's
        lock (measured: 90-210 ms a list, stalling the controller's writes)."""
        label_reqs = parse_label_selector(query.get("labelSelector", ""))
        field_reqs = parse_field_selector(query.get("fieldSelector", ""), rtype)
        items = [self._rendered(key, obj, rtype)
                 for key, obj in matching(self.s, rtype, ns, label_reqs, field_reqs)]
        head = json.dumps({"kind": rtype.list_kind, "apiVersion": rtype.api_version,
                           "metadata": {"resourceVersion": str(self.s.rv)}})
        return head[:-1] + ', "items": [' + ", ".join(items) + "]}"

    def _rendered(self, key, obj, rtype):
        """The object as `view(self._out(obj), rtype, False)` sends it, as
        JSON text, from the cache while the object, its version and its
        managed fields are the ones it was rendered from."""
        managed = self.s.render_managed(key)
        version = obj["metadata"].get("resourceVersion")
        cached = self.s.rendered.get(key)
        if cached is not None and cached[0] is obj and cached[1] == version and cached[2] == managed:
            return cached[3]
        out = dict(obj)
        out["metadata"] = dict(obj["metadata"])
        if managed:
            out["metadata"]["managedFields"] = managed
        out["apiVersion"] = rtype.api_version
        out["kind"] = rtype.kind
        text = json.dumps(out)
        self.s.rendered[key] = (obj, version, managed, text)
        return text

    def list(self, rtype, ns, query):
        label_reqs = parse_label_selector(query.get("labelSelector", ""))
        field_reqs = parse_field_selector(query.get("fieldSelector", ""), rtype)
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
            items = [self._out(obj, rtype) for _, obj in matching(self.s, rtype, ns, label_reqs, field_reqs)]
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

    def _validate(self, rtype, obj, old=None):
        name = obj["metadata"].get("name", "")
        if rtype.group == RBAC_GROUP:
            problem = rbac_name_problem(name)
            if problem:
                raise rtype.invalid(name, "metadata.name", f'Invalid value: "{name}": {problem}')
        elif not NAME_RE.match(name) or len(name) > 253:
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
        hook = BUILTIN_HOOKS.get(rtype.storage)
        if hook is not None and rtype.crd_name is None:
            hook(self, rtype, obj, old)

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

    def create(self, rtype, ns, body, query, manager, dry_run=False, from_apply=False, render=True):
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
        obj = clone(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "managedFields", "generation", "selfLink"):
            obj["metadata"].pop(field, None)
        if rtype.status_sub:
            obj.pop("status", None)
            status = initial_status(rtype, obj)
            if status is not None:
                obj["status"] = status
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
        return 201, self._out(out, rtype) if render else out

    def _finish_update(self, rtype, key, old, new, manager, sub, dry_run, operation="Update", applied=None,
                       render=True):
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
            new = clone(old)
            if status is MISSING:
                new.pop("status", None)
            else:
                new["status"] = status
        elif rtype.status_sub:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        if old["metadata"].get("deletionTimestamp"):
            before = set(old["metadata"].get("finalizers") or [])
            added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
            if added:
                raise ApiError(422, "Invalid", f'{rtype.kind} "{name}" is invalid: metadata.finalizers: '
                               f"Forbidden: no new finalizers can be added if the object is being deleted, "
                               f"found new finalizers {json.dumps(added)}", rtype.details(name))
        self._validate(rtype, new, old)
        if "generation" in old["metadata"]:
            skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.status_sub else set())
            if {k: v for k, v in old.items() if k not in skip} != {k: v for k, v in new.items() if k not in skip}:
                new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        comparable_old = {k: v for k, v in old.items()}
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == comparable_old:
            # A no-op write stores nothing and keeps the resourceVersion.
            return 200, self._out(old, rtype) if render else old
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
        return 200, self._out(out, rtype) if render else out

    def replace(self, rtype, ns, name, body, manager, sub="", dry_run=False):
        self._check_body(rtype, ns, body, name)
        key = self._key(rtype, ns, name)
        old = self.s.objects.get(key)
        if old is None:
            raise rtype.not_found(name)
        new = clone(body)
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
            new = strategic_patch(old, patch, (), rtype)
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
        # A resourceVersion in the configuration is a precondition.
        rv = config["metadata"].pop("resourceVersion", None)
        if rv and (old is None or rv != old["metadata"]["resourceVersion"]):
            raise rtype.conflict(name, "the object has been modified; please apply your changes to the latest "
                                 "version and try again")
        status_part = sub == "status"
        order = ordered_managed_paths(config, rtype, status_part)
        applied = set(order)
        mine = (manager, "Apply", sub)
        if old is None:
            if sub:
                raise rtype.not_found(name)
            code, out = self.create(rtype, ns, clone(config), query, manager, dry_run, from_apply=True)
            if not dry_run:
                stored = self.s.objects[key]
                self.s.managed.setdefault(key, {})[mine] = managed_paths(stored, rtype, False) & applied
                self.s.managed_meta[(key, mine)] = (rtype.api_version, now_iso())
                out = self._out(stored, rtype)
            return code, out
        entries = self.s.managed.get(key, {})
        conflicts = []
        for other, paths in sorted(entries.items()):
            if other == mine:
                continue
            for p in sorted(paths & applied):
                if isinstance(p[-1], K):
                    continue  # sharing a list entry is no conflict; its fields may be
                live = get_path(old, p)
                if live is not MISSING and live != get_path(config, p):
                    conflicts.append((other, p))
        if conflicts and not force:
            raise self._apply_conflict(rtype, name, conflicts)
        new = clone(old)
        for p in order:
            set_path(new, p, get_path(config, p))
        previously = entries.get(mine, set())
        others = set().union(*(paths for k, paths in entries.items() if k != mine))
        # Shorter paths first: a list entry goes with its fields.
        for p in sorted(previously - applied, key=len):
            if any(o[:len(p)] == p for o in others) or is_key_field(p):
                continue
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
                changed = {p for p in applied if differs(old, stored, p)}
                for other in list(entries):
                    if other != mine:
                        entries[other] -= changed
                entries[mine] = applied & managed_paths(stored, rtype, status_part)
                self.s.managed_meta[(key, mine)] = (rtype.api_version, now_iso())
                self._prune_entries(key)
                result = (result[0], self._out(stored, rtype))
        return result

    @staticmethod
    def _apply_conflict(rtype, name, conflicts):
        """409 in the apiserver's words (fieldmanager's NewConflictError)."""
        def who(entry):
            manager, operation, sub = entry
            text = f'"{manager}"' + (f' with subresource "{sub}"' if sub else "")
            return text + (f" using {rtype.api_version}" if operation == "Update" else "")
        causes = [{"type": "FieldManagerConflict", "message": f"conflict with {who(o)}", "field": path_text(p)}
                  for o, p in conflicts]
        if len(conflicts) == 1:
            entry, path = conflicts[0]
            message = f"Apply failed with 1 conflict: conflict with {who(entry)}: {path_text(path)}"
        else:
            lines = []
            for entry in sorted({o for o, _ in conflicts}, key=lambda e: e[0]):
                lines.append(f"conflicts with {who(entry)}:")
                lines += [f"- {path_text(p)}" for o, p in conflicts if o == entry]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
        return ApiError(409, "Conflict", message, dict(rtype.details(name), causes=causes))

    # -- the scale subresource (autoscaling/v1 Scale)

    def scale_view(self, obj):
        spec = obj.get("spec") or {}
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp") if k in meta},
                "spec": {"replicas": spec.get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": selector_text(spec.get("selector") or {})}}

    def get_scale(self, rtype, ns, name):
        obj = self.s.objects.get(self._key(rtype, ns, name))
        if obj is None:
            raise rtype.not_found(name)
        return self.scale_view(obj)

    def write_scale(self, rtype, ns, name, method, content_type, raw, query, manager, dry_run):
        key = self._key(rtype, ns, name)
        old = self.s.objects.get(key)
        if old is None:
            raise rtype.not_found(name)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise bad_request("the request body is not valid JSON") from None
        current = self.scale_view(old)
        if method == "PUT":
            scale = body
        elif content_type in (MERGE_PATCH, APPLY_PATCH):
            if content_type == APPLY_PATCH:
                manager = query.get("fieldManager") or manager
            scale = merge_patch(current, body)
        elif content_type == JSON_PATCH:
            scale = json_patch(current, body)
        elif content_type == STRATEGIC_PATCH:
            scale = strategic_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}, "
                           f"{STRATEGIC_PATCH}")
        if not isinstance(scale, dict):
            raise bad_request("a Scale must be a JSON object")
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise rtype.conflict(name, "the object has been modified; please apply your changes to the latest "
                                 "version and try again")
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                           f"{json.dumps(replicas)}: must be greater than or equal to 0",
                           {"name": name, "group": "autoscaling", "kind": "Scale", "causes": [
                               {"reason": "FieldValueInvalid", "field": "spec.replicas",
                                "message": "Invalid value: must be greater than or equal to 0"}]})
        new = clone(old)
        new["spec"]["replicas"] = replicas
        self._finish_update(rtype, key, old, new, manager, "scale", dry_run)
        return 200, self.scale_view(new if dry_run else self.s.objects[key])

    # -- pod logs (what a kubelet would stream, reduced to a line per event)

    def pod_log(self, ns, name, query) -> str:
        rtype = self.s.types[("", "v1", "pods")]
        pod = self.s.objects.get(self._key(rtype, ns, name))
        if pod is None:
            raise rtype.not_found(name)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(names)}]")
            container = names[0]
        if container not in names + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise bad_request(f"container {container} is not valid for pod {name}")
        status = next((c for c in (pod.get("status") or {}).get("containerStatuses") or []
                       if c.get("name") == container), None)
        waiting = ((status or {}).get("state") or {}).get("waiting")
        previous = query.get("previous") in ("true", "1")
        if status is None or (waiting and waiting.get("reason") != "CrashLoopBackOff"):
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              + ((waiting or {}).get("reason") or "ContainerCreating"))
        image = status.get("image", "")
        if waiting or previous:
            if not status.get("lastState", {}).get("terminated"):
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return f"starting {image}\nfatal: exiting with code 1\n"
        return f"starting {image}\nlistening\n"

    def delete(self, rtype, ns, name, body, dry_run=False, propagation=None):
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
        if propagation == "Orphan":
            self._orphan_dependents(obj)
        elif propagation == "Foreground":
            self._delete_dependents(obj)
        return self._delete(rtype, key, obj)

    # -- garbage collection (the collector itself runs in Controllers)

    def dependents(self, owner):
        """Keys of the objects naming `owner` (by uid) in their ownerReferences."""
        uid = owner["metadata"]["uid"]
        ns = owner["metadata"].get("namespace")
        keys = self.s.by_ns.get(ns, set()) if ns else self.s.objects.keys()
        return sorted(k for k in keys if any(r.get("uid") == uid for r in
                                             self.s.objects[k]["metadata"].get("ownerReferences") or []))

    def _orphan_dependents(self, owner):
        uid = owner["metadata"]["uid"]
        for key in self.dependents(owner):
            dep = self.s.objects[key]
            new = clone(dep)
            refs = [r for r in new["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences")
            dtype = self.s.type_for_storage(key[:2])
            if dtype is not None:
                self._finish_update(dtype, key, dep, new, "kube-controller-manager", "", False)

    def _delete_dependents(self, owner):
        """Foreground deletion, done at once: dependents (theirs first) go
        before the owner."""
        for key in self.dependents(owner):
            dep = self.s.objects.get(key)
            dtype = self.s.type_for_storage(key[:2])
            if dep is None or dtype is None or dep["metadata"].get("deletionTimestamp"):
                continue
            self._delete_dependents(dep)
            self._delete(dtype, key, dep)

    def _delete(self, rtype, key, obj):
        name = obj["metadata"]["name"]
        is_ns = rtype.group == "" and rtype.plural == "namespaces"
        is_crd = rtype.group == CRD_GROUP and rtype.plural == "customresourcedefinitions"
        if obj["metadata"].get("finalizers") or is_ns or is_crd:
            if obj["metadata"].get("deletionTimestamp"):
                return 200, self._out(obj, rtype)
            new = clone(obj)
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
                if storage not in BUILTIN_STORAGES:
                    # A CRD for a kind served built in (Gateway API) owns nothing.
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
            if storage not in BUILTIN_STORAGES and self.s.by_storage.get(storage) \
                    or obj["metadata"].get("finalizers"):
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
                new = clone(crd)
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
            current = self.s.types.get((spec["group"], v["name"], names["plural"]))
            if not v.get("served") or (current is not None and current.crd_name is None):
                continue  # a kind served built in stays built in
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


# ---------------------------------------------------------------- controllers
#
# What a cluster runs besides the API server, reduced to what deployctl
# observes: the deployment and replicaset controllers, the garbage
# collector and the endpointslice controller (kube-controller-manager), a
# scheduler and kubelet for one node, and a Gateway API controller. One
# background thread reconciles, every TICK, the namespaces written since
# the last pass (or whose timers are due: a pod becoming ready, a crash
# loop restart, a progress deadline, a propagation delay), holding the
# store lock for one namespace at a time. Every write goes through the API
# semantics above (validation, managedFields, resourceVersion, watch
# events), with the managers the real components use.

TICK = 0.05
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KUBELET = "kubelet"
ENDPOINTSLICE_MANAGER = "endpointslice-controller.k8s.io"
IMAGE_BEHAVIOURS = ("ready", "never-ready", "crashloop", "pull-error")
NODE_NAME = "node-1"
HOST_IP = "10.0.0.1"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Annotations of a Deployment that its ReplicaSets do not copy.
NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION, DESIRED_REPLICAS, MAX_REPLICAS,
              "deployment.kubernetes.io/revision-history", "deprecated.deployment.rollback.to")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
# Crash loops restart every CRASH_INTERVAL seconds for the first
# CRASH_FAST restarts, then every CRASH_SLOW (a real kubelet backs off
# exponentially up to 5 minutes); a pull error turns into ImagePullBackOff
# after PULL_BACKOFF_AFTER.
CRASH_INTERVAL = 0.5
CRASH_FAST = 20
CRASH_SLOW = 10.0
PULL_BACKOFF_AFTER = 1.0


def template_hash(template) -> str:
    """pod-template-hash: stable for a template, in Kubernetes' safe alphabet."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    out = ""
    for _ in range(10):
        n, r = divmod(n, len(SAFE_ALPHABET))
        out += SAFE_ALPHABET[r]
    return out


def without_hash(template):
    t = clone(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def controller_uid(obj):
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def owner_ref(obj, api_version, kind):
    return {"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def revision_of(rs) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def spec_replicas(obj) -> int:
    return (obj.get("spec") or {}).get("replicas", 1)


def status_int(obj, field) -> int:
    return (obj.get("status") or {}).get(field) or 0


def pod_ready(pod) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def parse_time(stamp) -> float | None:
    """An RFC 3339 time as a monotonic clock reading."""
    try:
        wall = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None
    return time.monotonic() - (time.time() - wall.timestamp())


def go_duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60}s"


def set_condition(conditions: list, new: dict) -> list:
    """SetDeploymentCondition: unchanged when status and reason are the
    same; lastTransitionTime kept when only the reason changes."""
    current = next((c for c in conditions if c.get("type") == new["type"]), None)
    same = current is not None and current.get("status") == new["status"]
    if same and current.get("reason") == new.get("reason"):
        return conditions
    if same:
        new["lastTransitionTime"] = current.get("lastTransitionTime", new["lastTransitionTime"])
    return [c for c in conditions if c.get("type") != new["type"]] + [new]


def deployment_condition(kind, status, reason, message):
    stamp = now_iso()
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


class Controllers:
    def __init__(self, store: Store):
        self.s = store
        self.api = Api(store)
        self.wake: dict[str, float] = {}
        # Memory the real components keep in theirs, by uid: when the
        # kubelet started a pod's containers, when a pod became ready, when
        # a Deployment last progressed, when a pending status was first due.
        self.pods: dict[str, dict] = {}
        self.progress: dict[str, tuple] = {}
        self.notes: dict[str, tuple] = {}
        self.pending: dict[tuple, float] = {}
        self.ticks = 0

    def start(self):
        threading.Thread(target=self._run, name="controllers", daemon=True).start()

    def _run(self):
        while True:
            time.sleep(TICK)
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a bug must not stop the controllers
                import traceback
                traceback.print_exc()

    def tick(self):
        now = time.monotonic()
        with self.s.lock:
            todo = set(self.s.dirty)
            self.s.dirty.clear()
            if self.s.cluster_removed:
                # A cluster-scoped owner went: any namespace may hold dependents.
                self.s.cluster_removed = False
                todo |= set(self.s.by_ns)
            todo |= {ns for ns, t in self.wake.items() if t <= now}
            if self.s.gateways_changed or self.s.namespaces_changed:
                # Routes elsewhere may point at a Gateway that changed, or
                # at a namespace whose labels a listener selects on.
                self.s.gateways_changed = self.s.namespaces_changed = False
                todo |= {k[2] for k in self.s.by_storage.get((GATEWAY_GROUP, "httproutes"), ())}
        busy_since = time.monotonic()
        for ns in sorted(todo):
            if time.monotonic() - busy_since > 0.01:
                # Let waiting requests have the lock (a Python lock is not fair).
                time.sleep(0.002)
                busy_since = time.monotonic()
            with self.s.lock:
                self.wake.pop(ns, None)
                try:
                    if ns:
                        self.reconcile(ns, time.monotonic())
                    else:
                        self.sync_gatewayclasses()
                except Exception:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()
        self.ticks += 1
        if self.ticks % 200 == 0:
            with self.s.lock:
                self._forget()

    def _forget(self):
        for table in (self.pods, self.progress, self.notes):
            for uid in [u for u in table if u not in self.s.by_uid]:
                table.pop(uid)
        for key in [k for k in self.pending if k[1] not in self.s.by_uid]:
            self.pending.pop(key)

    def wake_at(self, ns, when):
        if when is not None:
            self.wake[ns] = min(self.wake.get(ns, when), when)

    def reconcile(self, ns, now):
        """One pass over a namespace, in the order changes flow: owners
        gone, Deployments, ReplicaSets, pods, their statuses, Services,
        Gateways, routes."""
        self.collect_garbage(ns)
        deployments = self.s.keys_of(("apps", "deployments"), ns)
        for key in deployments:
            self._guard(self.sync_deployment, key, now)
        replicasets = self.s.keys_of(("apps", "replicasets"), ns)
        for key in replicasets:
            self._guard(self.sync_replicaset, key, now)
        for key in self.s.keys_of(("", "pods"), ns):
            self._guard(self.sync_pod, key, now)
        for key in replicasets:
            self._guard(self.sync_replicaset_status, key, now)
        for key in deployments:
            self._guard(self.sync_deployment_status, key, now)
        for key in self.s.keys_of(("", "services"), ns):
            self._guard(self.sync_endpointslice, key, now)
        for key in self.s.keys_of((GATEWAY_GROUP, "gateways"), ns):
            self._guard(self.sync_gateway, key, now)
        for key in self.s.keys_of((GATEWAY_GROUP, "httproutes"), ns):
            self._guard(self.sync_route, key, now)

    def _guard(self, fn, key, now):
        try:
            fn(key, now)
        except ApiError as err:
            # What a real controller would log and retry: retried on the next pass.
            if err.code not in (404, 409, 403):
                sys.stderr.write(f"kubeapi: controller {fn.__name__} {key}: {err.message}\n")
            self.wake_at(key[2], time.monotonic() + 0.5)

    # -- writes, through the API semantics

    def _create(self, storage, ns, obj, manager):
        rtype = self.s.type_for_storage(storage)
        _, out = self.api.create(rtype, ns, obj, {}, manager, render=False)
        return self.s.objects.get(self.api._key(rtype, ns, out["metadata"]["name"]))

    def _update(self, key, new, manager, sub=""):
        old = self.s.objects.get(key)
        if old is None or new == old:
            return old
        rtype = self.s.type_for_storage(key[:2])
        self.api._finish_update(rtype, key, old, new, manager, sub, False, render=False)
        return self.s.objects.get(key)

    def _remove(self, key):
        obj = self.s.objects.get(key)
        if obj is not None and not obj["metadata"].get("deletionTimestamp"):
            self.api._delete(self.s.type_for_storage(key[:2]), key, obj)

    def _owned(self, storage, ns, uid):
        return [self.s.objects[k] for k in self.s.keys_of(storage, ns) if controller_uid(self.s.objects[k]) == uid]

    def _key_of(self, obj, storage):
        return storage + (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    # -- garbage collector (background propagation)

    def collect_garbage(self, ns):
        """Deletes what has ownerReferences whose owners (by uid) are all gone."""
        for key in sorted(self.s.by_ns.get(ns, ())):
            obj = self.s.objects.get(key)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences")
            if not refs or not isinstance(refs, list):
                continue
            alive = False
            for ref in refs:
                owner = self.s.by_uid.get(ref.get("uid")) if isinstance(ref, dict) else None
                if owner is not None and owner[2] in (ns, ""):
                    alive = True
                    break
            if not alive and self.s.type_for_storage(key[:2]) is not None:
                self._remove(key)

    # -- deployment controller

    def _surge_unavailable(self, d):
        spec = d["spec"]
        replicas = spec.get("replicas", 1)
        if (spec.get("strategy") or {}).get("type") != "RollingUpdate":
            return 0, 0
        ru = spec["strategy"].get("rollingUpdate") or {}
        surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, True)
        unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, min(unavailable, replicas)

    def _split(self, d):
        """(new ReplicaSet or None, old ones oldest first, all) of a Deployment."""
        rss = self._owned(("apps", "replicasets"), d["metadata"]["namespace"], d["metadata"]["uid"])
        rss = [rs for rs in rss if not rs["metadata"].get("deletionTimestamp")]
        rss.sort(key=lambda rs: (rs["metadata"].get("creationTimestamp", ""), revision_of(rs),
                                 rs["metadata"]["name"]))
        template = d["spec"]["template"]
        new = next((rs for rs in rss if without_hash(rs["spec"]["template"]) == template), None)
        return new, [rs for rs in rss if rs is not new], rss

    def _scale(self, d, rs, replicas):
        new = clone(rs)
        new["spec"]["replicas"] = replicas
        surge, _ = self._surge_unavailable(d)
        annotations = new["metadata"].setdefault("annotations", {})
        annotations[DESIRED_REPLICAS] = str(d["spec"].get("replicas", 1))
        annotations[MAX_REPLICAS] = str(d["spec"].get("replicas", 1) + surge)
        return self._update(self._key_of(rs, ("apps", "replicasets")), new, CONTROLLER_MANAGER)

    def _create_rs(self, d, revision, replicas):
        name = d["metadata"]["name"]
        ns = d["metadata"]["namespace"]
        template = clone(d["spec"]["template"])
        h = template_hash(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = clone(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        surge, _ = self._surge_unavailable(d)
        annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k not in NOT_COPIED}
        annotations.update({REVISION: str(revision), DESIRED_REPLICAS: str(d["spec"].get("replicas", 1)),
                            MAX_REPLICAS: str(d["spec"].get("replicas", 1) + surge)})
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{name}-{h}", "namespace": ns, "labels": dict(template["metadata"]["labels"]),
                           "annotations": annotations,
                           "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")]},
              "spec": {"replicas": replicas, "selector": selector, "template": template}}
        if d["spec"].get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = d["spec"]["minReadySeconds"]
        created = self._create(("apps", "replicasets"), ns, rs, CONTROLLER_MANAGER)
        self.notes[d["metadata"]["uid"]] = ("NewReplicaSetCreated", f'Created new replica set "{name}-{h}"')
        return created

    def _refresh_new_rs(self, d, rs, max_old_revision):
        """What getNewReplicaSet keeps up to date on an existing new
        ReplicaSet: its revision (a template coming back gets the next one),
        minReadySeconds and the replica annotations."""
        new = clone(rs)
        annotations = new["metadata"].setdefault("annotations", {})
        if revision_of(rs) < max_old_revision + 1:
            annotations[REVISION] = str(max_old_revision + 1)
        if d["spec"].get("minReadySeconds", 0) != rs["spec"].get("minReadySeconds", 0):
            if d["spec"].get("minReadySeconds"):
                new["spec"]["minReadySeconds"] = d["spec"]["minReadySeconds"]
            else:
                new["spec"].pop("minReadySeconds", None)
        if condition(d, "Progressing") is None:
            self.notes.setdefault(d["metadata"]["uid"],
                                  ("FoundNewReplicaSet", f'Found new replica set "{rs["metadata"]["name"]}"'))
        return self._update(self._key_of(rs, ("apps", "replicasets")), new, CONTROLLER_MANAGER)

    def sync_deployment(self, key, now):
        d = self.s.objects.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        spec = d["spec"]
        replicas = spec.get("replicas", 1)
        paused = bool(spec.get("paused"))
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        new_rs, old_rss, rss = self._split(d)
        max_old = max((revision_of(rs) for rs in old_rss), default=0)
        if new_rs is not None:
            new_rs = self._refresh_new_rs(d, new_rs, max_old)
        if paused:
            # A paused Deployment scales, it does not roll out.
            active = [rs for rs in rss if spec_replicas(rs) > 0]
            target = active[0] if len(active) == 1 else (new_rs if not active else None)
            if target is not None and spec_replicas(target) != replicas:
                self._scale(d, target, replicas)
            self._sync_revision(d, new_rs)
            return
        if self._scaling_event(d, rss, new_rs):
            return
        if recreate:
            self._recreate(d, new_rs, old_rss, max_old)
        else:
            self._rolling(d, new_rs, old_rss, max_old)

    def _scaling_event(self, d, rss, new_rs):
        """A change of spec.replicas alone: the one active ReplicaSet is
        scaled to it at once (several active ones are left to the rollout:
        no proportional scaling)."""
        replicas = d["spec"].get("replicas", 1)
        active = [rs for rs in rss if spec_replicas(rs) > 0]
        if len(active) != 1 or (new_rs is not None and active[0] is not new_rs):
            return False
        rs = active[0]
        desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
        if desired is None or desired == str(replicas) or spec_replicas(rs) == replicas:
            return False
        self._scale(d, rs, replicas)
        return True

    def _rolling(self, d, new_rs, old_rss, max_old):
        replicas = d["spec"].get("replicas", 1)
        surge, max_unavailable = self._surge_unavailable(d)
        if new_rs is None:
            current = sum(spec_replicas(rs) for rs in old_rss)
            start = max(0, min(replicas + surge - current, replicas))
            new_rs = self._create_rs(d, max_old + 1, start)
            self._sync_revision(d, new_rs)
            return
        self._sync_revision(d, new_rs)
        all_rss = old_rss + [new_rs]
        # Scale up, if we can (reconcileNewReplicaSet).
        size = spec_replicas(new_rs)
        if size > replicas:
            self._scale(d, new_rs, replicas)
            return
        if size < replicas:
            current = sum(spec_replicas(rs) for rs in all_rss)
            up = min(replicas + surge - current, replicas - size)
            if up > 0:
                self._scale(d, new_rs, size + up)
                return
        # Scale down, if we can (reconcileOldReplicaSets).
        if self._scale_down_old(d, new_rs, old_rss, max_unavailable):
            return
        if self._complete(d, d.get("status") or {}):
            self._cleanup(d, old_rss)

    def _scale_down_old(self, d, new_rs, old_rss, max_unavailable) -> bool:
        replicas = d["spec"].get("replicas", 1)
        old_rss = [rs for rs in old_rss if spec_replicas(rs) > 0]
        if not old_rss:
            return False
        all_pods = sum(spec_replicas(rs) for rs in old_rss) + spec_replicas(new_rs)
        min_available = replicas - max_unavailable
        new_unavailable = spec_replicas(new_rs) - status_int(new_rs, "availableReplicas")
        max_down = all_pods - min_available - new_unavailable
        if max_down <= 0:
            return False
        scaled = False
        # First the old pods that are not available anyway (cleanupUnhealthyReplicas)...
        total = 0
        sizes = {rs["metadata"]["uid"]: spec_replicas(rs) for rs in old_rss}
        for rs in old_rss:
            if total >= max_down:
                break
            uid = rs["metadata"]["uid"]
            unhealthy = sizes[uid] - status_int(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            down = min(max_down - total, unhealthy)
            sizes[uid] -= down
            total += down
        # ...then available ones, as far as availability allows.
        available = sum(status_int(rs, "availableReplicas") for rs in old_rss) + \
            status_int(new_rs, "availableReplicas")
        if available > min_available:
            budget = available - min_available
            done = 0
            for rs in old_rss:
                uid = rs["metadata"]["uid"]
                if done >= budget:
                    break
                if sizes[uid] == 0:
                    continue
                down = min(sizes[uid], budget - done)
                sizes[uid] -= down
                done += down
        for rs in old_rss:
            if sizes[rs["metadata"]["uid"]] != spec_replicas(rs):
                self._scale(d, rs, sizes[rs["metadata"]["uid"]])
                scaled = True
        return scaled

    def _recreate(self, d, new_rs, old_rss, max_old):
        replicas = d["spec"].get("replicas", 1)
        active = [rs for rs in old_rss if spec_replicas(rs) > 0]
        for rs in active:
            self._scale(d, rs, 0)
        if active:
            return
        ns = d["metadata"]["namespace"]
        if any(self._owned(("", "pods"), ns, rs["metadata"]["uid"]) for rs in old_rss):
            return  # the old pods go first
        if new_rs is None:
            new_rs = self._create_rs(d, max_old + 1, replicas)
        elif spec_replicas(new_rs) != replicas:
            self._scale(d, new_rs, replicas)
        self._sync_revision(d, new_rs)
        if self._complete(d, d.get("status") or {}):
            self._cleanup(d, old_rss)

    def _sync_revision(self, d, new_rs):
        """The Deployment carries its new ReplicaSet's revision annotation."""
        if new_rs is None:
            return
        revision = (new_rs["metadata"].get("annotations") or {}).get(REVISION)
        if revision and (d["metadata"].get("annotations") or {}).get(REVISION) != revision:
            key = self._key_of(d, ("apps", "deployments"))
            current = self.s.objects[key]
            new = clone(current)
            new["metadata"].setdefault("annotations", {})[REVISION] = revision
            self._update(key, new, CONTROLLER_MANAGER)

    def _cleanup(self, d, old_rss):
        """Keeps revisionHistoryLimit old ReplicaSets scaled to zero."""
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in old_rss if spec_replicas(rs) == 0 and status_int(rs, "replicas") == 0]
        if len(idle) <= limit:
            return
        idle.sort(key=revision_of)
        for rs in idle[:len(idle) - limit]:
            self._remove(self._key_of(rs, ("apps", "replicasets")))

    @staticmethod
    def _complete(d, status) -> bool:
        replicas = d["spec"].get("replicas", 1)
        return ((status.get("updatedReplicas") or 0) == replicas and (status.get("replicas") or 0) == replicas
                and (status.get("availableReplicas") or 0) == replicas
                and (status.get("observedGeneration") or 0) >= d["metadata"].get("generation", 1))

    def sync_deployment_status(self, key, now):
        d = self.s.objects.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        uid = d["metadata"]["uid"]
        new_rs, _, rss = self._split(d)
        replicas = d["spec"].get("replicas", 1)
        old = d.get("status") or {}
        counts = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": sum(status_int(rs, "replicas") for rs in rss),
            "updatedReplicas": status_int(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in rss),
            "availableReplicas": sum(status_int(rs, "availableReplicas") for rs in rss),
        }
        counts["unavailableReplicas"] = max(replicas - counts["availableReplicas"], 0)
        # Kubernetes omits zero counts (omitempty).
        status = {k: v for k, v in counts.items() if v}
        conditions = clone(old.get("conditions") or [])
        _, max_unavailable = self._surge_unavailable(d)
        if counts["availableReplicas"] >= replicas - max_unavailable:
            conditions = set_condition(conditions, deployment_condition(
                "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."))
        else:
            conditions = set_condition(conditions, deployment_condition(
                "Available", "False", "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability."))
        note = self.notes.pop(uid, None)
        if note is not None:
            conditions = set_condition(conditions, deployment_condition("Progressing", "True", *note))
        paused = bool(d["spec"].get("paused"))
        progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
        if paused:
            if not progressing or progressing.get("reason") != "DeploymentPaused":
                conditions = set_condition(conditions, deployment_condition(
                    "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"))
        elif progressing is not None and progressing.get("reason") == "DeploymentPaused":
            conditions = set_condition(conditions, deployment_condition(
                "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"))
        deadline = d["spec"].get("progressDeadlineSeconds")
        what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{d["metadata"]["name"]}"'
        if not paused and isinstance(deadline, int) and deadline < 2147483647:
            progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
            complete_before = (counts["replicas"] == counts["updatedReplicas"] and progressing is not None
                               and progressing.get("reason") == "NewReplicaSetAvailable")
            if not complete_before:
                if self._complete(d, counts):
                    conditions = set_condition(conditions, deployment_condition(
                        "Progressing", "True", "NewReplicaSetAvailable", f"{what} has successfully progressed."))
                elif self._progressed(old, counts):
                    new = deployment_condition("Progressing", "True", "ReplicaSetUpdated",
                                               f"{what} is progressing.")
                    if progressing is not None and progressing.get("status") == "True":
                        new["lastTransitionTime"] = progressing.get("lastTransitionTime",
                                                                    new["lastTransitionTime"])
                    conditions = [c for c in conditions if c.get("type") != "Progressing"] + [new]
                elif self._timed_out(uid, progressing, deadline, now):
                    conditions = set_condition(conditions, deployment_condition(
                        "Progressing", "False", "ProgressDeadlineExceeded", f"{what} has timed out progressing."))
            progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
            if progressing is not None and progressing.get("reason") not in ("NewReplicaSetAvailable",
                                                                               "ProgressDeadlineExceeded"):
                stamp = progressing.get("lastUpdateTime")
                if self.progress.get(uid, (None,))[0] != stamp:
                    self.progress[uid] = (stamp, now)
                self.wake_at(key[2], self.progress[uid][1] + deadline + 0.05)
        if conditions:
            status["conditions"] = conditions
        if status != old:
            new = clone(d)
            new["status"] = status
            self._update(key, new, CONTROLLER_MANAGER, "status")

    @staticmethod
    def _progressed(old, new) -> bool:
        """DeploymentProgressing: more updated, fewer old, more ready or more available replicas."""
        def get(s, f):
            return s.get(f) or 0
        old_pods = get(old, "replicas") - get(old, "updatedReplicas")
        return (get(new, "updatedReplicas") > get(old, "updatedReplicas")
                or get(new, "replicas") - get(new, "updatedReplicas") < old_pods
                or get(new, "readyReplicas") > get(old, "readyReplicas")
                or get(new, "availableReplicas") > get(old, "availableReplicas"))

    def _timed_out(self, uid, progressing, deadline, now) -> bool:
        if progressing is None or progressing.get("reason") == "NewReplicaSetAvailable":
            return False
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return True
        stamp = progressing.get("lastUpdateTime")
        remembered = self.progress.get(uid)
        since = remembered[1] if remembered and remembered[0] == stamp else parse_time(stamp)
        return since is not None and now >= since + deadline

    # -- replicaset controller

    def _active_pods(self, rs):
        return [p for p in self._owned(("", "pods"), rs["metadata"]["namespace"], rs["metadata"]["uid"])
                if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def sync_replicaset(self, key, now):
        rs = self.s.objects.get(key)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods = self._active_pods(rs)
        want = spec_replicas(rs)
        if len(pods) < want:
            template = rs["spec"]["template"]
            meta = template.get("metadata") or {}
            prefix = rs["metadata"]["name"][:57] + "-"
            for _ in range(want - len(pods)):
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"generateName": prefix, "labels": clone(meta.get("labels") or {}),
                                    "ownerReferences": [owner_ref(rs, "apps/v1", "ReplicaSet")]},
                       "spec": clone(template.get("spec") or {})}
                if meta.get("annotations"):
                    pod["metadata"]["annotations"] = clone(meta["annotations"])
                self._create(("", "pods"), key[2], pod, CONTROLLER_MANAGER)
        elif len(pods) > want:
            # getPodsToDelete: not yet running, not ready, more restarts and newer first.
            def rank(p):
                phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get((p.get("status") or {}).get("phase"), 0)
                restarts = sum(c.get("restartCount", 0)
                               for c in (p.get("status") or {}).get("containerStatuses") or [])
                since = self.pods.get(p["metadata"]["uid"], {}).get("t0", 0)
                return (phase, pod_ready(p), -restarts, -since)
            for pod in sorted(pods, key=rank)[:len(pods) - want]:
                self._remove(self._key_of(pod, ("", "pods")))

    def sync_replicaset_status(self, key, now):
        rs = self.s.objects.get(key)
        if rs is None:
            return
        pods = self._active_pods(rs)
        min_ready = rs["spec"].get("minReadySeconds") or 0
        labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        ready = [p for p in pods if pod_ready(p)]
        available = 0
        for p in ready:
            since = self.pods.get(p["metadata"]["uid"], {}).get("ready_at")
            if since is None:
                since = parse_time((condition(p, "Ready") or {}).get("lastTransitionTime")) or now
            if now >= since + min_ready:
                available += 1
            else:
                self.wake_at(key[2], since + min_ready + 0.01)
        old = rs.get("status") or {}
        status = {"replicas": len(pods)}
        labeled = sum(1 for p in pods
                      if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items()))
        for field, value in (("fullyLabeledReplicas", labeled), ("readyReplicas", len(ready)),
                             ("availableReplicas", available),
                             ("observedGeneration", rs["metadata"].get("generation", 1))):
            if value:
                status[field] = value
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if status != old:
            new = clone(rs)
            new["status"] = status
            self._update(key, new, CONTROLLER_MANAGER, "status")

    # -- scheduler and kubelet

    def _behaviour(self, ns, image, settings):
        # A namespace's own entry first, then one for every namespace
        # (`?namespace=*`: set before the namespaces exist, as a run
        # against this server through the real-cluster switch needs).
        entry = self.s.images.get(ns, {}).get(image) or self.s.images.get("*", {}).get(image) or {}
        return entry.get("behaviour", "ready"), entry.get("readyAfter", settings["podReadyDelay"])

    @staticmethod
    def _crash_restarts(elapsed):
        fast = CRASH_FAST * CRASH_INTERVAL
        if elapsed < fast:
            n = int(elapsed / CRASH_INTERVAL)
            return n, (n + 1) * CRASH_INTERVAL
        n = CRASH_FAST + int((elapsed - fast) / CRASH_SLOW)
        return n, fast + (n - CRASH_FAST + 1) * CRASH_SLOW

    def sync_pod(self, key, now):
        pod = self.s.objects.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        if not pod["spec"].get("nodeName"):
            new = clone(pod)
            new["spec"]["nodeName"] = NODE_NAME
            pod = self._update(key, new, SCHEDULER)
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        ns, uid, name = key[2], pod["metadata"]["uid"], pod["metadata"]["name"]
        containers = [c for c in pod["spec"].get("containers") or [] if isinstance(c, dict)]
        images = tuple((c.get("name"), c.get("image")) for c in containers)
        mem = self.pods.get(uid)
        if mem is None:
            mem = self.pods[uid] = {"t0": now, "wall": now_iso(), "images": images,
                                    "ip": status.get("podIP") or self.s.allocate_pod_ip(), "ready_at": None}
        elif mem["images"] != images:
            # A new image restarts the container.
            mem.update(t0=now, wall=now_iso(), images=images, ready_at=None)
        elapsed = now - mem["t0"]
        settings = self.s.settings_for(ns)
        wake = []
        statuses = []
        pending = False
        for c in containers:
            cname, image = c.get("name"), c.get("image", "")
            behaviour, delay = self._behaviour(ns, image, settings)
            digest = hashlib.sha256(image.encode()).hexdigest()
            cs = {"name": cname, "image": image, "imageID": "", "ready": False, "restartCount": 0,
                  "started": False, "state": {}, "lastState": {}}
            container_id = "containerd://" + hashlib.sha256(f"{uid}/{cname}/{mem['wall']}".encode()).hexdigest()
            if behaviour == "pull-error":
                pending = True
                if elapsed < PULL_BACKOFF_AFTER:
                    cs["state"] = {"waiting": {"reason": "ErrImagePull", "message": (
                        f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                        f'{image}: not found')}}
                    wake.append(mem["t0"] + PULL_BACKOFF_AFTER)
                else:
                    cs["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                               "message": f'Back-off pulling image "{image}"'}}
            else:
                repo = image.split("@")[0]
                if ":" in repo.rsplit("/", 1)[-1]:
                    repo = repo.rsplit(":", 1)[0]
                cs["imageID"] = f"{repo}@sha256:{digest}"
                cs["containerID"] = container_id
                if behaviour == "crashloop":
                    restarts, next_at = self._crash_restarts(elapsed)
                    wake.append(mem["t0"] + next_at)
                    cs["restartCount"] = restarts
                    if restarts == 0:
                        cs["state"] = {"running": {"startedAt": mem["wall"]}}
                        cs["started"] = True
                    else:
                        backoff = go_duration(min(10 * 2 ** (restarts - 1), 300))
                        cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": (
                            f"back-off {backoff} restarting failed container={cname} pod={name}_{ns}({uid})")}}
                        cs["lastState"] = {"terminated": {
                            "exitCode": 1, "reason": "Error", "startedAt": mem["wall"], "finishedAt": mem["wall"],
                            "containerID": container_id}}
                else:
                    cs["state"] = {"running": {"startedAt": mem["wall"]}}
                    cs["started"] = True
                    if behaviour == "ready":
                        if elapsed >= delay:
                            cs["ready"] = True
                        else:
                            wake.append(mem["t0"] + delay)
            statuses.append(cs)
        ready = bool(statuses) and all(cs["ready"] for cs in statuses) and not pending
        if ready and mem["ready_at"] is None:
            mem["ready_at"] = now
        elif not ready:
            mem["ready_at"] = None
        unready = [cs["name"] for cs in statuses if not cs["ready"]]
        old_conditions = {c.get("type"): c for c in status.get("conditions") or []}

        def cond(kind, value, reason=None, message=None):
            previous = old_conditions.get(kind) or {}
            out = {"type": kind, "status": value, "lastProbeTime": None,
                   "lastTransitionTime": previous.get("lastTransitionTime") if previous.get("status") == value
                   else now_iso()}
            if reason:
                out["reason"], out["message"] = reason, message
            return out
        why = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]") if unready else ()
        state = "True" if ready else "False"
        new_status = {
            "phase": "Pending" if pending else "Running",
            "conditions": [cond("PodReadyToStartContainers", "True"), cond("Initialized", "True"),
                           cond("Ready", state, *why), cond("ContainersReady", state, *why),
                           cond("PodScheduled", "True")],
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": mem["ip"], "podIPs": [{"ip": mem["ip"]}],
            "startTime": status.get("startTime") or mem["wall"],
            "containerStatuses": sorted(statuses, key=lambda cs: cs["name"]),
            "qosClass": status.get("qosClass") or pod_qos(pod["spec"]),
        }
        inits = [c for c in pod["spec"].get("initContainers") or [] if isinstance(c, dict)]
        if inits:
            new_status["initContainerStatuses"] = [
                {"name": c.get("name"), "image": c.get("image", ""), "imageID": "", "ready": True,
                 "restartCount": 0, "started": False, "lastState": {}, "state": {"terminated": {
                     "exitCode": 0, "reason": "Completed", "startedAt": mem["wall"], "finishedAt": mem["wall"]}}}
                for c in inits]
        if wake:
            self.wake_at(ns, min(wake) + 0.001)
        if new_status != status:
            new = clone(pod)
            new["status"] = new_status
            self._update(key, new, KUBELET, "status")

    # -- endpointslice controller

    def _slice_content(self, svc):
        ns = svc["metadata"]["namespace"]
        selector = svc["spec"].get("selector") or {}
        pods = []
        for k in self.s.keys_of(("", "pods"), ns):
            p = self.s.objects[k]
            labels = p["metadata"].get("labels") or {}
            if all(labels.get(a) == b for a, b in selector.items()) and (p.get("status") or {}).get("podIP") \
                    and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                pods.append(p)
        endpoints = []
        for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
            terminating = bool(p["metadata"].get("deletionTimestamp"))
            serving = any(c.get("type") == "Ready" and c.get("status") == "True"
                          for c in p["status"].get("conditions") or [])
            endpoints.append({"addresses": [p["status"]["podIP"]],
                              "conditions": {"ready": serving and not terminating, "serving": serving,
                                             "terminating": terminating},
                              "nodeName": p["spec"].get("nodeName", NODE_NAME),
                              "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                            "uid": p["metadata"]["uid"]}})
        ports = None
        if endpoints:
            ports = []
            for sp in svc["spec"].get("ports") or []:
                target = sp.get("targetPort", sp.get("port"))
                if isinstance(target, str):
                    # A named port: the container port of that name (of the first pod that has one).
                    target = next((cp.get("containerPort") for p in pods for c in p["spec"].get("containers") or []
                                   for cp in c.get("ports") or [] if cp.get("name") == target), None)
                    if target is None:
                        continue
                port = {"name": sp.get("name", ""), "port": target, "protocol": sp.get("protocol", "TCP")}
                if sp.get("appProtocol"):
                    port["appProtocol"] = sp["appProtocol"]
                ports.append(port)
        labels = dict(svc["metadata"].get("labels") or {})
        labels.update({SERVICE_NAME_LABEL: svc["metadata"]["name"], MANAGED_BY_LABEL: ENDPOINTSLICE_MANAGER})
        return {"labels": labels, "ownerReferences": [owner_ref(svc, "v1", "Service")], "addressType": "IPv4",
                "endpoints": endpoints, "ports": ports}

    @staticmethod
    def _slice_is(slice_, content) -> bool:
        meta = slice_["metadata"]
        return (meta.get("labels") == content["labels"]
                and meta.get("ownerReferences") == content["ownerReferences"]
                and slice_.get("addressType") == content["addressType"]
                and (slice_.get("endpoints") or []) == content["endpoints"]
                and slice_.get("ports") == content["ports"])

    def sync_endpointslice(self, key, now):
        svc = self.s.objects.get(key)
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            return
        spec = svc.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return  # slices of a Service without a selector are the user's
        ns, uid, name = key[2], svc["metadata"]["uid"], svc["metadata"]["name"]
        slices = []
        for k in self.s.keys_of(("discovery.k8s.io", "endpointslices"), ns):
            labels = self.s.objects[k]["metadata"].get("labels") or {}
            if labels.get(SERVICE_NAME_LABEL) == name and labels.get(MANAGED_BY_LABEL) == ENDPOINTSLICE_MANAGER \
                    and controller_uid(self.s.objects[k]) == uid:
                slices.append(self.s.objects[k])
        slices.sort(key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]))
        content = self._slice_content(svc)
        if len(slices) == 1 and self._slice_is(slices[0], content):
            self.pending.pop(("slice", uid), None)
            return
        # Changes reach the slice endpointDelay after the controller saw them.
        first = self.pending.setdefault(("slice", uid), now)
        delay = self.s.settings_for(ns)["endpointDelay"]
        if now < first + delay:
            self.wake_at(ns, first + delay)
            return
        self.pending.pop(("slice", uid), None)
        body = {k: content[k] for k in ("addressType", "endpoints", "ports")}
        if not slices:
            self._create(("discovery.k8s.io", "endpointslices"), ns, dict(
                body, apiVersion="discovery.k8s.io/v1", kind="EndpointSlice",
                metadata={"generateName": f"{name[:57]}-", "labels": content["labels"],
                          "ownerReferences": content["ownerReferences"]}), ENDPOINTSLICE_MANAGER)
        else:
            new = clone(slices[0])
            new.update(clone(body))
            new["metadata"]["labels"] = content["labels"]
            new["metadata"]["ownerReferences"] = content["ownerReferences"]
            self._update(self._key_of(slices[0], ("discovery.k8s.io", "endpointslices")), new,
                         ENDPOINTSLICE_MANAGER)
            for extra in slices[1:]:
                self._remove(self._key_of(extra, ("discovery.k8s.io", "endpointslices")))

    # -- Gateway API controller

    def sync_gatewayclasses(self):
        for key in self.s.keys_of((GATEWAY_GROUP, "gatewayclasses")):
            gc = self.s.objects[key]
            if gc["spec"].get("controllerName") != GATEWAY_CONTROLLER:
                continue
            gen = gc["metadata"].get("generation", 1)
            status = dict(gc.get("status") or {})
            status["conditions"] = self._conditions(gc.get("status"), [
                ("Accepted", "True", "Accepted", "GatewayClass is accepted", gen)])
            if status != gc.get("status"):
                new = clone(gc)
                new["status"] = status
                self._update(key, new, GATEWAY_CONTROLLER, "status")

    @staticmethod
    def _conditions(old_status, wanted, old_conditions=None):
        """metav1.Conditions, keeping lastTransitionTime while a status holds."""
        if old_conditions is None:
            old_conditions = (old_status or {}).get("conditions") or []
        old = {c.get("type"): c for c in old_conditions}
        out = []
        for kind, status, reason, message, gen in wanted:
            previous = old.get(kind) or {}
            out.append({"type": kind, "status": status, "reason": reason, "message": message,
                        "observedGeneration": gen,
                        "lastTransitionTime": previous.get("lastTransitionTime")
                        if previous.get("status") == status else now_iso()})
        return out

    def _listener_allows(self, listener, gw_ns, route_ns) -> bool:
        if listener.get("protocol") not in ("HTTP", "HTTPS"):
            return False
        allowed = listener.get("allowedRoutes") or {}
        kinds = allowed.get("kinds")
        if kinds and not any(k.get("kind") == "HTTPRoute" and k.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
                             for k in kinds):
            return False
        namespaces = allowed.get("namespaces") or {}
        source = namespaces.get("from", "Same")
        if source == "All":
            return True
        if source == "Selector":
            ns_obj = self.s.objects.get(("", "namespaces", "", route_ns)) or {"metadata": {}}
            labels = dict(ns_obj["metadata"].get("labels") or {}, **{"kubernetes.io/metadata.name": route_ns})
            return selector_matches(namespaces.get("selector") or {}, labels)
        return gw_ns == route_ns

    def _parent_status(self, route, ref):
        """(Accepted status, reason, message, listeners attached) of one parentRef."""
        ns = route["metadata"]["namespace"]
        gw_ns = ref.get("namespace") or ns
        where = f"{gw_ns}/{ref.get('name')}"
        if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or ref.get("kind", "Gateway") != "Gateway":
            return ("False", "NoMatchingParent",
                    f"parentRef {ref.get('group')}/{ref.get('kind')} is not a Gateway", [])
        gw = self.s.objects.get((GATEWAY_GROUP, "gateways", gw_ns, ref.get("name")))
        if gw is None or gw["metadata"].get("deletionTimestamp"):
            return "False", "NoMatchingParent", f'Gateway "{where}" not found', []
        listeners = [lst for lst in gw["spec"].get("listeners") or []
                     if (not ref.get("sectionName") or lst.get("name") == ref["sectionName"])
                     and (not ref.get("port") or lst.get("port") == ref["port"])]
        if not listeners:
            return ("False", "NoMatchingParent", f'Gateway "{where}" has no listener matching the parentRef '
                    f"(sectionName {ref.get('sectionName')!r}, port {ref.get('port')})", [])
        allowed = [lst for lst in listeners if self._listener_allows(lst, gw_ns, ns)]
        if not allowed:
            return "False", "NotAllowedByListeners", f'No listener of Gateway "{where}" allows HTTPRoutes from ' \
                                                     f'namespace "{ns}" (see its listeners\' allowedRoutes)', []
        return "True", "Accepted", "Route is accepted", [lst["name"] for lst in allowed]

    def _resolved_refs(self, route):
        ns = route["metadata"]["namespace"]
        for rule in route["spec"].get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
                    return "False", "InvalidKind", f"backendRef {ref.get('group')}/{ref.get('kind')} " \
                                                   f"{ref.get('name')} is not a Service"
                bns = ref.get("namespace") or ns
                if bns != ns:
                    return "False", "RefNotPermitted", f'backendRef to Service "{bns}/{ref.get("name")}" is not ' \
                                                       "permitted (no ReferenceGrant support)"
                if ("", "services", bns, ref.get("name")) not in self.s.objects:
                    return "False", "BackendNotFound", f'Service "{bns}/{ref.get("name")}" not found'
        return "True", "ResolvedRefs", "Resolved all the Object references for the Route"

    @staticmethod
    def _same_parent_ref(a, b):
        fields = ("group", "kind", "namespace", "name", "sectionName", "port")
        return all(a.get(f) == b.get(f) for f in fields)

    def sync_route(self, key, now):
        route = self.s.objects.get(key)
        if route is None or route["metadata"].get("deletionTimestamp"):
            return
        ns, uid = key[2], route["metadata"]["uid"]
        gen = route["metadata"].get("generation", 1)
        status = route.get("status") or {}
        current = [p for p in status.get("parents") or [] if p.get("controllerName") == GATEWAY_CONTROLLER]
        resolved = self._resolved_refs(route)
        wanted = []
        for ref in route["spec"].get("parentRefs") or []:
            accepted = self._parent_status(route, ref)[:3]
            previous = next((p for p in current if self._same_parent_ref(p.get("parentRef") or {}, ref)), {})
            wanted.append({"parentRef": clone(ref), "controllerName": GATEWAY_CONTROLLER,
                           "conditions": self._conditions(None, [("Accepted", *accepted, gen),
                                                                 ("ResolvedRefs", *resolved, gen)],
                                                          previous.get("conditions") or [])})

        def timeless(parents):
            return [dict(p, conditions=[{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                        for c in p.get("conditions") or []]) for p in parents]
        if timeless(wanted) == timeless(current):
            self.pending.pop(("route", uid), None)
            return
        # The status appears routeStatusDelay after the change was seen.
        first = self.pending.setdefault(("route", uid), now)
        delay = self.s.settings_for(ns)["routeStatusDelay"]
        if now < first + delay:
            self.wake_at(ns, first + delay)
            return
        self.pending.pop(("route", uid), None)
        new = clone(route)
        others = [p for p in status.get("parents") or [] if p.get("controllerName") != GATEWAY_CONTROLLER]
        new["status"] = dict(status, parents=others + wanted)
        self._update(key, new, GATEWAY_CONTROLLER, "status")
        # Listener attachedRoutes counts change with it.
        for ref in route["spec"].get("parentRefs") or []:
            self.s.dirty.add(ref.get("namespace") or ns)

    def _attached_routes(self, gw, listener_name):
        gw_ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
        count = 0
        for key in self.s.by_storage.get((GATEWAY_GROUP, "httproutes"), ()):
            route = self.s.objects[key]
            for parent in (route.get("status") or {}).get("parents") or []:
                ref = parent.get("parentRef") or {}
                if parent.get("controllerName") != GATEWAY_CONTROLLER or ref.get("name") != name \
                        or (ref.get("namespace") or key[2]) != gw_ns:
                    continue
                if ref.get("sectionName") and ref["sectionName"] != listener_name:
                    continue
                if any(c.get("type") == "Accepted" and c.get("status") == "True"
                       for c in parent.get("conditions") or []):
                    count += 1
        return count

    def sync_gateway(self, key, now):
        gw = self.s.objects.get(key)
        if gw is None or gw["metadata"].get("deletionTimestamp"):
            return
        gen = gw["metadata"].get("generation", 1)
        old = gw.get("status") or {}
        n = int(gw["metadata"]["uid"].replace("-", "")[:6], 16)
        listeners = []
        old_listeners = {lst.get("name"): lst for lst in old.get("listeners") or []}
        for lst in gw["spec"].get("listeners") or []:
            http = lst.get("protocol") in ("HTTP", "HTTPS")
            listeners.append({
                "name": lst["name"],
                "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}] if http else [],
                "attachedRoutes": self._attached_routes(gw, lst["name"]),
                "conditions": self._conditions(None, [
                    ("Accepted", "True", "Accepted", "Listener is accepted", gen) if http else
                    ("Accepted", "False", "UnsupportedProtocol",
                     f"protocol {lst.get('protocol')} is not supported", gen),
                    ("Programmed", "True" if http else "False", "Programmed" if http else "Invalid",
                     "Listener is programmed" if http else "Listener is not programmed", gen),
                    ("ResolvedRefs", "True", "ResolvedRefs", "Resolved all the Object references", gen),
                    ("Conflicted", "False", "NoConflicts", "No conflicts", gen)],
                    (old_listeners.get(lst["name"]) or {}).get("conditions") or [])})
        status = {"addresses": [{"type": "IPAddress", "value": f"10.100.{n % 250}.{n // 250 % 250 + 1}"}],
                  "conditions": self._conditions(old, [
                      ("Accepted", "True", "Accepted", f"Gateway is accepted by {GATEWAY_CONTROLLER}", gen),
                      ("Programmed", "True", "Programmed", "Gateway is programmed", gen)]),
                  "listeners": listeners}
        if status != old:
            new = clone(gw)
            new["status"] = status
            self._update(key, new, GATEWAY_CONTROLLER, "status")


# ---------------------------------------------------------------- traffic model
#
# What a request through a route or a Service would reach, so a test can
# check a canary's real share: the route's rule (Gateway API match
# precedence), a backend by weight (smooth weighted round-robin:
# deterministic, 1000 requests at 90/10 give 900/100), then the Service's
# ready endpoints as its EndpointSlices publish them (round-robin). Only
# what the controllers published counts: a route without Accepted status
# for its current generation, or a slice that still lists a pod that is
# gone, fails those requests as a data plane would.

class Traffic:
    def __init__(self, store: Store, ns: str):
        self.s = store
        self.ns = ns
        self.rr: dict[tuple, int] = {}
        self.out = {"served": collections.Counter(), "byService": collections.Counter(),
                    "byDeployment": collections.Counter(), "byImage": collections.Counter(),
                    "failures": collections.Counter()}

    def send(self, body):
        n = body.get("requests", 1000)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 1000000:
            raise bad_request("requests must be an integer from 0 to 1000000")
        headers = {str(k).lower(): str(v) for k, v in (body.get("headers") or {}).items()}
        path = body.get("path") or "/"
        path, _, qs = path.partition("?")
        query = {k: v[-1] for k, v in parse_qs(qs).items()}
        query.update({str(k): str(v) for k, v in (body.get("query") or {}).items()})
        method = str(body.get("method") or "GET").upper()
        extra = {}
        if body.get("route"):
            extra = self._via_route(body["route"], n, path, method, headers, query)
        elif body.get("service"):
            self._to_service(self.ns, body["service"], n)
        else:
            raise bad_request('traffic needs "route" (an HTTPRoute) or "service" (a Service) in the namespace')
        result = {"requests": n, "served": dict(self.out["served"]), "byService": dict(self.out["byService"]),
                  "byDeployment": dict(self.out["byDeployment"]), "byImage": dict(self.out["byImage"]),
                  "failed": sum(self.out["failures"].values()), "failures": dict(self.out["failures"])}
        result.update(extra)
        return result

    def _fail(self, reason, count):
        if count:
            self.out["failures"][reason] += count

    def _via_route(self, name, n, path, method, headers, query):
        route = self.s.objects.get((GATEWAY_GROUP, "httproutes", self.ns, name))
        if route is None:
            raise ApiError(404, "NotFound", f'httproutes.{GATEWAY_GROUP} "{name}" not found',
                           {"name": name, "group": GATEWAY_GROUP, "kind": "httproutes"})
        gen = route["metadata"].get("generation", 1)
        extra = {"generation": gen}
        parents = [p for p in (route.get("status") or {}).get("parents") or []
                   if p.get("controllerName") == GATEWAY_CONTROLLER]

        def has(p, kind, value=None):
            return any(c.get("type") == kind and c.get("observedGeneration") == gen
                       and (value is None or c.get("status") == value) for c in p.get("conditions") or [])
        if not any(has(p, "Accepted") and has(p, "ResolvedRefs") for p in parents):
            # The data plane has not been given this generation yet.
            self._fail("RouteNotProgrammed", n)
            return extra
        if not any(has(p, "Accepted", "True") for p in parents):
            self._fail("RouteNotAccepted", n)
            return extra
        rule_index = self._rule(route["spec"].get("rules") or [], path, method, headers, query)
        extra["rule"] = rule_index
        if rule_index is None:
            self._fail("NoMatchingRule", n)
            return extra
        rule = route["spec"]["rules"][rule_index]
        backends = [b for b in rule.get("backendRefs") or [] if b.get("weight", 1) > 0]
        if not backends:
            self._fail("NoBackends", n)
            return extra
        weights = [b.get("weight", 1) for b in backends]
        total, current, picks = sum(weights), [0] * len(backends), [0] * len(backends)
        for _ in range(n):
            for i, w in enumerate(weights):
                current[i] += w
            best = max(range(len(backends)), key=lambda i: (current[i], -i))
            current[best] -= total
            picks[best] += 1
        for backend, count in zip(backends, picks):
            if not count:
                continue
            bns = backend.get("namespace") or self.ns
            if backend.get("group", "") != "" or backend.get("kind", "Service") != "Service":
                self._fail("InvalidKind", count)
            elif bns != self.ns:
                self._fail("RefNotPermitted", count)
            elif ("", "services", bns, backend["name"]) not in self.s.objects:
                self._fail("BackendNotFound", count)
            else:
                self._to_service(bns, backend["name"], count)
        return extra

    def _rule(self, rules, path, method, headers, query):
        """The rule whose match wins: exact path over prefix, longer prefix,
        a method, more headers, more query parameters, then rule order."""
        best = None
        for ri, rule in enumerate(rules):
            for match in rule.get("matches") or [{}]:
                if not self._matches(match, path, method, headers, query):
                    continue
                p = match.get("path") or {"type": "PathPrefix", "value": "/"}
                rank = ({"Exact": 0, "PathPrefix": 1}.get(p.get("type"), 2),
                        -len(p.get("value") or "") if p.get("type") != "RegularExpression" else 0,
                        0 if match.get("method") else 1, -len(match.get("headers") or []),
                        -len(match.get("queryParams") or []), ri)
                if best is None or rank < best[0]:
                    best = (rank, ri)
        return None if best is None else best[1]

    @staticmethod
    def _matches(match, path, method, headers, query) -> bool:
        p = match.get("path") or {"type": "PathPrefix", "value": "/"}
        value = p.get("value") or "/"
        kind = p.get("type", "PathPrefix")
        if kind == "Exact" and path != value:
            return False
        if kind == "PathPrefix":
            prefix = value.rstrip("/")
            if prefix and path != prefix and not path.startswith(prefix + "/"):
                return False
        if kind == "RegularExpression" and not re.fullmatch(value, path):
            return False
        if match.get("method") and match["method"].upper() != method:
            return False
        for h in match.get("headers") or []:
            got = headers.get(str(h.get("name", "")).lower())
            if got is None or (h.get("type", "Exact") == "Exact" and got != h.get("value")) or \
                    (h.get("type") == "RegularExpression" and not re.fullmatch(h.get("value", ""), got)):
                return False
        for q in match.get("queryParams") or []:
            got = query.get(q.get("name"))
            if got is None or (q.get("type", "Exact") == "Exact" and got != q.get("value")) or \
                    (q.get("type") == "RegularExpression" and not re.fullmatch(q.get("value", ""), got)):
                return False
        return True

    def _to_service(self, ns, name, count):
        if ("", "services", ns, name) not in self.s.objects:
            raise ApiError(404, "NotFound", f'services "{name}" not found', {"name": name, "kind": "services"})
        endpoints = []
        for key in self.s.keys_of(("discovery.k8s.io", "endpointslices"), ns):
            slice_ = self.s.objects[key]
            if (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) != name:
                continue
            for e in slice_.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") is not False and e.get("addresses"):
                    endpoints.append(e)
        if not endpoints:
            self._fail("NoReadyEndpoints", count)
            return
        start = self.rr.get((ns, name), 0)
        for i in range(count):
            e = endpoints[(start + i) % len(endpoints)]
            ref = e.get("targetRef") or {}
            pod = self.s.objects.get(("", "pods", ns, ref.get("name")))
            gone = pod is None or pod["metadata"]["uid"] != ref.get("uid") \
                or bool(pod["metadata"].get("deletionTimestamp"))
            if gone or (pod.get("status") or {}).get("podIP") != e["addresses"][0]:
                # The slice still lists a pod that is gone: the connection fails.
                self._fail("EndpointNotRunning", 1)
                continue
            self.out["served"][pod["metadata"]["name"]] += 1
            self.out["byService"][name] += 1
            containers = pod["spec"].get("containers") or [{}]
            self.out["byImage"][containers[0].get("image", "")] += 1
            deployment = self._deployment_of(pod)
            if deployment:
                self.out["byDeployment"][deployment] += 1
        self.rr[(ns, name)] = start + count

    def _deployment_of(self, pod):
        rs_key = self.s.by_uid.get(controller_uid(pod) or "")
        rs = self.s.objects.get(rs_key) if rs_key and rs_key[:2] == ("apps", "replicasets") else None
        if rs is None:
            return None
        d_key = self.s.by_uid.get(controller_uid(rs) or "")
        return d_key[3] if d_key and d_key[:2] == ("apps", "deployments") else None


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
        if t.scale_sub:
            resources.append({"name": f"{t.plural}/scale", "singularName": "", "namespaced": t.namespaced,
                              "group": "autoscaling", "version": "v1", "kind": "Scale",
                              "verbs": ["get", "patch", "update"]})
        if t.log_sub:
            resources.append({"name": f"{t.plural}/log", "singularName": "", "namespaced": t.namespaced,
                              "kind": t.kind, "verbs": ["get"]})
        if t.token_sub:
            resources.append({"name": f"{t.plural}/token", "singularName": "", "namespaced": t.namespaced,
                              "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                              "verbs": ["create"]})
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


def propagation(body, query):
    """DeleteOptions.propagationPolicy (body or query; orphanDependents is the old spelling)."""
    body = body if isinstance(body, dict) else {}
    policy = body.get("propagationPolicy") or query.get("propagationPolicy")
    if policy is None and (body.get("orphanDependents") is True or query.get("orphanDependents") == "true"):
        policy = "Orphan"
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                       f'value: "{policy}": supported values: "Foreground", "Background", "Orphan"')
    return policy


PATCH_TYPES = {APPLY_PATCH: "apply", MERGE_PATCH: "merge", JSON_PATCH: "json", STRATEGIC_PATCH: "strategic"}


def request_info(method, path, query) -> dict:
    """What the request log records, as Kubernetes' RequestInfo (what RBAC
    sees) names it: verb, group, version, resource (with its
    subresource), namespace, name."""
    segs = [s for s in path.split("/") if s]
    info = {"verb": method.lower(), "group": "", "version": "", "resource": "", "namespace": "", "name": ""}
    if segs[:1] == ["api"]:
        rest = segs[1:]
        info["version"] = rest[0] if rest else ""
        rest = rest[1:]
    elif segs[:1] == ["apis"]:
        rest = segs[1:]
        info["group"] = rest[0] if rest else ""
        info["version"] = rest[1] if len(rest) > 1 else ""
        rest = rest[2:]
    else:
        rest = []
    if not rest:
        # Discovery and /version.
        info["verb"] = "get" if method == "GET" else method.lower()
        return info
    if rest[0] == "namespaces" and len(rest) >= 2:
        info["namespace"] = rest[1]
        # namespaces/NS and namespaces/NS/status name the namespace itself.
        if len(rest) > 2 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            rest = rest[2:]
    info["resource"] = rest[0]
    if len(rest) > 1:
        info["name"] = rest[1]
    if len(rest) > 2:
        info["resource"] = f"{rest[0]}/{rest[2]}"
    watching = query.get("watch") in ("true", "1")
    if method == "GET":
        info["verb"] = "watch" if watching else ("get" if info["name"] else "list")
    else:
        info["verb"] = {"POST": "create", "PUT": "update", "PATCH": "patch",
                        "DELETE": "delete" if info["name"] else "deletecollection"}.get(method, method.lower())
    return info


# ---------------------------------------------------------------- authentication
#
# What kube-apiserver's authenticators do with the Authorization header.
# No header is the old insecure port (user system:admin in system:masters),
# so tests that send none keep their full access, unless the server runs
# with --require-auth (then it is 401, as with anonymous auth disabled). A
# bearer token is looked up among the static and ServiceAccount tokens a
# test registered (what a kubeconfig token or an exec credential plugin
# presents), else, with the `k8s-aws-v1.` prefix, checked as
# aws-iam-authenticator checks an EKS token. Every 401 says why in its
# message (a real server says only "Unauthorized").

User = collections.namedtuple("User", "name groups")
ADMIN = User("system:admin", ("system:masters", "system:authenticated"))
EKS_PREFIX = "k8s-aws-v1."
# aws-iam-authenticator's limits: the token size, and 15 minutes from
# X-Amz-Date whatever X-Amz-Expires says (STS honours no more).
EKS_MAX_TOKEN = 4096
EKS_LIFETIME = 15 * 60
EKS_PARAMETERS = ("action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
                  "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders")
STS_HOST_RE = re.compile(r"^sts(?:\.([a-z0-9-]+))?\.amazonaws\.com(?:\.cn)?$")
# aws-sigv4 signs SignableBody::Bytes(&[]) (aws eks get-token the same) as
# the empty body's hash; a presigner of S3 style sends UNSIGNED-PAYLOAD.
PAYLOAD_HASHES = (hashlib.sha256(b"").hexdigest(), "UNSIGNED-PAYLOAD")


def unauthorized(why: str) -> ApiError:
    return ApiError(401, "Unauthorized", f"Unauthorized: {why}")


def user_of(name: str, groups) -> User:
    """The user with its groups, system:authenticated last as Kubernetes adds it."""
    out: list[str] = []
    for g in list(groups) + ["system:authenticated"]:
        if g not in out:
            out.append(g)
    return User(name, tuple(out))


def authenticate(store, header: str | None, require_auth=False, any_sts_host=False) -> User:
    if header is None:
        if require_auth:
            raise unauthorized("no Authorization header (this server runs with --require-auth)")
        return ADMIN
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise unauthorized(f'Authorization scheme "{scheme}" is not supported: send "Bearer TOKEN"')
    if not token:
        raise unauthorized("an empty bearer token")
    with store.lock:
        known = store.tokens.get(token)
        clusters = clone(store.eks)
        any_sts_host = any_sts_host or store.eks_any_host
    if known is not None:
        return user_of(known["user"], known["groups"])
    if token.startswith(EKS_PREFIX):
        return eks_user(clusters, token, any_sts_host, time.time())
    raise unauthorized("unknown bearer token (register it with POST /_emulator/tokens)")


def _groups(body, field="groups") -> list[str]:
    groups = body.get(field) or []
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise bad_request(f'"{field}" must be a list of group names')
    return groups


def register_token(store, body) -> dict:
    """POST /_emulator/tokens: a static token for a user, or a
    ServiceAccount's token (the ServiceAccount object need not exist)."""
    token = body.get("token") or secrets.token_urlsafe(24)
    if not isinstance(token, str) or any(c.isspace() for c in token):
        raise bad_request('"token" must be a string without spaces')
    groups = _groups(body)
    account = body.get("serviceAccount")
    if account is not None:
        if body.get("user"):
            raise bad_request('give "user" or "serviceAccount", not both')
        if not isinstance(account, dict) or not account.get("namespace") or not account.get("name"):
            raise bad_request('"serviceAccount" needs {"namespace": NS, "name": NAME}')
        ns, name = account["namespace"], account["name"]
        user = f"system:serviceaccount:{ns}:{name}"
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"] + groups
    else:
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise bad_request('a token needs "user" (a user name) or "serviceAccount"')
    with store.lock:
        store.tokens[token] = {"user": user, "groups": groups}
    return {"token": token, "user": user, "groups": list(user_of(user, groups).groups)}


def request_token(store, api, rtype, ns, name, body) -> dict:
    """POST .../serviceaccounts/NAME/token (TokenRequest, as `kubectl
    create token` sends it): a bearer token for the ServiceAccount, which
    must exist. The token is opaque here, as a projected token is to its
    holder; it authenticates until the server stops."""
    api.get(rtype, ns, name)
    spec = (body or {}).get("spec") or {}
    seconds = spec.get("expirationSeconds") or 3600
    if not isinstance(seconds, int) or seconds < 600:
        raise ApiError(422, "Invalid", "spec.expirationSeconds: may not specify a duration less than 10 minutes")
    issued = register_token(store, {"serviceAccount": {"namespace": ns, "name": name}})
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_iso()},
            "spec": {"audiences": spec.get("audiences") or [], "expirationSeconds": seconds},
            "status": {"token": issued["token"], "expirationTimestamp": expires}}


def listed_tokens(store) -> list[dict]:
    with store.lock:
        return sorted(({"token": t, "user": e["user"], "groups": list(user_of(e["user"], e["groups"]).groups)}
                       for t, e in store.tokens.items()), key=lambda e: (e["user"], e["token"]))


def configure_eks(store, body) -> None:
    """POST /_emulator/eks: the access keys (as access entries map them)
    whose tokens for `cluster` authenticate. Keys add to the cluster's."""
    cluster, credentials = body.get("cluster"), body.get("credentials")
    if not isinstance(cluster, str) or not cluster:
        raise bad_request('"cluster" must be the cluster name the tokens are signed for (x-k8s-aws-id)')
    if not isinstance(credentials, dict):
        raise bad_request('"credentials" must map access key ids to {"secretAccessKey", "user", "groups"}')
    parsed = {}
    for akid, c in credentials.items():
        if not isinstance(c, dict) or not isinstance(c.get("secretAccessKey"), str) or not c["secretAccessKey"] \
                or not isinstance(c.get("user"), str) or not c["user"]:
            raise bad_request(f'credentials["{akid}"] needs "secretAccessKey" and "user"')
        if c.get("sessionToken") is not None and not isinstance(c["sessionToken"], str):
            raise bad_request(f'credentials["{akid}"].sessionToken must be a string')
        parsed[akid] = {"secretAccessKey": c["secretAccessKey"], "user": c["user"], "groups": _groups(c),
                        "sessionToken": c.get("sessionToken")}
    with store.lock:
        store.eks.setdefault(cluster, {}).update(parsed)
        if body.get("anyStsHost") is not None:
            store.eks_any_host = bool(body["anyStsHost"])


def eks_config(store, any_sts_host: bool) -> dict:
    """What GET /_emulator/eks answers (no secrets)."""
    with store.lock:
        return {"anyStsHost": any_sts_host or store.eks_any_host, "clusters": {
            cluster: {akid: {"user": c["user"], "groups": list(user_of(c["user"], c["groups"]).groups)}
                      for akid, c in sorted(keys.items())}
            for cluster, keys in sorted(store.eks.items())}}


def sigv4_canonical_query(pairs) -> str:
    """SigV4's canonical query string: names and values URI-encoded (RFC
    3986 unreserved characters as they are), sorted by encoded name, then
    value."""
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def sigv4_presigned_signature(secret, method, path, pairs, headers, payload_hash) -> str:
    """The AWS SigV4 signature of a presigned URL (query-string
    authentication): `pairs` are the query's decoded (name, value) pairs
    without X-Amz-Signature, `headers` the values of the signed headers by
    lowercase name."""
    params = {k.lower(): v for k, v in pairs}
    signed = params["x-amz-signedheaders"]
    scope = params["x-amz-credential"].split("/", 1)[1]
    canonical = "\n".join([method, path, sigv4_canonical_query(pairs),
                           "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed.split(";")),
                           signed, payload_hash])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["x-amz-date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _eks_url(token: str) -> str:
    body = token[len(EKS_PREFIX):]
    if len(token) > EKS_MAX_TOKEN:
        raise unauthorized(f"EKS token: token is too large ({len(token)} > {EKS_MAX_TOKEN} bytes)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", body):
        raise unauthorized("EKS token: not base64url without padding after k8s-aws-v1.")
    try:
        return base64.b64decode(body.translate(str.maketrans("-_", "+/")) + "=" * (-len(body) % 4),
                                validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise unauthorized("EKS token: the base64url after k8s-aws-v1. does not decode to a URL") from None


def _eks_params(url: str, any_host: bool):
    """aws-iam-authenticator's checks of the presigned URL (its words):
    the decoded pairs, the parameters by lowercase name, and the URL's parts."""
    parts = urlsplit(url)
    if not any_host:
        if parts.scheme != "https":
            raise unauthorized(f'EKS token: unexpected scheme "{parts.scheme}" in pre-signed URL')
        if not STS_HOST_RE.match(parts.netloc):
            raise unauthorized(f'EKS token: unexpected hostname "{parts.netloc}" in pre-signed URL '
                               "(an STS endpoint is expected; the server takes any with --eks-any-sts-host)")
    if parts.path != "/":
        raise unauthorized("EKS token: unexpected path in pre-signed URL")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.lower() not in EKS_PARAMETERS:
            raise unauthorized(f'EKS token: non-whitelisted query parameter "{key}"')
        if key.lower() in params:
            raise unauthorized("EKS token: query parameter with multiple values not supported")
        params[key.lower()] = value
    if params.get("action") != "GetCallerIdentity":
        raise unauthorized("EKS token: unexpected action parameter in pre-signed URL")
    if params.get("version") != "2011-06-15":
        raise unauthorized(f'EKS token: unexpected Version "{params.get("version", "")}" (STS is 2011-06-15)')
    if params.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise unauthorized("EKS token: X-Amz-Algorithm must be AWS4-HMAC-SHA256")
    signed = params.get("x-amz-signedheaders", "").split(";")
    if "x-k8s-aws-id" not in signed or "host" not in signed:
        raise unauthorized("EKS token: client did not sign the x-k8s-aws-id header in the pre-signed URL")
    for key in ("x-amz-credential", "x-amz-date", "x-amz-signature"):
        if not params.get(key):
            raise unauthorized(f"EKS token: no {key} parameter in pre-signed URL")
    return pairs, params, parts


def _eks_check_time(params, now: float) -> None:
    expires = params.get("x-amz-expires", "")
    if not expires.isdigit() or int(expires) > 900:
        raise unauthorized(f"EKS token: invalid X-Amz-Expires parameter in pre-signed URL: {expires}")
    try:
        date = datetime.datetime.strptime(params["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        raise unauthorized(f'EKS token: error parsing X-Amz-Date parameter {params["x-amz-date"]} into format '
                           "20060102T150405Z") from None
    if now > date + EKS_LIFETIME:
        raise unauthorized(f"EKS token: X-Amz-Date parameter is expired (15 minute expiration) "
                           f"{params['x-amz-date']}")
    if date > now + EKS_LIFETIME:
        # STS refuses a request time this far off (RequestTimeTooSkewed).
        raise unauthorized(f"EKS token: X-Amz-Date {params['x-amz-date']} is more than 15 minutes in the future")


def eks_user(clusters: dict, token: str, any_host: bool, now: float) -> User:
    """The user of an EKS token: the presigned URL passes
    aws-iam-authenticator's checks, and its SigV4 signature recomputes (as
    STS would) with the access key's configured secret and x-k8s-aws-id set
    to a configured cluster name, which is how a token of another cluster
    fails."""
    pairs, params, parts = _eks_params(_eks_url(token), any_host)
    _eks_check_time(params, now)
    scope = params["x-amz-credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or scope[3] != "sts":
        raise unauthorized("EKS token: X-Amz-Credential must be AKID/DATE/REGION/sts/aws4_request")
    akid, day, region = scope[0], scope[1], scope[2]
    if day != params["x-amz-date"][:8]:
        raise unauthorized(f"EKS token: the credential's date {day} is not X-Amz-Date's")
    host = STS_HOST_RE.match(parts.netloc)
    if not any_host and (host.group(1) or "us-east-1") != region:
        raise unauthorized(f'EKS token: signed for region "{region}" but sent to {parts.netloc} '
                           "(SignatureDoesNotMatch at STS)")
    keys = [(cluster, keys[akid]) for cluster, keys in sorted(clusters.items()) if akid in keys]
    if not keys:
        raise unauthorized(f"EKS token: InvalidClientTokenId: access key {akid} is not configured "
                           "(POST /_emulator/eks)")
    unsigned = [(k, v) for k, v in pairs if k.lower() != "x-amz-signature"]
    if not all(h in ("host", "x-k8s-aws-id") for h in params["x-amz-signedheaders"].split(";")):
        raise unauthorized(f'EKS token: SignatureDoesNotMatch: signed headers "{params["x-amz-signedheaders"]}" '
                           "name a header the authenticator does not send (only host and x-k8s-aws-id)")
    for cluster, cred in keys:
        if cred.get("sessionToken") is not None and params.get("x-amz-security-token") != cred["sessionToken"]:
            continue
        headers = {"host": parts.netloc, "x-k8s-aws-id": cluster}
        for payload_hash in PAYLOAD_HASHES:
            expected = sigv4_presigned_signature(cred["secretAccessKey"], "GET", "/", unsigned, headers,
                                                 payload_hash)
            if hmac.compare_digest(expected, params["x-amz-signature"]):
                return user_of(cred["user"], cred["groups"])
    names = ", ".join(f'"{c}"' for c, _ in keys)
    raise unauthorized(f"EKS token: SignatureDoesNotMatch: the signature of access key {akid} does not "
                       f"recompute with x-k8s-aws-id {names} (a wrong secret, a session token other than the "
                       "configured one, or a token for another cluster)")


# ---------------------------------------------------------------- RBAC
#
# The RBAC authorizer over the stored Roles, ClusterRoles and bindings,
# with Kubernetes' rules (rbac/validation: appliesTo, RuleAllows) and its
# 403 words. It sees a request as request_info names it. Discovery and
# the other public paths are allowed to every authenticated user, as the
# default system:discovery and system:public-info-viewer bindings do;
# system:masters may do everything.

PUBLIC_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/",
                "/openapi", "/openapi/*")


def subject_matches(subject, user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # A subject without a namespace is the binding's (RoleBindings only).
        return user.name == f"system:serviceaccount:{subject.get('namespace') or binding_ns}:{name}"
    return False


def _path_matches(patterns, path) -> bool:
    return any(p == "*" or p == path or (p.endswith("*") and path.startswith(p[:-1])) for p in patterns)


def rule_allows(rule, info, path) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and info["verb"] not in verbs:
        return False
    if not info["resource"]:
        return _path_matches(rule.get("nonResourceURLs") or [], path)
    groups = rule.get("apiGroups") or []
    if "*" not in groups and info["group"] not in groups:
        return False
    resource, _, sub = info["resource"].partition("/")
    if not any(r == "*" or r == info["resource"] or (sub and r == f"*/{sub}")
               for r in rule.get("resources") or []):
        return False
    # resourceNames only ever match a request that names its object: never
    # a create by POST, a list, a watch or a deletecollection.
    names = rule.get("resourceNames") or []
    return not names or info["name"] in names


def _bound_rules(store, user: User, ns: str, errors: list):
    """The rules of every binding whose subjects include the user: the
    ClusterRoleBindings, then the RoleBindings of `ns`. A missing role
    grants nothing and becomes the 403's `RBAC:` reason, as in Kubernetes."""
    def role_rules(ref, binding_ns):
        if ref.get("kind") == "ClusterRole":
            key, what = (RBAC_GROUP, "clusterroles", "", ref.get("name")), "clusterrole"
        else:
            key, what = (RBAC_GROUP, "roles", binding_ns, ref.get("name")), "role"
        role = store.objects.get(key)
        if role is None:
            errors.append(f'{what}.{RBAC_GROUP} "{ref.get("name")}" not found')
            return []
        return role.get("rules") or []

    bindings = [(key, "") for key in store.keys_of((RBAC_GROUP, "clusterrolebindings"))]
    if ns:
        bindings += [(key, ns) for key in store.keys_of((RBAC_GROUP, "rolebindings"), ns)]
    for key, binding_ns in bindings:
        binding = store.objects[key]
        subjects = binding.get("subjects") or []
        if any(isinstance(s, dict) and subject_matches(s, user, binding_ns) for s in subjects):
            yield from role_rules(binding.get("roleRef") or {}, binding_ns)


def authorize(store, user: User, info: dict, path: str) -> None:
    """Lets the request through or raises the 403 a real server answers."""
    if "system:masters" in user.groups:
        return
    if not info["resource"] and info["verb"] == "get" and _path_matches(PUBLIC_PATHS, path):
        return
    errors: list[str] = []
    with store.lock:
        for rule in _bound_rules(store, user, info["namespace"], errors):
            if isinstance(rule, dict) and rule_allows(rule, info, path):
                return
    raise forbidden(user, info, path, errors)


def forbidden(user: User, info: dict, path: str, errors: list) -> ApiError:
    """The 403 Status in the words of kube-apiserver's forbiddenMessage and
    NewForbidden."""
    if not info["resource"]:
        message = f'forbidden: User "{user.name}" cannot {info["verb"]} path "{path}"'
        details = None
    else:
        resource = info["resource"]
        where = f'in the namespace "{info["namespace"]}"' if info["namespace"] else "at the cluster scope"
        why = (f'User "{user.name}" cannot {info["verb"]} resource "{resource}" in API group "{info["group"]}" '
               f"{where}")
        plain = resource.split("/")[0]
        qualified = f'{plain}.{info["group"]}' if info["group"] else plain
        named = f' "{info["name"]}"' if info["name"] else ""
        message = f"{qualified}{named} is forbidden: {why}"
        details = {k: v for k, v in (("name", info["name"]), ("group", info["group"]), ("kind", plain)) if v}
    if errors:
        message += ": RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    return ApiError(403, "Forbidden", message, details)


# ---------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits
    # for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request. Real API servers (Go, AWS front ends) set TCP_NODELAY.
    disable_nagle_algorithm = True
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
        self._send_json_text(code, json.dumps(body))

    def _send_json_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)
        self._logged(code)

    def _logged(self, code):
        entry = getattr(self, "_log_entry", None)
        if entry is not None:
            entry["code"] = code
            # When the answer went out, so a bench can time a write.
            entry["seconds"] = round(time.time() - entry["at"], 6)

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._logged(code)

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
        self._log_entry = None
        try:
            if url.path.startswith("/_emulator/"):
                # Controls are the test's own: never authenticated nor authorized.
                return self._control(method, url.path, query, raw)
            info = request_info(method, url.path, query)
            user, refused = self._admit(info, url.path)
            self._log_entry = self._record(method, query, raw, info, user, refused is None)
            if refused is not None:
                raise refused
            self._stall(info)
            return self._api(method, url.path, query, raw)
        except ApiError as err:
            return self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # noqa: BLE001 - a bug here must answer, not hang the client
            import traceback
            traceback.print_exc()
            return self._error(ApiError(500, "InternalError", f"kubeapi emulator bug: {exc!r}"))

    def _stall(self, info):
        """Holds the request unanswered for a stall's seconds when one
        matches it (an API server that took the request and went quiet:
        an etcd hiccup, a load balancer dropping the answer)."""
        with STORE.requests_lock:
            stalls = STORE.stalls.get(info["namespace"], [])
            stall = next((s for s in stalls if s["verb"] == info["verb"] and s["resource"] == info["resource"]
                          and s["count"] > 0), None)
            if stall is None:
                return
            stall["count"] -= 1
            seconds = stall["seconds"]
        time.sleep(seconds)

    def _admit(self, info, path):
        """(user, None) when the request may go on, else (user or None, the
        401 or 403 to answer): authentication, then RBAC."""
        try:
            user = authenticate(STORE, self.headers.get("Authorization"), self.server.require_auth,
                                self.server.eks_any_sts_host)
        except ApiError as err:
            return None, err
        try:
            authorize(STORE, user, info, path)
        except ApiError as err:
            return user, err
        return user, None

    # -- control endpoints

    def _record(self, method, query, raw, info, user, allowed):
        """Appends the request to its namespace's log (GET /_emulator/requests),
        refused ones too."""
        info = dict(info)
        if info["verb"] == "create" and not info["name"]:
            try:
                body = json.loads(raw or b"null")
                info["name"] = ((body or {}).get("metadata") or {}).get("name") or ""
            except (ValueError, AttributeError):
                pass
        entry = dict(info, userAgent=self.headers.get("User-Agent") or "",
                     fieldManager=query.get("fieldManager"))
        if method == "PATCH":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            entry["patchType"] = PATCH_TYPES.get(content_type, content_type)
        if query.get("dryRun"):
            entry["dryRun"] = True
        if query.get("resourceVersion") is not None:
            entry["resourceVersion"] = query.get("resourceVersion")
        entry["user"] = user.name if user is not None else ""
        entry["allowed"] = allowed
        # Unix time the request arrived (`seconds`: how long it took).
        entry["at"] = time.time()
        STORE.log_request(info["namespace"], entry)
        return entry

    def _control(self, method, path, query, raw=b""):
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
                    store.floor = store.global_floor = store.rv
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
        if path == "/_emulator/requests" and method in ("GET", "DELETE"):
            ns = query.get("namespace", "")
            with store.requests_lock:
                log = list(store.requests.get(ns, ()))
                if method == "DELETE":
                    store.requests.pop(ns, None)
                    return self._send(200, {"cleared": len(log), "namespace": ns})
            return self._send(200, {"namespace": ns, "requests": log})
        if path == "/_emulator/stalls":
            ns = self._control_namespace(query)
            with store.requests_lock:
                stalls = store.stalls.setdefault(ns, [])
                if method == "POST":
                    body = self._control_body(raw)
                    verb, resource = body.get("verb"), body.get("resource")
                    seconds, count = body.get("seconds"), body.get("count", 1)
                    if not isinstance(verb, str) or not isinstance(resource, str) or not verb or not resource:
                        raise bad_request('a stall needs "verb" and "resource" (as the request log names them)')
                    if not isinstance(seconds, (int, float)) or not 0 < seconds <= 600:
                        raise bad_request('"seconds" must be a number in (0, 600]')
                    if not isinstance(count, int) or count < 1:
                        raise bad_request('"count" must be a whole number of requests, at least 1')
                    stalls.append({"verb": verb, "resource": resource, "seconds": seconds, "count": count})
                elif method == "DELETE":
                    stalls.clear()
                elif method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
                return self._send(200, {"namespace": ns, "stalls": [dict(s) for s in stalls]})
        if path == "/_emulator/images":
            ns = self._control_namespace(query)
            with store.lock:
                images = store.images.setdefault(ns, {})
                if method == "POST":
                    body = self._control_body(raw)
                    image, behaviour = body.get("image"), body.get("behaviour", "ready")
                    if not isinstance(image, str) or not image:
                        raise bad_request('an image behaviour needs "image": the exact image reference')
                    if behaviour not in IMAGE_BEHAVIOURS:
                        raise bad_request(f"behaviour must be one of {', '.join(IMAGE_BEHAVIOURS)}")
                    entry = {"image": image, "behaviour": behaviour}
                    if body.get("readyAfter") is not None:
                        entry["readyAfter"] = float(body["readyAfter"])
                    images[image] = entry
                    store.dirty.add(ns)
                elif method == "DELETE":
                    images.clear()
                    store.dirty.add(ns)
                elif method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
                listed = sorted(images.values(), key=lambda e: e["image"])
                return self._send(200, {"namespace": ns, "images": listed})
        if path == "/_emulator/settings":
            ns = self._control_namespace(query)
            with store.lock:
                if method == "POST":
                    body = self._control_body(raw)
                    mine = store.ns_settings.setdefault(ns, {})
                    for k, v in body.items():
                        if k not in DEFAULT_SETTINGS:
                            raise bad_request(f"unknown setting {k!r}: known are {', '.join(DEFAULT_SETTINGS)}")
                        if v is None:
                            mine.pop(k, None)
                        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                            mine[k] = float(v)
                        else:
                            raise bad_request(f"{k} must be a number of seconds (or null for the default)")
                    store.dirty.add(ns)
                elif method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
                return self._send(200, {"namespace": ns, "settings": store.settings_for(ns)})
        if path == "/_emulator/tokens":
            if method == "POST":
                return self._send(200, register_token(store, self._control_body(raw)))
            if method == "DELETE":
                user = query.get("user")
                with store.lock:
                    gone = [t for t, e in store.tokens.items() if user is None or e["user"] == user]
                    for t in gone:
                        del store.tokens[t]
                return self._send(200, {"cleared": len(gone)})
            if method == "GET":
                return self._send(200, {"tokens": listed_tokens(store)})
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
        if path == "/_emulator/eks":
            if method == "POST":
                configure_eks(store, self._control_body(raw))
            elif method == "DELETE":
                with store.lock:
                    if query.get("cluster"):
                        store.eks.pop(query["cluster"], None)
                    else:
                        store.eks.clear()
                        store.eks_any_host = False
            elif method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
            return self._send(200, eks_config(store, self.server.eks_any_sts_host))
        if path == "/_emulator/traffic" and method == "POST":
            ns = self._control_namespace(query)
            body = self._control_body(raw)
            with store.lock:
                return self._send(200, Traffic(store, ns).send(body))
        raise ApiError(404, "NotFound", f"no control endpoint {method} {path}; see tests/emulators/README.md")

    @staticmethod
    def _control_namespace(query):
        ns = query.get("namespace")
        if not ns:
            raise bad_request("this control is per namespace: add ?namespace=NS")
        return ns

    @staticmethod
    def _control_body(raw):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise bad_request("the control body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("the control body must be a JSON object")
        return body

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
            if sub and not ((sub == "status" and rtype.status_sub) or (sub == "scale" and rtype.scale_sub)
                            or (sub == "log" and rtype.log_sub) or (sub == "token" and rtype.token_sub)):
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
            if sub == "scale":
                if method == "GET":
                    return self._send(200, api.get_scale(rtype, ns, name))
                if method in ("PUT", "PATCH"):
                    content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                    code, out = api.write_scale(rtype, ns, name, method, content_type, raw, query, manager,
                                                dry_run)
                    return self._send(code, out)
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
            if sub == "token":
                if method != "POST":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
                return self._send(201, request_token(store, api, rtype, ns, name, self._json(raw)))
            if sub == "log":
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
                return self._send_text(200, api.pod_log(ns, name, query))
            if method == "GET" and name is None:
                if query.get("watch") in ("true", "1"):
                    watch = self._start_watch(rtype, ns, query)
                elif not partial and not any(query.get(k) for k in (
                        "limit", "continue", "resourceVersionMatch")) \
                        and query.get("resourceVersion", "") in ("", "0"):
                    return self._send_json_text(200, api.list_json(rtype, ns, query))
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
                code, out = api.delete(rtype, ns, name, body, dry_run, propagation(body, query))
                return self._send(code, out)
            elif method == "DELETE" and name is None:
                body = self._json(raw) if raw.strip() else {}
                listed = api.list(rtype, ns, {k: v for k, v in query.items()
                                              if k in ("labelSelector", "fieldSelector")})
                policy = propagation(body, query)
                for item in listed["items"]:
                    meta = item["metadata"]
                    # (a foreground cascade may have taken it already)
                    if api._key(rtype, meta.get("namespace"), meta["name"]) in store.objects:
                        api.delete(rtype, meta.get("namespace"), meta["name"], body, dry_run, policy)
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
        field_reqs = parse_field_selector(query.get("fieldSelector", ""), rtype)
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
            for _, obj in matching(store, rtype, ns, label_reqs, field_reqs):
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
            floor = store.floor_for(rtype, ns)
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
        self._logged(200)
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
                floor = store.floor_for(watch.rtype, watch.namespace)
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
    require_auth = False
    eks_any_sts_host = False


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
    parser.add_argument("--pod-ready-delay", type=float, default=DEFAULT_SETTINGS["podReadyDelay"],
                        help="seconds from a pod's creation to it being Ready "
                             "(per namespace: /_emulator/settings)")
    parser.add_argument("--endpoint-delay", type=float, default=DEFAULT_SETTINGS["endpointDelay"],
                        help="seconds for a pod or Service change to reach the EndpointSlice")
    parser.add_argument("--route-status-delay", type=float, default=DEFAULT_SETTINGS["routeStatusDelay"],
                        help="seconds for an HTTPRoute change to get its status")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--require-auth", action="store_true",
                        help="answer 401 to requests without an Authorization header (by default they are "
                             "system:admin in system:masters, as on the old insecure port)")
    parser.add_argument("--eks-any-sts-host", action="store_true",
                        help="accept EKS tokens presigned for any host and scheme, not only STS endpoints")
    args = parser.parse_args()
    STORE = Store(args.history, args.crd_establish_delay, {
        "podReadyDelay": args.pod_ready_delay, "endpointDelay": args.endpoint_delay,
        "routeStatusDelay": args.route_status_delay})
    SETTINGS["bookmark_interval"] = args.bookmark_interval
    Controllers(STORE).start()
    server = Server(("127.0.0.1", args.port), Handler)
    server.verbose = args.verbose
    server.require_auth = args.require_auth
    server.eks_any_sts_host = args.eks_any_sts_host
    print(f"kubeapi: listening on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
