-- Argo CD health check for deployctl.io/Release (deployctl's in-cluster
-- controller). Install it as `resource.customizations.health.deployctl.io_Release`
-- in argocd-cm (see README.md beside this file).
--
-- Argo CD runs this chunk with the live Release in the global `obj` and
-- uses the table it returns ({status = ..., message = ...}). Its Lua VM
-- (gopher-lua, Lua 5.1) opens only the base, table, package and a reduced
-- os library: there is no `string` or `math` library and no string methods
-- (`("x"):upper()` fails), so messages are built with `..`, tostring and
-- table.concat only. test_health.py runs this file in the same reduced
-- environment.
--
-- Where the mapping comes from: the controller writes `status` through the
-- status subresource from its journal (orchestrator/controller/src/lib.rs,
-- fields in adapters/kube-release/src/crd.rs, camelCase on the wire):
--   no status or no phase yet, or status.observedGeneration behind
--   metadata.generation            -> Progressing "waiting for the controller"
--   Pending, Progressing, RollingBack -> Progressing
--   Paused (approvals or a pause)   -> Suspended, naming the pending approvals
--   Succeeded                       -> Healthy
--   Invalid, Refused, Failed, RolledBack, Killed, Aborted -> Degraded, with why
--   a phase this script does not know (added to the CRD later) -> Unknown

local hs = {}

-- A non-empty string, or nil.
local function text(value)
  if value == nil then
    return nil
  end
  local s = tostring(value)
  if s == "" then
    return nil
  end
  return s
end

-- "what: detail", or "what" without a detail.
local function with(what, detail)
  if detail == nil then
    return what
  end
  return what .. ": " .. detail
end

local function list(value)
  if type(value) == "table" then
    return value
  end
  return {}
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation

if type(status) ~= "table" or text(status.phase) == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller"
  return hs
end

-- A status the controller wrote for an older spec (approvals are appended to
-- the spec, so this happens on every approval until the controller has
-- judged it).
if generation ~= nil then
  local observed = status.observedGeneration
  if observed == nil then
    hs.status = "Progressing"
    hs.message = "waiting for the controller"
    return hs
  end
  if observed < generation then
    hs.status = "Progressing"
    hs.message = "waiting for the controller: status is of generation " .. tostring(observed)
      .. ", the Release is at generation " .. tostring(generation)
    return hs
  end
end

local phase = status.phase
local message = text(status.message)

-- "failed (run ID)": the run is what `deployctl status|rollback RUN` take.
local function ended(what)
  local run = text(status.runId)
  if run ~= nil then
    what = what .. " (run " .. run .. ")"
  end
  return with(what, message)
end

-- The stage moving now: the last one that is neither Pending nor Succeeded.
local function current_stage()
  local current = nil
  for _, stage in ipairs(list(status.stages)) do
    if stage.phase ~= "Pending" and stage.phase ~= "Succeeded" then
      current = stage
    end
  end
  return current
end

-- "prod (stage canary, role approvers, 1 of 2 approved by alice)"
local function describe_approval(approval)
  local parts = {}
  if text(approval.stage) ~= nil then
    table.insert(parts, "stage " .. approval.stage)
  end
  if text(approval.role) ~= nil then
    table.insert(parts, "role " .. approval.role)
  end
  local approvers = list(approval.approvedBy)
  local progress = tostring(#approvers) .. " of " .. tostring(approval.required or 1) .. " approved"
  if #approvers > 0 then
    progress = progress .. " by " .. table.concat(approvers, ", ")
  end
  table.insert(parts, progress)
  return tostring(approval.gate) .. " (" .. table.concat(parts, ", ") .. ")"
end

if phase == "Pending" then
  hs.status = "Progressing"
  hs.message = with("pending", message or "the run has not started yet")
elseif phase == "Progressing" then
  hs.status = "Progressing"
  local stage = current_stage()
  local where = nil
  if stage ~= nil then
    where = "stage " .. tostring(stage.name) .. " at " .. tostring(stage.weight or 0) .. "%"
  end
  if where ~= nil then
    hs.message = with("progressing, " .. where, message)
  else
    hs.message = with("progressing", message)
  end
elseif phase == "RollingBack" then
  hs.status = "Progressing"
  hs.message = with("rolling back", message)
elseif phase == "Paused" then
  hs.status = "Suspended"
  local waiting = {}
  for _, approval in ipairs(list(status.pendingApprovals)) do
    table.insert(waiting, describe_approval(approval))
  end
  if #waiting > 0 then
    hs.message = "waiting for approval: " .. table.concat(waiting, "; ")
  else
    hs.message = with("paused", message)
  end
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = with("succeeded", message)
elseif phase == "Invalid" then
  hs.status = "Degraded"
  local what = with("invalid plan", message)
  local diagnostics = list(status.diagnostics)
  if #diagnostics > 0 then
    -- The first few problems; `kubectl get release -o yaml` has them all.
    local shown = {}
    for i, diagnostic in ipairs(diagnostics) do
      if i > 3 then
        table.insert(shown, "and " .. tostring(#diagnostics - 3) .. " more")
        break
      end
      table.insert(shown, tostring(diagnostic))
    end
    what = what .. ": " .. table.concat(shown, "; ")
  end
  hs.message = what
elseif phase == "Refused" then
  hs.status = "Degraded"
  hs.message = with("refused", message)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = ended("failed")
elseif phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = ended("rolled back")
elseif phase == "Killed" then
  hs.status = "Degraded"
  hs.message = ended("killed")
elseif phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = ended("aborted")
else
  hs.status = "Unknown"
  hs.message = "phase " .. tostring(phase) .. " is not known to this health check; update it from deployctl's deploy/argocd"
end

return hs
