#!/usr/bin/env python3
"""Tests of kubeapi.py's plain LIST (Python 3.11, stdlib only): the answer
it renders from its per-object cache must be the one the paged LIST builds
object by object, and must follow every write.

    python3 tests/emulators/test_kubeapi_list.py [-v]
"""

from __future__ import annotations

import json
import os
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_kubeapi_auth import Server  # noqa: E402

NS = "lists"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"


class PlainListTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        status, answer = cls.server.call("POST", "/api/v1/namespaces",
                                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        assert status == 201, answer

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def call(self, method, path, body=None, content_type="application/json", code=None):
        status, answer = self.server.call(method, path, body, content_type=content_type)
        if code is not None:
            self.assertEqual(status, code, answer)
        return answer

    def apply(self, name, data, manager, force=False):
        """A server-side apply (taking the fields from their managers when
        `force`), so objects have managedFields of several managers."""
        body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "labels": {"app": name}}, "data": data}).encode()
        req = urllib.request.Request(f"{self.server.url}{CONFIGMAPS}/{name}?fieldManager={manager}"
                                     + ("&force=true" if force else ""),
                                     data=body, method="PATCH")
        req.add_header("Content-Type", "application/apply-patch+yaml")
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.assertIn(resp.status, (200, 201))

    def paged(self, query=""):
        """Every item, one page of one at a time: the path that builds each
        object afresh."""
        items, token = [], ""
        while True:
            sep = "&" if query else ""
            page = self.call("GET", f"{CONFIGMAPS}?{query}{sep}limit=1" + (f"&continue={token}" if token else ""),
                             code=200)
            items += page["items"]
            token = page["metadata"].get("continue")
            if not token:
                return items

    def test_a_plain_list_is_the_paged_list_and_follows_writes(self):
        self.apply("a", {"k": "1"}, "alice")
        self.apply("b", {"k": "2"}, "bob")
        self.call("PUT", f"{CONFIGMAPS}/b?fieldManager=carol",
                  dict(self.call("GET", f"{CONFIGMAPS}/b", code=200), data={"k": "2", "extra": "x"}), code=200)
        plain = self.call("GET", CONFIGMAPS, code=200)
        self.assertEqual(plain["kind"], "ConfigMapList")
        self.assertEqual(plain["apiVersion"], "v1")
        self.assertTrue(plain["metadata"]["resourceVersion"])
        self.assertEqual(plain["items"], self.paged())
        managers = {m["manager"] for m in plain["items"][1]["metadata"]["managedFields"]}
        self.assertEqual(managers, {"bob", "carol"})
        self.assertEqual([i["kind"] for i in plain["items"]], ["ConfigMap", "ConfigMap"])

        # Listed once (rendered and kept), then written: the next list has
        # the new object, its version and its managers.
        before = plain["items"][0]
        self.apply("a", {"k": "3"}, "dave", force=True)
        again = self.call("GET", CONFIGMAPS, code=200)
        after = again["items"][0]
        self.assertEqual(after["data"]["k"], "3")
        self.assertNotEqual(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"])
        self.assertIn("dave", {m["manager"] for m in after["metadata"]["managedFields"]})
        self.assertEqual(after, self.call("GET", f"{CONFIGMAPS}/a", code=200))
        self.assertEqual(again["items"], self.paged())

        # Selectors, and a deletion.
        self.assertEqual([i["metadata"]["name"] for i in self.call("GET", f"{CONFIGMAPS}?labelSelector=app%3Db",
                                                                    code=200)["items"]], ["b"])
        self.assertEqual(self.call("GET", f"{CONFIGMAPS}?labelSelector=app%3Db", code=200)["items"],
                         self.paged("labelSelector=app%3Db"))
        self.call("DELETE", f"{CONFIGMAPS}/a", code=200)
        self.assertEqual([i["metadata"]["name"] for i in self.call("GET", CONFIGMAPS, code=200)["items"]], ["b"])


if __name__ == "__main__":
    unittest.main()
