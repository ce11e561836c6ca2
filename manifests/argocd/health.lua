-- Argo CD health check for kubellm.io/LLMDeployment.
-- Reads only status: observedGeneration, phase and metav1.Conditions (Ready, Progressing,
-- Degraded, SpecValid). Returns {status=..., message=...} as Argo CD expects.
local hs = {}

local function condition(conditions, ctype)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
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
local observed = obj.status.observedGeneration
if observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local phase = obj.status.phase

local specValid = condition(conditions, "SpecValid")
if specValid ~= nil and specValid.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(specValid, "The spec is invalid")
  return hs
end

local degraded = condition(conditions, "Degraded")
if (degraded ~= nil and degraded.status == "True") or phase == "Degraded" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Phase " .. tostring(phase))
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

local progressing = condition(conditions, "Progressing")
hs.status = "Progressing"
hs.message = describe(progressing, describe(ready, "Phase " .. tostring(phase or "Pending")))
return hs
