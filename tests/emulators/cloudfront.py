#!/usr/bin/env python3
"""CloudFront continuous-deployment emulator (REST-XML, API version 2020-05-31).

Serves the subset of CloudFront that deployctl's CloudFront adapter uses,
on the real wire protocol, so the real aws-sdk-rust client is what the tests
exercise. moto 5.2.5 has no CopyDistribution, no continuous deployment
policies and no UpdateDistributionWithStagingConfig, and its ETags never
change (a stale If-Match is accepted); see tests/emulators/README.md.

Python standard library only. Usage: cloudfront.py --port N

DistributionConfig is stored as an opaque XML subtree; only the fields with
semantics here are read or written: CallerReference, Comment, Enabled,
Staging, ContinuousDeploymentPolicyId, Aliases.

Control endpoints (JSON, outside the AWS API):
  GET  /_emulator/health                  -> 200 {"ok": true}
  POST /_emulator/reset                   -> forget everything (all accounts)
  POST /_emulator/config                  -> {"deploySeconds": s, "deployGets": n}
       for the account in x-moto-account-id (or "account" in the body);
       a write leaves a distribution InProgress until both n GETs of it have
       been answered and s seconds have passed. {"deployNow": true} finishes
       every propagation in progress in the account at once.
  GET  /_emulator/state                   -> the account's distributions and
       policies as JSON (for tests to assert on).
  GET  /_emulator/calls                   -> {"calls": [{operation, method, path,
       status}, ...]}: every CloudFront API call the account made, in order
       (operation: the API's name, which is also its IAM action's).
  DELETE /_emulator/calls                 -> forget the account's calls.
"""

import argparse
import copy
import datetime
import json
import random
import string
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NS = "http://cloudfront.amazonaws.com/doc/2020-05-31/"
PREFIX = "/2020-05-31"
DEFAULT_ACCOUNT = "123456789012"
MAX_WEIGHT = 0.15
CD_HEADER_PREFIX = "aws-cf-cd-"

LOCK = threading.Lock()
ACCOUNTS = {}


class ApiError(Exception):
    def __init__(self, status, code, message, sender=True):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.sender = sender


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(first, length=14):
    alphabet = string.ascii_uppercase + string.digits
    return first + "".join(random.choice(alphabet) for _ in range(length - 1))


def new_etag():
    return "E" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(13))


class Account:
    def __init__(self, account_id):
        self.id = account_id
        self.distributions = {}
        self.policies = {}
        self.tags = {}
        self.deploy_seconds = 0.0
        self.deploy_gets = 1
        # Every API call, so tests can prove a command only read.
        self.calls = []


def account_for(account_id):
    account = ACCOUNTS.get(account_id)
    if account is None:
        account = Account(account_id)
        ACCOUNTS[account_id] = account
    return account


# ---- XML helpers -------------------------------------------------------------

def strip_ns(element):
    for node in element.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{"):
            node.tag = node.tag.split("}", 1)[1]
    return element


def parse_body(body, root_name):
    if not body:
        raise ApiError(400, "MissingBody", "This operation requires a body. Ensure that the body is present and the Content-Type header is set.")
    try:
        root = strip_ns(ET.fromstring(body))
    except ET.ParseError as error:
        raise ApiError(400, "MalformedXML", f"The XML you provided was not well-formed: {error}")
    if root.tag != root_name:
        raise ApiError(400, "MalformedXML", f"expected root element {root_name}, got {root.tag}")
    return root


def text(element, path, default=None):
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def set_text(element, name, value):
    found = element.find(name)
    if found is None:
        found = ET.SubElement(element, name)
    found.text = value


def parse_bool(value, field):
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    raise ApiError(400, "InvalidArgument", f"{field} must be true or false, got {value!r}")


def sub(parent, name, value=None):
    element = ET.SubElement(parent, name)
    if value is not None:
        element.text = value
    return element


def serialize(root):
    root.set("xmlns", NS)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8")


# ---- Distributions -------------------------------------------------------------

class Distribution:
    def __init__(self, account, config, staging):
        self.id = new_id("E")
        self.arn = f"arn:aws:cloudfront::{account.id}:distribution/{self.id}"
        self.domain = "d" + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(13)) + ".cloudfront.net"
        self.config = config
        self.staging = staging
        self.etag = new_etag()
        self.last_modified = now_iso()
        self.status = "InProgress"
        self.ready_at = 0.0
        self.gets_left = 0

    def enabled(self):
        return text(self.config, "Enabled") == "true"

    def policy_id(self):
        return text(self.config, "ContinuousDeploymentPolicyId", "") or ""

    def changed(self, account):
        """Every write: a new ETag, InProgress until the account's deploy rule is met."""
        self.etag = new_etag()
        self.last_modified = now_iso()
        self.status = "InProgress"
        self.ready_at = time.monotonic() + account.deploy_seconds
        self.gets_left = account.deploy_gets
        self.settle()

    def settle(self):
        if self.status == "InProgress" and self.gets_left <= 0 and time.monotonic() >= self.ready_at:
            self.status = "Deployed"

    def read(self):
        """A GET: counts toward deployment, then reports the status."""
        self.settle()
        if self.status == "InProgress" and self.gets_left > 0:
            self.gets_left -= 1
            return
        self.settle()

    def element(self):
        root = ET.Element("Distribution")
        sub(root, "Id", self.id)
        sub(root, "ARN", self.arn)
        sub(root, "Status", self.status)
        sub(root, "LastModifiedTime", self.last_modified)
        sub(root, "InProgressInvalidationBatches", "0")
        sub(root, "DomainName", self.domain)
        signers = sub(root, "ActiveTrustedSigners")
        sub(signers, "Enabled", "false")
        sub(signers, "Quantity", "0")
        groups = sub(root, "ActiveTrustedKeyGroups")
        sub(groups, "Enabled", "false")
        sub(groups, "Quantity", "0")
        root.append(copy.deepcopy(self.config))
        return root


def validate_config(config):
    for field in ("CallerReference", "Comment", "Enabled"):
        if config.find(field) is None:
            raise ApiError(400, "InvalidArgument", f"DistributionConfig.{field} is required")
    if config.find("Origins") is None or config.find("DefaultCacheBehavior") is None:
        raise ApiError(400, "InvalidArgument", "DistributionConfig needs Origins and DefaultCacheBehavior")
    parse_bool(text(config, "Enabled"), "Enabled")
    origins = config.find("Origins")
    quantity = text(origins, "Quantity")
    items = origins.findall("Items/Origin")
    if quantity is None or int(quantity) != len(items):
        raise ApiError(400, "InconsistentQuantities", "Origins.Quantity does not match the number of Origins.Items")
    if not items:
        raise ApiError(400, "InvalidArgument", "a distribution needs at least one origin")
    ids = {text(origin, "Id") for origin in items}
    # Cache behaviors may target an origin group as well as an origin.
    ids |= {text(group, "Id") for group in config.findall("OriginGroups/Items/OriginGroup")}
    target = text(config, "DefaultCacheBehavior/TargetOriginId")
    if target not in ids:
        raise ApiError(404, "NoSuchOrigin", f"DefaultCacheBehavior.TargetOriginId {target!r} names no origin")
    for behavior in config.findall("CacheBehaviors/Items/CacheBehavior"):
        target = text(behavior, "TargetOriginId")
        if target not in ids:
            raise ApiError(404, "NoSuchOrigin", f"CacheBehavior {text(behavior, 'PathPattern')!r}: TargetOriginId {target!r} names no origin")
    if len(text(config, "Comment", "")) > 128:
        raise ApiError(400, "InvalidArgument", "Comment is longer than 128 characters")


def is_staging_config(config):
    value = text(config, "Staging")
    return value is not None and parse_bool(value, "Staging")


def check_if_match(headers, etag):
    supplied = headers.get("If-Match")
    if not supplied:
        raise ApiError(400, "InvalidIfMatchVersion", "The If-Match version is missing or not valid for the resource.")
    if supplied.strip() != etag:
        raise ApiError(412, "PreconditionFailed", "The precondition given in one or more of the request-header fields evaluated to false.")


def get_distribution(account, dist_id):
    dist = account.distributions.get(dist_id)
    if dist is None:
        raise ApiError(404, "NoSuchDistribution", "The specified distribution does not exist.")
    return dist


def get_policy(account, policy_id):
    policy = account.policies.get(policy_id)
    if policy is None:
        raise ApiError(404, "NoSuchContinuousDeploymentPolicy", "The continuous deployment policy does not exist.")
    return policy


def distribution_by_domain(account, domain):
    for dist in account.distributions.values():
        if dist.domain == domain:
            return dist
    return None


def create_distribution(account, headers, body):
    config = parse_body(body, "DistributionConfig")
    validate_config(config)
    if is_staging_config(config):
        raise ApiError(400, "InvalidArgument", "Staging distributions are created with CopyDistribution, not CreateDistribution.")
    if text(config, "ContinuousDeploymentPolicyId"):
        raise ApiError(400, "InvalidArgument", "A new distribution cannot reference a continuous deployment policy.")
    reference = text(config, "CallerReference")
    for existing in account.distributions.values():
        if text(existing.config, "CallerReference") == reference:
            raise ApiError(409, "DistributionAlreadyExists", f"The caller reference that you are using to create a distribution is associated with another distribution. Already exists: {existing.id}")
    dist = Distribution(account, config, staging=False)
    dist.changed(account)
    account.distributions[dist.id] = dist
    return 201, dist.element(), {"ETag": dist.etag, "Location": f"https://cloudfront.amazonaws.com{PREFIX}/distribution/{dist.id}"}


def update_distribution(account, dist, headers, body):
    check_if_match(headers, dist.etag)
    config = parse_body(body, "DistributionConfig")
    validate_config(config)
    if text(config, "CallerReference") != text(dist.config, "CallerReference"):
        raise ApiError(400, "IllegalUpdate", "CallerReference cannot be changed.")
    if is_staging_config(config) != dist.staging:
        raise ApiError(400, "IllegalUpdate", "The Staging flag of a distribution cannot be changed.")
    if dist.staging and config.find("Aliases/Items/CNAME") is not None:
        raise ApiError(400, "IllegalUpdate", "A staging distribution cannot have alternate domain names (CNAMEs).")
    new_policy = text(config, "ContinuousDeploymentPolicyId", "") or ""
    if new_policy and new_policy != dist.policy_id():
        if dist.staging:
            raise ApiError(400, "IllegalUpdate", "A staging distribution cannot have a continuous deployment policy.")
        policy = get_policy(account, new_policy)
        for other in account.distributions.values():
            if other is not dist and other.policy_id() == new_policy:
                raise ApiError(409, "ContinuousDeploymentPolicyInUse", f"The continuous deployment policy is associated with distribution {other.id}.")
        staging = distribution_by_domain(account, policy.staging_domain())
        if staging is None or not staging.staging:
            raise ApiError(400, "InvalidArgument", "The continuous deployment policy's staging distribution DNS name is not a staging distribution of this account.")
        staging.settle()
        if staging.status != "Deployed":
            raise ApiError(400, "InvalidArgument", f"The staging distribution {staging.id} is not yet deployed (status {staging.status}); wait until it is Deployed before attaching the policy.")
    dist.config = config
    dist.changed(account)
    return 200, dist.element(), {"ETag": dist.etag}


def delete_distribution(account, dist, headers):
    check_if_match(headers, dist.etag)
    dist.settle()
    if dist.enabled() or dist.status != "Deployed":
        raise ApiError(409, "DistributionNotDisabled", "The distribution you are trying to delete has not been disabled.")
    if dist.policy_id():
        raise ApiError(409, "ResourceInUse", "The distribution still references a continuous deployment policy; remove it first.")
    if dist.staging:
        for policy in account.policies.values():
            if policy.staging_domain() == dist.domain:
                raise ApiError(409, "ResourceInUse", f"The staging distribution is referenced by continuous deployment policy {policy.id}.")
    del account.distributions[dist.id]
    account.tags.pop(dist.arn, None)
    return 204, None, {}


def copy_distribution(account, primary, headers, body):
    check_if_match(headers, primary.etag)
    request = parse_body(body, "CopyDistributionRequest")
    reference = text(request, "CallerReference")
    if not reference:
        raise ApiError(400, "InvalidArgument", "CallerReference is required.")
    staging_header = headers.get("Staging", "false")
    staging = parse_bool(staging_header, "Staging header")
    enabled = parse_bool(text(request, "Enabled", "true"), "Enabled")
    if primary.staging:
        raise ApiError(400, "InvalidArgument", "A staging distribution cannot be copied.")
    for existing in account.distributions.values():
        if text(existing.config, "CallerReference") == reference:
            raise ApiError(409, "DistributionAlreadyExists", f"The caller reference that you are using to create a distribution is associated with another distribution. Already exists: {existing.id}")
    staging_count = sum(1 for d in account.distributions.values() if d.staging)
    if staging and staging_count >= 20:
        raise ApiError(400, "TooManyDistributions", "Maximum number of staging distributions per account (20) reached.")
    config = copy.deepcopy(primary.config)
    set_text(config, "CallerReference", reference)
    set_text(config, "Enabled", "true" if enabled else "false")
    set_text(config, "Staging", "true" if staging else "false")
    set_text(config, "ContinuousDeploymentPolicyId", "")
    if staging:
        aliases = config.find("Aliases")
        if aliases is not None:
            config.remove(aliases)
        aliases = sub(config, "Aliases")
        sub(aliases, "Quantity", "0")
    dist = Distribution(account, config, staging=staging)
    dist.changed(account)
    account.distributions[dist.id] = dist
    return 201, dist.element(), {"ETag": dist.etag, "Location": f"https://cloudfront.amazonaws.com{PREFIX}/distribution/{dist.id}"}


# Fields of the primary that promotion keeps (the rest comes from staging).
KEPT_ON_PROMOTION = ("CallerReference", "Aliases", "ContinuousDeploymentPolicyId", "Staging")


def promote_staging(account, primary, query, headers):
    staging_id = (query.get("StagingDistributionId") or [""])[0]
    staging = get_distribution(account, staging_id)
    supplied = headers.get("If-Match")
    if not supplied:
        raise ApiError(400, "InvalidIfMatchVersion", "The If-Match version is missing or not valid for the resource.")
    parts = [part.strip() for part in supplied.split(",")]
    if len(parts) != 2:
        raise ApiError(400, "InvalidIfMatchVersion", "If-Match must be '<primary ETag>, <staging ETag>'.")
    if parts[0] != primary.etag or parts[1] != staging.etag:
        raise ApiError(412, "PreconditionFailed", "The precondition given in one or more of the request-header fields evaluated to false.")
    if not staging.staging:
        raise ApiError(400, "InvalidArgument", f"{staging.id} is not a staging distribution.")
    policy_id = primary.policy_id()
    if not policy_id or policy_id not in account.policies:
        raise ApiError(400, "InvalidArgument", "The primary distribution has no continuous deployment policy.")
    policy = account.policies[policy_id]
    if policy.staging_domain() != staging.domain:
        raise ApiError(400, "InvalidArgument", "The primary distribution's continuous deployment policy does not point at this staging distribution.")
    config = copy.deepcopy(staging.config)
    for field in KEPT_ON_PROMOTION:
        old = config.find(field)
        if old is not None:
            config.remove(old)
        kept = primary.config.find(field)
        if kept is not None:
            config.append(copy.deepcopy(kept))
    primary.config = config
    primary.changed(account)
    # "This action will disable the continuous deployment policy."
    if policy.enabled():
        set_text(policy.config, "Enabled", "false")
        policy.changed()
    return 200, primary.element(), {"ETag": primary.etag}


# ---- Continuous deployment policies ------------------------------------------

class Policy:
    def __init__(self, config):
        self.id = str(uuid.uuid4())
        self.config = config
        self.etag = new_etag()
        self.last_modified = now_iso()

    def enabled(self):
        return text(self.config, "Enabled") == "true"

    def staging_domain(self):
        return text(self.config, "StagingDistributionDnsNames/Items/DnsName", "")

    def changed(self):
        self.etag = new_etag()
        self.last_modified = now_iso()

    def element(self):
        root = ET.Element("ContinuousDeploymentPolicy")
        sub(root, "Id", self.id)
        sub(root, "LastModifiedTime", self.last_modified)
        root.append(copy.deepcopy(self.config))
        return root


def validate_policy(account, config, policy_id=None):
    parse_bool(text(config, "Enabled"), "Enabled")
    names = config.find("StagingDistributionDnsNames")
    if names is None:
        raise ApiError(400, "InvalidArgument", "StagingDistributionDnsNames is required.")
    items = [item.text.strip() for item in names.findall("Items/DnsName") if item.text]
    quantity = text(names, "Quantity")
    if quantity is None or int(quantity) != len(items):
        raise ApiError(400, "InconsistentQuantities", "StagingDistributionDnsNames.Quantity does not match the number of items.")
    if len(items) != 1:
        raise ApiError(400, "InvalidArgument", "A continuous deployment policy names exactly one staging distribution.")
    staging = distribution_by_domain(account, items[0])
    if staging is None or not staging.staging:
        raise ApiError(400, "InvalidArgument", f"{items[0]} is not the domain name of a staging distribution in this account.")
    for other in account.policies.values():
        if other.id != policy_id and other.staging_domain() == items[0]:
            raise ApiError(409, "StagingDistributionInUse", f"The staging distribution is already used by continuous deployment policy {other.id}.")
    traffic = config.find("TrafficConfig")
    if traffic is None:
        raise ApiError(400, "InvalidArgument", "TrafficConfig is required.")
    kind = text(traffic, "Type")
    if kind == "SingleWeight":
        weight_text = text(traffic, "SingleWeightConfig/Weight")
        try:
            weight = float(weight_text)
        except (TypeError, ValueError):
            raise ApiError(400, "InvalidArgument", "SingleWeightConfig.Weight must be a number.")
        if not 0.0 <= weight <= MAX_WEIGHT:
            raise ApiError(400, "InvalidArgument", f"SingleWeightConfig.Weight must be between 0 and {MAX_WEIGHT}, got {weight_text}.")
        sticky = traffic.find("SingleWeightConfig/SessionStickinessConfig")
        if sticky is not None:
            try:
                idle = int(text(sticky, "IdleTTL"))
                maximum = int(text(sticky, "MaximumTTL"))
            except (TypeError, ValueError):
                raise ApiError(400, "InvalidArgument", "SessionStickinessConfig needs integer IdleTTL and MaximumTTL.")
            if not (300 <= idle <= 3600 and 300 <= maximum <= 3600 and idle <= maximum):
                raise ApiError(400, "InvalidArgument", "Session stickiness TTLs must be within 300..3600 seconds and IdleTTL <= MaximumTTL.")
    elif kind == "SingleHeader":
        header = text(traffic, "SingleHeaderConfig/Header", "")
        value = text(traffic, "SingleHeaderConfig/Value", "")
        if not header.lower().startswith(CD_HEADER_PREFIX) or not value:
            raise ApiError(400, "InvalidArgument", f"SingleHeaderConfig needs a Header starting with {CD_HEADER_PREFIX} and a Value.")
    else:
        raise ApiError(400, "InvalidArgument", f"TrafficConfig.Type must be SingleWeight or SingleHeader, got {kind!r}.")


def create_policy(account, body):
    config = parse_body(body, "ContinuousDeploymentPolicyConfig")
    validate_policy(account, config)
    if len(account.policies) >= 20:
        raise ApiError(400, "TooManyContinuousDeploymentPolicies", "Maximum number of continuous deployment policies per account (20) reached.")
    policy = Policy(config)
    account.policies[policy.id] = policy
    return 201, policy.element(), {"ETag": policy.etag, "Location": f"https://cloudfront.amazonaws.com{PREFIX}/continuous-deployment-policy/{policy.id}"}


def update_policy(account, policy, headers, body):
    check_if_match(headers, policy.etag)
    config = parse_body(body, "ContinuousDeploymentPolicyConfig")
    validate_policy(account, config, policy.id)
    policy.config = config
    policy.changed()
    return 200, policy.element(), {"ETag": policy.etag}


def delete_policy(account, policy, headers):
    check_if_match(headers, policy.etag)
    for dist in account.distributions.values():
        if dist.policy_id() == policy.id:
            raise ApiError(409, "ContinuousDeploymentPolicyInUse", f"The continuous deployment policy is associated with distribution {dist.id}.")
    del account.policies[policy.id]
    return 204, None, {}


def list_policies(account):
    root = ET.Element("ContinuousDeploymentPolicyList")
    sub(root, "MaxItems", "100")
    sub(root, "Quantity", str(len(account.policies)))
    items = sub(root, "Items")
    for policy in account.policies.values():
        summary = sub(items, "ContinuousDeploymentPolicySummary")
        summary.append(policy.element())
    return 200, root, {}


# ---- Tags ----------------------------------------------------------------------

def resource_exists(account, arn):
    return any(dist.arn == arn for dist in account.distributions.values())


def tag_resource(account, query, body):
    arn = (query.get("Resource") or [""])[0]
    if not resource_exists(account, arn):
        raise ApiError(404, "NoSuchResource", f"The resource {arn} does not exist.")
    root = parse_body(body, "Tags")
    tags = account.tags.setdefault(arn, {})
    for tag in root.findall("Items/Tag"):
        key = text(tag, "Key")
        if not key or len(key) > 128:
            raise ApiError(400, "InvalidTagging", "Tag keys must be 1..128 characters.")
        value = text(tag, "Value", "") or ""
        if len(value) > 256:
            raise ApiError(400, "InvalidTagging", "Tag values must be at most 256 characters.")
        tags[key] = value
    if len(tags) > 50:
        raise ApiError(400, "InvalidTagging", "A resource can have at most 50 tags.")
    return 204, None, {}


def untag_resource(account, query, body):
    arn = (query.get("Resource") or [""])[0]
    if not resource_exists(account, arn):
        raise ApiError(404, "NoSuchResource", f"The resource {arn} does not exist.")
    root = parse_body(body, "TagKeys")
    tags = account.tags.setdefault(arn, {})
    for key in root.findall("Items/Key"):
        tags.pop((key.text or "").strip(), None)
    return 204, None, {}


def list_tags(account, query):
    arn = (query.get("Resource") or [""])[0]
    if not resource_exists(account, arn):
        raise ApiError(404, "NoSuchResource", f"The resource {arn} does not exist.")
    root = ET.Element("Tags")
    items = sub(root, "Items")
    for key, value in sorted(account.tags.get(arn, {}).items()):
        tag = sub(items, "Tag")
        sub(tag, "Key", key)
        sub(tag, "Value", value)
    return 200, root, {}


# ---- Routing -------------------------------------------------------------------

def route(account, method, path, query, headers, body):
    parts = [p for p in path[len(PREFIX):].split("/") if p]
    if parts == ["distribution"] and method == "POST":
        return create_distribution(account, headers, body)
    if len(parts) >= 2 and parts[0] == "distribution":
        dist = get_distribution(account, parts[1])
        rest = parts[2:]
        if rest == [] and method == "GET":
            dist.read()
            return 200, dist.element(), {"ETag": dist.etag}
        if rest == [] and method == "DELETE":
            return delete_distribution(account, dist, headers)
        if rest == ["config"] and method == "GET":
            dist.read()
            return 200, copy.deepcopy(dist.config), {"ETag": dist.etag}
        if rest == ["config"] and method == "PUT":
            return update_distribution(account, dist, headers, body)
        if rest == ["copy"] and method == "POST":
            return copy_distribution(account, dist, headers, body)
        if rest == ["promote-staging-config"] and method == "PUT":
            return promote_staging(account, dist, query, headers)
    if parts == ["continuous-deployment-policy"]:
        if method == "POST":
            return create_policy(account, body)
        if method == "GET":
            return list_policies(account)
    if len(parts) >= 2 and parts[0] == "continuous-deployment-policy":
        policy = get_policy(account, parts[1])
        rest = parts[2:]
        if rest == [] and method == "GET":
            return 200, policy.element(), {"ETag": policy.etag}
        if rest == ["config"] and method == "GET":
            return 200, copy.deepcopy(policy.config), {"ETag": policy.etag}
        if rest == [] and method == "PUT":
            return update_policy(account, policy, headers, body)
        if rest == [] and method == "DELETE":
            return delete_policy(account, policy, headers)
    if parts == ["tagging"]:
        operation = (query.get("Operation") or [""])[0]
        if method == "GET":
            return list_tags(account, query)
        if method == "POST" and operation == "Tag":
            return tag_resource(account, query, body)
        if method == "POST" and operation == "Untag":
            return untag_resource(account, query, body)
    raise ApiError(404, "NotImplemented", f"{method} {path} is not served by this emulator (see tests/emulators/README.md).")


# The operation of each route: (method, path under the version prefix with
# IDs as `{}`, the query's Operation for tagging) -> the API's name.
OPERATIONS = {
    ("POST", "distribution", ""): "CreateDistribution",
    ("GET", "distribution/{}", ""): "GetDistribution",
    ("DELETE", "distribution/{}", ""): "DeleteDistribution",
    ("GET", "distribution/{}/config", ""): "GetDistributionConfig",
    ("PUT", "distribution/{}/config", ""): "UpdateDistribution",
    ("POST", "distribution/{}/copy", ""): "CopyDistribution",
    ("PUT", "distribution/{}/promote-staging-config", ""): "UpdateDistributionWithStagingConfig",
    ("POST", "continuous-deployment-policy", ""): "CreateContinuousDeploymentPolicy",
    ("GET", "continuous-deployment-policy", ""): "ListContinuousDeploymentPolicies",
    ("GET", "continuous-deployment-policy/{}", ""): "GetContinuousDeploymentPolicy",
    ("GET", "continuous-deployment-policy/{}/config", ""): "GetContinuousDeploymentPolicyConfig",
    ("PUT", "continuous-deployment-policy/{}", ""): "UpdateContinuousDeploymentPolicy",
    ("DELETE", "continuous-deployment-policy/{}", ""): "DeleteContinuousDeploymentPolicy",
    ("GET", "tagging", ""): "ListTagsForResource",
    ("POST", "tagging", "Tag"): "TagResource",
    ("POST", "tagging", "Untag"): "UntagResource",
}


def operation_of(method, path, query):
    """The CloudFront operation a request is, or `METHOD path` when none."""
    parts = [p for p in path[len(PREFIX):].split("/") if p]
    shape = "/".join(part if index != 1 else "{}" for index, part in enumerate(parts))
    tagging = (query.get("Operation") or [""])[0] if parts == ["tagging"] and method == "POST" else ""
    return OPERATIONS.get((method, shape, tagging), f"{method} {path}")


def state_json(account):
    return {
        "distributions": {
            dist.id: {
                "domainName": dist.domain,
                "arn": dist.arn,
                "status": dist.status,
                "etag": dist.etag,
                "staging": dist.staging,
                "enabled": dist.enabled(),
                "comment": text(dist.config, "Comment", ""),
                "continuousDeploymentPolicyId": dist.policy_id(),
                "origins": [text(o, "DomainName") for o in dist.config.findall("Origins/Items/Origin")],
                "tags": account.tags.get(dist.arn, {}),
            }
            for dist in account.distributions.values()
        },
        "policies": {
            policy.id: {
                "etag": policy.etag,
                "enabled": policy.enabled(),
                "stagingDomainName": policy.staging_domain(),
                "type": text(policy.config, "TrafficConfig/Type"),
                "weight": text(policy.config, "TrafficConfig/SingleWeightConfig/Weight"),
            }
            for policy in account.policies.values()
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits
    # for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request. Real API servers (Go, AWS front ends) set TCP_NODELAY.
    disable_nagle_algorithm = True
    server_version = "deployctl-cloudfront-emulator"

    def log_message(self, format, *args):  # noqa: A002 - quiet by default
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, payload, content_type, extra, request_id):
        self.send_response(status)
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Content-Type", content_type)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _account_id(self, body_json=None):
        if body_json and body_json.get("account"):
            return str(body_json["account"])
        return self.headers.get("x-moto-account-id") or DEFAULT_ACCOUNT

    def _control(self, method, path, body):
        request_id = str(uuid.uuid4())
        if path == "/_emulator/health":
            return self._send(200, b'{"ok": true}', "application/json", {}, request_id)
        data = {}
        if body:
            try:
                data = json.loads(body)
            except json.JSONDecodeError as error:
                return self._send(400, json.dumps({"error": str(error)}).encode(), "application/json", {}, request_id)
        with LOCK:
            if path == "/_emulator/reset" and method == "POST":
                ACCOUNTS.clear()
                return self._send(200, b'{"ok": true}', "application/json", {}, request_id)
            account = account_for(self._account_id(data))
            if path == "/_emulator/config" and method == "POST":
                if "deploySeconds" in data:
                    account.deploy_seconds = float(data["deploySeconds"])
                if "deployGets" in data:
                    account.deploy_gets = int(data["deployGets"])
                if data.get("deployNow"):
                    for dist in account.distributions.values():
                        dist.gets_left = 0
                        dist.ready_at = 0.0
                        dist.settle()
                reply = {"deploySeconds": account.deploy_seconds, "deployGets": account.deploy_gets}
                return self._send(200, json.dumps(reply).encode(), "application/json", {}, request_id)
            if path == "/_emulator/state" and method == "GET":
                return self._send(200, json.dumps(state_json(account)).encode(), "application/json", {}, request_id)
            if path == "/_emulator/calls" and method == "GET":
                return self._send(200, json.dumps({"calls": account.calls}).encode(), "application/json", {}, request_id)
            if path == "/_emulator/calls" and method == "DELETE":
                account.calls.clear()
                return self._send(200, b'{"ok": true}', "application/json", {}, request_id)
        return self._send(404, b'{"error": "unknown control endpoint"}', "application/json", {}, request_id)

    def _handle(self, method):
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        body = self._body()
        if path.startswith("/_emulator/"):
            return self._control(method, path, body)
        request_id = str(uuid.uuid4())
        call = {"operation": operation_of(method, path, query), "method": method, "path": path, "status": None}
        with LOCK:
            account_for(self._account_id()).calls.append(call)
        try:
            if not path.startswith(PREFIX + "/"):
                raise ApiError(404, "NotImplemented", f"{path} is not a CloudFront 2020-05-31 path")
            with LOCK:
                account = account_for(self._account_id())
                status, element, extra = route(account, method, path, query, self.headers, body)
            payload = serialize(element) if element is not None else b""
            call["status"] = status
            self._send(status, payload, "text/xml", extra, request_id)
        except ApiError as error:
            call["status"] = error.status
            root = ET.Element("ErrorResponse")
            err = sub(root, "Error")
            sub(err, "Type", "Sender" if error.status < 500 else "Receiver")
            sub(err, "Code", error.code)
            sub(err, "Message", error.message)
            sub(root, "RequestId", request_id)
            self._send(error.status, serialize(root), "text/xml", {}, request_id)
        except Exception as error:  # a bug here must still answer in AWS's format
            call["status"] = 500
            root = ET.Element("ErrorResponse")
            err = sub(root, "Error")
            sub(err, "Type", "Receiver")
            sub(err, "Code", "InternalError")
            sub(err, "Message", f"emulator error: {error!r}")
            sub(root, "RequestId", request_id)
            self._send(500, serialize(root), "text/xml", {}, request_id)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
