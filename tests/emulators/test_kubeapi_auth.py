#!/usr/bin/env python3
"""Tests of kubeapi.py's authentication and RBAC (Python 3.11, stdlib only).

Starts its own kubeapi.py servers on free ports (one as the tests run it,
one with --require-auth), talks to them with urllib and exits non-zero on
any failure:

    python3 tests/emulators/test_kubeapi_auth.py [-v]

EKS tokens are minted here with an implementation of SigV4 presigning of
its own (what aws-sigv4 does for `aws eks get-token`), not kubeapi.py's;
kubeapi.py's signature function is also checked against the example of
AWS's SigV4 documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
KUBEAPI = os.path.join(HERE, "kubeapi.py")
RBAC = "rbac.authorization.k8s.io"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------- plumbing

class Server:
    """A kubeapi.py of the tests' own, on a free port."""

    def __init__(self, *flags):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, KUBEAPI, "--port", str(self.port), *flags],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.call("GET", "/_emulator/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kubeapi.py did not start: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()

    def call(self, method, path, body=None, token=None, auth=None, content_type="application/json"):
        """(status, JSON answer) of one request; `token` sends it as a
        bearer token, `auth` as the whole Authorization header."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if auth is not None:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _json(err.read())

    def watch_status(self, path, token):
        """The HTTP status of a watch request (the stream is not read)."""
        req = urllib.request.Request(self.url + path, method="GET")
        req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, None
        except urllib.error.HTTPError as err:
            return err.code, _json(err.read())


def _json(data: bytes):
    try:
        return json.loads(data or b"null")
    except ValueError:
        return data.decode(errors="replace")


def mint_eks_token(akid, secret, cluster, region="eu-west-1", when=None, expires=60, session_token=None,
                   host=None, payload_hash=EMPTY_SHA256):
    """What `aws eks get-token` / aws-sigv4 make: `k8s-aws-v1.` + unpadded
    base64url of an STS GetCallerIdentity URL presigned (SigV4, query
    string) with the signed header `x-k8s-aws-id: CLUSTER`."""
    host = host or f"sts.{region}.amazonaws.com"
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    day = amz_date[:8]
    scope = f"{day}/{region}/sts/aws4_request"
    params = [("Action", "GetCallerIdentity"), ("Version", "2011-06-15"),
              ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{akid}/{scope}"),
              ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)),
              ("X-Amz-SignedHeaders", "host;x-k8s-aws-id")]
    if session_token is not None:
        params.append(("X-Amz-Security-Token", session_token))
    query = "&".join(f"{k}={v}" for k, v in sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                                                   for k, v in params))
    canonical = "\n".join(["GET", "/", query, f"host:{host}\nx-k8s-aws-id:{cluster}\n", "host;x-k8s-aws-id",
                           payload_hash])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, "sts", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    url = f"https://{host}/?{query}&X-Amz-Signature={signature}"
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


SERVER: Server | None = None
COUNTER = [0]


def setUpModule():
    global SERVER
    SERVER = Server()
    unittest.addModuleCleanup(SERVER.stop)


def unique(prefix):
    COUNTER[0] += 1
    return f"{prefix}-{os.getpid()}-{COUNTER[0]}"


class AuthCase(unittest.TestCase):
    """Helpers over the shared server; admin calls send no Authorization."""

    def setUp(self):
        self.s = SERVER

    def ok(self, method, path, body=None, token=None, want=(200, 201), **kw):
        status, out = self.s.call(method, path, body, token=token, **kw)
        self.assertIn(status, want if isinstance(want, tuple) else (want,), f"{method} {path}: {out}")
        return out

    def denied(self, method, path, body=None, token=None, code=403, **kw):
        status, out = self.s.call(method, path, body, token=token, **kw)
        self.assertEqual(status, code, f"{method} {path}: {out}")
        self.assertEqual(out["kind"], "Status")
        self.assertEqual(out["reason"], "Forbidden" if code == 403 else "Unauthorized")
        self.assertEqual(out["code"], code)
        return out

    def namespace(self, prefix="auth"):
        ns = unique(prefix)
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        return ns

    def token(self, **body):
        return self.ok("POST", "/_emulator/tokens", body)

    def role(self, ns, name, rules, cluster=False):
        if cluster:
            return self.ok("POST", f"/apis/{RBAC}/v1/clusterroles", {"metadata": {"name": name}, "rules": rules})
        return self.ok("POST", f"/apis/{RBAC}/v1/namespaces/{ns}/roles",
                       {"metadata": {"name": name}, "rules": rules})

    def bind(self, ns, name, role_kind, role, subjects, cluster=False):
        body = {"metadata": {"name": name}, "subjects": subjects,
                "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role}}
        if cluster:
            return self.ok("POST", f"/apis/{RBAC}/v1/clusterrolebindings", body)
        return self.ok("POST", f"/apis/{RBAC}/v1/namespaces/{ns}/rolebindings", body)

    def requests(self, ns):
        return self.ok("GET", f"/_emulator/requests?namespace={ns}")["requests"]


# ---------------------------------------------------------------- the tests

class Compatibility(AuthCase):
    def test_no_header_is_system_admin(self):
        ns = self.namespace()
        self.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "c"}, "data": {"a": "b"}})
        self.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/c")
        self.ok("GET", f"/apis/{RBAC}/v1/clusterrolebindings")
        for path in ("/version", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", f"/apis/{RBAC}/v1"):
            self.ok("GET", path)
        log = self.requests(ns)
        self.assertTrue(log)
        for entry in log:
            self.assertEqual(entry["user"], "system:admin")
            self.assertIs(entry["allowed"], True)
            for field in ("verb", "group", "version", "resource", "namespace", "name", "userAgent",
                          "fieldManager", "code"):
                self.assertIn(field, entry)

    def test_an_unregistered_kubeconfig_token_is_refused_until_registered(self):
        ns = self.namespace()
        token = f"kubeconfig-{ns}"
        status, out = self.s.call("GET", f"/api/v1/namespaces/{ns}/pods", token=token)
        self.assertEqual(status, 401, out)
        self.ok("POST", "/_emulator/tokens", {"token": token, "user": f"admin-{ns}", "groups": ["system:masters"]})
        self.ok("GET", f"/api/v1/namespaces/{ns}/pods", token=token)

    def test_rbac_kinds_are_discovered(self):
        names = {r["name"]: r["namespaced"] for r in self.ok("GET", f"/apis/{RBAC}/v1")["resources"]}
        self.assertEqual(names, {"roles": True, "rolebindings": True, "clusterroles": False,
                                 "clusterrolebindings": False})


class RequireAuth(unittest.TestCase):
    def setUp(self):
        self.s = Server("--require-auth")
        self.addCleanup(self.s.stop)

    def test_no_header_is_401_and_a_token_works(self):
        status, out = self.s.call("GET", "/api/v1/namespaces")
        self.assertEqual(status, 401, out)
        self.assertEqual((out["kind"], out["reason"], out["code"]), ("Status", "Unauthorized", 401))
        self.assertTrue(out["message"].startswith("Unauthorized"), out)
        self.assertIn("--require-auth", out["message"])
        # Controls are never authenticated.
        status, tok = self.s.call("POST", "/_emulator/tokens", {"user": "root", "groups": ["system:masters"]})
        self.assertEqual(status, 200, tok)
        self.assertEqual(self.s.call("GET", "/api/v1/namespaces", token=tok["token"])[0], 200)
        self.assertEqual(self.s.call("GET", "/version")[0], 401)
        log = self.s.call("GET", "/_emulator/requests")[1]["requests"]
        self.assertEqual([(e["user"], e["allowed"], e["code"]) for e in log],
                         [("", False, 401), ("root", True, 200), ("", False, 401)])

    def test_reset_forgets_tokens(self):
        tok = self.s.call("POST", "/_emulator/tokens", {"user": "root", "groups": ["system:masters"]})[1]
        self.s.call("POST", "/_emulator/eks", {"cluster": "c", "credentials": {
            "AKID": {"secretAccessKey": "s", "user": "u"}}})
        self.assertEqual(self.s.call("POST", "/_emulator/reset")[0], 200)
        self.assertEqual(self.s.call("GET", "/api/v1/namespaces", token=tok["token"])[0], 401)
        self.assertEqual(self.s.call("GET", "/_emulator/tokens")[1], {"tokens": []})
        self.assertEqual(self.s.call("GET", "/_emulator/eks")[1]["clusters"], {})


class Authentication(AuthCase):
    def test_unknown_token_and_other_schemes_are_401(self):
        out = self.denied("GET", "/api/v1/namespaces", token="no-such-token", code=401)
        self.assertIn("unknown bearer token", out["message"])
        out = self.denied("GET", "/api/v1/namespaces", auth="Basic YWRtaW46YWRtaW4=", code=401)
        self.assertIn("Basic", out["message"])
        self.denied("GET", "/api/v1/namespaces", auth="Bearer ", code=401)

    def test_token_control(self):
        user = unique("dora")
        t = self.token(token=f"tok-{user}", user=user, groups=["g1"])
        self.assertEqual(t, {"token": f"tok-{user}", "user": user, "groups": ["g1", "system:authenticated"]})
        sa = self.token(serviceAccount={"namespace": "ns1", "name": "robot"})
        self.assertTrue(sa["token"])
        self.assertEqual(sa["user"], "system:serviceaccount:ns1:robot")
        self.assertEqual(sa["groups"], ["system:serviceaccounts", "system:serviceaccounts:ns1",
                                        "system:authenticated"])
        listed = self.ok("GET", "/_emulator/tokens")["tokens"]
        self.assertIn(t, listed)
        self.assertIn(sa, listed)
        self.assertEqual(self.ok("DELETE", f"/_emulator/tokens?user={user}"), {"cleared": 1})
        self.denied("GET", "/version", token=t["token"], code=401)
        self.ok("GET", "/version", token=sa["token"])
        status, out = self.s.call("POST", "/_emulator/tokens", {"groups": ["x"]})
        self.assertEqual(status, 400, out)

    def test_public_paths_for_any_user(self):
        user = unique("eve")
        t = self.token(user=user)["token"]
        for path in ("/version", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1"):
            self.ok("GET", path, token=t)
        out = self.denied("GET", "/metrics", token=t)
        self.assertEqual(out["message"], f'forbidden: User "{user}" cannot get path "/metrics"')


class Authorization(AuthCase):
    def test_no_bindings_is_403_in_kubernetes_words(self):
        ns = self.namespace()
        user = unique("alice")
        t = self.token(user=user, groups=["g1"])["token"]
        out = self.denied("GET", f"/api/v1/namespaces/{ns}/pods", token=t)
        self.assertEqual(out["message"], f'pods is forbidden: User "{user}" cannot list resource "pods" in API '
                                         f'group "" in the namespace "{ns}"')
        self.assertEqual(out["details"], {"kind": "pods"})
        out = self.denied("GET", f"/apis/{RBAC}/v1/clusterroles", token=t)
        self.assertEqual(out["message"], f'clusterroles.{RBAC} is forbidden: User "{user}" cannot list resource '
                                         f'"clusterroles" in API group "{RBAC}" at the cluster scope')
        out = self.denied("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web", token=t)
        self.assertEqual(out["message"], f'deployments.apps "web" is forbidden: User "{user}" cannot get resource '
                                         f'"deployments" in API group "apps" in the namespace "{ns}"')
        self.assertEqual(out["details"], {"name": "web", "group": "apps", "kind": "deployments"})
        # Requests on a namespace itself are in that namespace (RequestInfo).
        out = self.denied("GET", f"/api/v1/namespaces/{ns}", token=t)
        self.assertEqual(out["message"], f'namespaces "{ns}" is forbidden: User "{user}" cannot get resource '
                                         f'"namespaces" in API group "" in the namespace "{ns}"')

    def test_role_binding_to_a_service_account(self):
        ns, other = self.namespace(), self.namespace()
        sa = self.token(serviceAccount={"namespace": ns, "name": "reader"})
        self.role(ns, "cm-reader", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])
        # A ServiceAccount subject without a namespace is the binding's.
        self.bind(ns, "cm-reader", "Role", "cm-reader", [{"kind": "ServiceAccount", "name": "reader"}])
        self.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "c"}})
        self.ok("GET", f"/api/v1/namespaces/{ns}/configmaps", token=sa["token"])
        self.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/c", token=sa["token"])
        out = self.denied("GET", f"/api/v1/namespaces/{other}/configmaps", token=sa["token"])
        self.assertEqual(out["message"], f'configmaps is forbidden: User "system:serviceaccount:{ns}:reader" '
                                         f'cannot list resource "configmaps" in API group "" in the namespace '
                                         f'"{other}"')
        self.denied("GET", "/api/v1/configmaps", token=sa["token"])  # all namespaces: cluster scope
        out = self.denied("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "d"}},
                          token=sa["token"])
        self.assertEqual(out["message"], f'configmaps is forbidden: User "system:serviceaccount:{ns}:reader" '
                                         f'cannot create resource "configmaps" in API group "" in the namespace '
                                         f'"{ns}"')
        # A ClusterRole bound by a RoleBinding grants in that namespace only.
        cr = unique("secret-reader")
        self.role(None, cr, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}], cluster=True)
        self.bind(ns, "secrets", "ClusterRole", cr, [{"kind": "ServiceAccount", "name": "reader",
                                                      "namespace": ns}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/secrets", token=sa["token"])
        self.denied("GET", f"/api/v1/namespaces/{other}/secrets", token=sa["token"])

    def test_cluster_role_binding_is_cluster_wide(self):
        ns, other = self.namespace(), self.namespace()
        user = unique("bob")
        t = self.token(user=user)["token"]
        cr = unique("pod-lister")
        self.role(None, cr, [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list"]}],
                  cluster=True)
        self.bind(None, cr, "ClusterRole", cr, [{"kind": "User", "name": user}], cluster=True)
        for path in (f"/api/v1/namespaces/{ns}/pods", f"/api/v1/namespaces/{other}/pods", "/api/v1/pods",
                     "/api/v1/namespaces"):
            self.ok("GET", path, token=t)
        self.denied("GET", f"/api/v1/namespaces/{ns}", token=t)  # list, not get

    def test_resource_names_limit_get_but_not_list(self):
        ns = self.namespace()
        sa = self.token(serviceAccount={"namespace": ns, "name": "one"})["token"]
        for name in ("cm-a", "cm-b"):
            self.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": name}})
        self.role(ns, "one", [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cm-a"],
                               "verbs": ["get", "list", "watch", "create", "update", "delete",
                                         "deletecollection"]}])
        self.bind(ns, "one", "Role", "one", [{"kind": "ServiceAccount", "name": "one"}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/configmaps/cm-a", token=sa)
        self.ok("PUT", f"/api/v1/namespaces/{ns}/configmaps/cm-a", {"metadata": {"name": "cm-a"},
                                                                     "data": {"k": "v"}}, token=sa)
        self.denied("GET", f"/api/v1/namespaces/{ns}/configmaps/cm-b", token=sa)
        self.denied("GET", f"/api/v1/namespaces/{ns}/configmaps", token=sa)
        out, _ = self.s.watch_status(f"/api/v1/namespaces/{ns}/configmaps?watch=true", sa)
        self.assertEqual(out, 403)
        self.denied("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "cm-a"}}, token=sa)
        self.denied("DELETE", f"/api/v1/namespaces/{ns}/configmaps", token=sa)
        self.ok("DELETE", f"/api/v1/namespaces/{ns}/configmaps/cm-a", token=sa)

    def test_watch_needs_the_watch_verb(self):
        ns = self.namespace()
        sa = self.token(serviceAccount={"namespace": ns, "name": "w"})["token"]
        self.role(ns, "lister", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
        self.bind(ns, "lister", "Role", "lister", [{"kind": "ServiceAccount", "name": "w"}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/configmaps", token=sa)
        status, out = self.s.watch_status(f"/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1", sa)
        self.assertEqual(status, 403, out)
        self.assertIn('cannot watch resource "configmaps"', out["message"])
        self.ok("PATCH", f"/apis/{RBAC}/v1/namespaces/{ns}/roles/lister",
                {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}]},
                content_type="application/merge-patch+json")
        status, _ = self.s.watch_status(f"/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1", sa)
        self.assertEqual(status, 200)

    def test_a_scale_rule_allows_the_subresource_only(self):
        ns = self.namespace()
        self.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}})
        deployer = self.token(serviceAccount={"namespace": ns, "name": "deployer"})["token"]
        other = self.token(serviceAccount={"namespace": ns, "name": "other"})["token"]
        self.role(ns, "scaler", [{"apiGroups": ["apps"], "resources": ["deployments/scale"],
                                  "verbs": ["get", "patch"]}])
        self.bind(ns, "scaler", "Role", "scaler", [{"kind": "ServiceAccount", "name": "deployer"}])
        merge = "application/merge-patch+json"
        scale = f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale"
        self.ok("GET", scale, token=deployer)
        out = self.ok("PATCH", scale, {"spec": {"replicas": 2}}, token=deployer, content_type=merge)
        self.assertEqual(out["spec"]["replicas"], 2)
        out = self.denied("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web", {"spec": {"replicas": 3}},
                          token=deployer, content_type=merge)
        self.assertEqual(out["message"], f'deployments.apps "web" is forbidden: User "system:serviceaccount:{ns}:'
                                         f'deployer" cannot patch resource "deployments" in API group "apps" in '
                                         f'the namespace "{ns}"')
        out = self.denied("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web/status", token=deployer)
        self.assertIn('cannot get resource "deployments/status"', out["message"])
        out = self.denied("PATCH", scale, {"spec": {"replicas": 3}}, token=other, content_type=merge)
        self.assertEqual(out["message"], f'deployments.apps "web" is forbidden: User "system:serviceaccount:{ns}:'
                                         f'other" cannot patch resource "deployments/scale" in API group "apps" '
                                         f'in the namespace "{ns}"')
        self.assertEqual(out["details"], {"name": "web", "group": "apps", "kind": "deployments"})
        self.assertEqual(self.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")["spec"]["replicas"], 2)

    def test_wildcards(self):
        ns, other = self.namespace(), self.namespace()
        self.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}})
        everything = self.token(serviceAccount={"namespace": ns, "name": "all"})["token"]
        scaler = self.token(serviceAccount={"namespace": ns, "name": "scaler"})["token"]
        self.role(ns, "all", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
        self.bind(ns, "all", "Role", "all", [{"kind": "ServiceAccount", "name": "all"}])
        self.role(ns, "any-scale", [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]}])
        self.bind(ns, "any-scale", "Role", "any-scale", [{"kind": "ServiceAccount", "name": "scaler"}])
        self.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale", token=everything)
        self.ok("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "x"}}, token=everything)
        self.ok("GET", f"/apis/{RBAC}/v1/namespaces/{ns}/roles", token=everything)
        self.denied("GET", f"/api/v1/namespaces/{other}/configmaps", token=everything)
        self.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale", token=scaler)
        self.ok("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets/none/scale", token=scaler, want=404)
        self.denied("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web/status", token=scaler)
        self.denied("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web", token=scaler)

    def test_group_subjects(self):
        ns = self.namespace()
        carol = self.token(user=unique("carol"), groups=["team-a"])["token"]
        dave = self.token(user=unique("dave"), groups=["team-b"])["token"]
        sa = self.token(serviceAccount={"namespace": ns, "name": "any"})["token"]
        self.role(ns, "pods", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
        self.bind(ns, "team-a", "Role", "pods", [{"kind": "Group", "name": "team-a"}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/pods", token=carol)
        self.denied("GET", f"/api/v1/namespaces/{ns}/pods", token=dave)
        self.denied("GET", f"/api/v1/namespaces/{ns}/pods", token=sa)
        self.bind(ns, "all-sas", "Role", "pods", [{"kind": "Group", "name": f"system:serviceaccounts:{ns}"}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/pods", token=sa)
        self.bind(ns, "everyone", "Role", "pods", [{"kind": "Group", "name": "system:authenticated"}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/pods", token=dave)

    def test_system_masters_may_do_everything(self):
        ns = self.namespace()
        root = self.token(user=unique("root"), groups=["system:masters"])["token"]
        self.ok("GET", f"/apis/{RBAC}/v1/clusterrolebindings", token=root)
        self.ok("POST", f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "s"}}, token=root)
        self.ok("GET", "/metrics", token=root, want=404)  # allowed, then not served

    def test_a_missing_role_is_the_rbac_reason(self):
        ns = self.namespace()
        user = unique("frank")
        t = self.token(user=user)["token"]
        self.bind(ns, "dangling", "Role", "nope", [{"kind": "User", "name": user}])
        out = self.denied("GET", f"/api/v1/namespaces/{ns}/pods", token=t)
        self.assertEqual(out["message"], f'pods is forbidden: User "{user}" cannot list resource "pods" in API '
                                         f'group "" in the namespace "{ns}": RBAC: role.{RBAC} "nope" not found')

    def test_request_log_shows_user_and_allowed(self):
        ns = self.namespace()
        sa = self.token(serviceAccount={"namespace": ns, "name": "logged"})["token"]
        self.role(ns, "r", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
        self.bind(ns, "r", "Role", "r", [{"kind": "ServiceAccount", "name": "logged"}])
        self.ok("DELETE", f"/_emulator/requests?namespace={ns}")
        self.ok("GET", f"/api/v1/namespaces/{ns}/configmaps", token=sa)
        self.denied("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "no"}}, token=sa)
        self.denied("GET", f"/api/v1/namespaces/{ns}/configmaps", token="bad-token", code=401)
        log = self.requests(ns)
        user = f"system:serviceaccount:{ns}:logged"
        self.assertEqual([(e["verb"], e["name"], e["user"], e["allowed"], e["code"]) for e in log],
                         [("list", "", user, True, 200), ("create", "no", user, False, 403),
                          ("list", "", "", False, 401)])


class Validation(AuthCase):
    def invalid(self, path, body, field):
        status, out = self.s.call("POST", path, body)
        self.assertEqual(status, 422, out)
        self.assertEqual(out["reason"], "Invalid")
        self.assertIn(f"{field}:", out["message"])
        return out

    def test_rbac_objects_are_validated(self):
        ns = self.namespace()
        rb = f"/apis/{RBAC}/v1/namespaces/{ns}/rolebindings"
        crb = f"/apis/{RBAC}/v1/clusterrolebindings"
        self.invalid(rb, {"metadata": {"name": "x"}, "subjects": []}, "roleRef")
        out = self.invalid(rb, {"metadata": {"name": "x"}, "roleRef": {"apiGroup": RBAC, "kind": "Pod",
                                                                        "name": "r"}}, "roleRef.kind")
        self.assertEqual(out["message"], f'RoleBinding.{RBAC} "x" is invalid: roleRef.kind: Unsupported value: '
                                         '"Pod": supported values: "Role", "ClusterRole"')
        self.invalid(crb, {"metadata": {"name": unique("x")}, "roleRef": {"apiGroup": RBAC, "kind": "Role",
                                                                           "name": "r"}}, "roleRef.kind")
        self.invalid(crb, {"metadata": {"name": unique("x")}, "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole",
                                                                           "name": "r"},
                           "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}, "subjects[0].namespace")
        self.invalid(rb, {"metadata": {"name": "x"}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "r"},
                          "subjects": [{"kind": "Robot", "name": "sa"}]}, "subjects[0].kind")
        out = self.invalid(f"/apis/{RBAC}/v1/namespaces/{ns}/roles",
                           {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]},
                           "rules[0].verbs")
        self.assertEqual(out["message"], f'Role.{RBAC} "r" is invalid: rules[0].verbs: Required value: verbs '
                                         "must contain at least one value")
        self.invalid(f"/apis/{RBAC}/v1/namespaces/{ns}/roles",
                     {"metadata": {"name": "r"}, "rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]},
                     "rules[0].nonResourceURLs")
        # Names are path segments: `system:` names are fine.
        name = unique("system:test")
        self.ok("POST", f"/apis/{RBAC}/v1/clusterroles", {"metadata": {"name": name}, "rules": [
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]})
        # Defaulted subject apiGroup; roleRef is immutable.
        out = self.bind(ns, "b", "Role", "r", [{"kind": "User", "name": "u"}])
        self.assertEqual(out["subjects"], [{"kind": "User", "name": "u", "apiGroup": RBAC}])
        status, out = self.s.call("PATCH", f"{rb}/b", {"roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "s"}},
                                  content_type="application/merge-patch+json")
        self.assertEqual(status, 422, out)
        self.assertEqual(out["message"], f'RoleBinding.{RBAC} "b" is invalid: roleRef: Invalid value: '
                                         f'rbac.RoleRef{{APIGroup:"{RBAC}", Kind:"Role", Name:"s"}}: cannot change '
                                         "roleRef")
        self.ok("PATCH", f"{rb}/b", {"subjects": [{"kind": "Group", "name": "g"}]},
                content_type="application/merge-patch+json")

    def test_non_resource_rules(self):
        user = unique("scraper")
        t = self.token(user=user)["token"]
        cr = unique("metrics")
        self.role(None, cr, [{"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}], cluster=True)
        self.bind(None, cr, "ClusterRole", cr, [{"kind": "User", "name": user}], cluster=True)
        self.ok("GET", "/metrics", token=t, want=404)
        self.ok("GET", "/debug/pprof", token=t, want=404)
        self.denied("GET", "/other", token=t)


class Eks(AuthCase):
    def setUp(self):
        super().setUp()
        self.cluster = unique("eks-cluster")
        self.akid = "AKID" + unique("X").replace("-", "").upper()
        self.admin_key = self.akid + "ADMIN"
        self.user = f"arn:aws:iam::111122223333:user/{self.akid.lower()}"
        answer = self.ok("POST", "/_emulator/eks", {"cluster": self.cluster, "credentials": {
            self.akid: {"secretAccessKey": "s3cr3t/Key+x", "user": self.user, "groups": ["devs"]},
            self.admin_key: {"secretAccessKey": "adm1n", "user": "eks-admin", "groups": ["system:masters"],
                             "sessionToken": "FQoG/session+token=="}}})
        self.assertEqual(answer["clusters"][self.cluster][self.akid],
                         {"user": self.user, "groups": ["devs", "system:authenticated"]})

    def rejected(self, token, why):
        out = self.denied("GET", "/api/v1/namespaces", token=token, code=401)
        self.assertIn(why, out["message"])

    def test_sigv4_matches_the_aws_documentation_example(self):
        sys.path.insert(0, HERE)
        import kubeapi
        # AWS SigV4 documentation, "Authenticating Requests: Using Query
        # Parameters (AWS Signature Version 4)", the presigned GET example.
        pairs = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                 ("X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"),
                 ("X-Amz-Date", "20130524T000000Z"), ("X-Amz-Expires", "86400"), ("X-Amz-SignedHeaders", "host")]
        self.assertEqual(kubeapi.sigv4_presigned_signature(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "GET", "/test.txt", pairs,
            {"host": "examplebucket.s3.amazonaws.com"}, "UNSIGNED-PAYLOAD"),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")

    def test_a_valid_token_is_the_configured_user(self):
        ns = self.namespace()
        token = mint_eks_token(self.akid, "s3cr3t/Key+x", self.cluster)
        out = self.denied("GET", f"/api/v1/namespaces/{ns}/pods", token=token)
        self.assertIn(f'User "{self.user}" cannot list resource "pods"', out["message"])
        self.role(ns, "devs", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
        self.bind(ns, "devs", "Role", "devs", [{"kind": "Group", "name": "devs"}])
        self.ok("GET", f"/api/v1/namespaces/{ns}/pods", token=token)
        self.assertEqual(self.requests(ns)[-1]["user"], self.user)
        # The global endpoint (us-east-1), UNSIGNED-PAYLOAD, a session token.
        admin = mint_eks_token(self.admin_key, "adm1n", self.cluster, region="us-east-1",
                               host="sts.amazonaws.com", payload_hash="UNSIGNED-PAYLOAD",
                               session_token="FQoG/session+token==", expires=900)
        self.ok("GET", f"/apis/{RBAC}/v1/clusterroles", token=admin)
        self.ok("GET", "/api/v1/namespaces", token=mint_eks_token(self.akid, "s3cr3t/Key+x", self.cluster,
                                                                   when=time.time() - 14 * 60), want=403)

    def test_bad_tokens_are_401_with_the_reason(self):
        secret = "s3cr3t/Key+x"
        self.rejected(mint_eks_token(self.akid, secret, "another-cluster"), "SignatureDoesNotMatch")
        self.rejected(mint_eks_token(self.akid, "wrong", self.cluster), "SignatureDoesNotMatch")
        self.rejected(mint_eks_token(self.akid, secret, self.cluster, when=time.time() - 16 * 60),
                      "X-Amz-Date parameter is expired (15 minute expiration)")
        self.rejected(mint_eks_token(self.akid, secret, self.cluster, expires=901), "invalid X-Amz-Expires")
        self.rejected("k8s-aws-v1.!!!garbage!!!", "base64url")
        self.rejected("k8s-aws-v1." + base64.urlsafe_b64encode(b"\xff\xfe not a url").decode().rstrip("="),
                      "does not decode")
        no_action = base64.urlsafe_b64encode(b"https://sts.amazonaws.com/").decode().rstrip("=")
        self.rejected("k8s-aws-v1." + no_action, "unexpected action")
        self.rejected(mint_eks_token("AKIDUNKNOWN", secret, self.cluster), "InvalidClientTokenId")
        self.rejected(mint_eks_token(self.akid, secret, self.cluster, host="evil.example.com"),
                      "unexpected hostname")
        self.rejected(mint_eks_token(self.akid, secret, self.cluster, host="sts.us-west-2.amazonaws.com"),
                      "signed for region")
        self.rejected(mint_eks_token(self.admin_key, "adm1n", self.cluster, session_token="other"),
                      "SignatureDoesNotMatch")
        self.rejected(mint_eks_token(self.admin_key, "adm1n", self.cluster), "SignatureDoesNotMatch")
        token = mint_eks_token(self.akid, secret, self.cluster)
        self.ok("GET", "/version", token=token)
        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        self.denied("GET", "/version", token=tampered, code=401)

    def test_any_sts_host_flag(self):
        server = Server("--eks-any-sts-host")
        self.addCleanup(server.stop)
        server.call("POST", "/_emulator/eks", {"cluster": "c", "credentials": {
            "AKIDLOCAL": {"secretAccessKey": "s", "user": "local", "groups": ["system:masters"]}}})
        token = mint_eks_token("AKIDLOCAL", "s", "c", host="127.0.0.1:4566")
        self.assertEqual(server.call("GET", "/api/v1/namespaces", token=token)[0], 200)
        self.assertEqual(server.call("GET", "/_emulator/eks")[1]["anyStsHost"], True)


if __name__ == "__main__":
    unittest.main()
