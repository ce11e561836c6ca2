-- Argo CD health check for kubellm.io/LLMDeployment (https://github.com/kubellm/kubellm).
-- Reads only the status the operator writes: observedGeneration, the conditions Ready,
-- Progressing, Degraded and SpecValid, and status.rollout (canaryRevision, paused, message).
--   Progressing  the operator has not acted on this generation yet; a canary, promotion,
--                rolling or recreate update is in flight; or pods are still coming up
--   Suspended    a rollout waits for `kubellm promote` (a pause step, an inconclusive
--                analysis, or a failed analysis with autoRollback off)
--   Degraded     the spec is invalid, or Degraded=True (rolled back until the next spec
--                change, aborted, progress deadline exceeded, replicas unavailable)
--   Healthy      Ready=True and nothing in flight: the spec's revision serves everything
local hs = {}

local function condition(ctype)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is(c, status)
  return c ~= nil and c.status == status
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubellm operator to report status"
  return hs
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
if obj.status.observedGeneration == nil or obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubellm operator to observe generation " .. tostring(generation)
  return hs
end

local rollout = obj.status.rollout or {}
local specValid = condition("SpecValid")
local degraded = condition("Degraded")
local progressing = condition("Progressing")
local ready = condition("Ready")

if is(specValid, "False") then
  hs.status = "Degraded"
  hs.message = describe(specValid, "The spec is invalid")
  return hs
end

-- A failed analysis that does not roll back waits for a human, like any paused step.
local waiting = rollout.paused == true
if is(degraded, "True") and not (waiting and degraded.reason == "AnalysisFailed") then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

if waiting then
  hs.status = "Suspended"
  if rollout.message ~= nil and rollout.message ~= "" then
    hs.message = rollout.message
  elseif is(degraded, "True") then
    hs.message = describe(degraded, "Analysis failed: waiting for kubellm promote or abort")
  else
    hs.message = describe(progressing, "Waiting for kubellm promote")
  end
  return hs
end

if rollout.canaryRevision ~= nil and rollout.canaryRevision ~= "" then
  hs.status = "Progressing"
  if rollout.message ~= nil and rollout.message ~= "" then
    hs.message = rollout.message
  else
    hs.message = describe(progressing, "Rolling out revision " .. rollout.canaryRevision)
  end
  return hs
end

if is(progressing, "True") then
  hs.status = "Progressing"
  hs.message = describe(progressing, "Progressing")
  return hs
end

if is(ready, "True") then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for serving replicas")
return hs
