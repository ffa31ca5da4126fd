-- Argo CD resource health check for delivery.switchyard.dev/AppRelease.
-- Install it under resource.customizations.health.delivery.switchyard.dev_AppRelease
-- in the argocd-cm ConfigMap (see docs/gitops.md).
local hs = {status = "Progressing", message = "Waiting for Switchyard to route the release"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and (obj.status.observedGeneration or 0) < obj.metadata.generation then
  hs.message = "Waiting for Switchyard to observe the latest spec"
  return hs
end
local ready, stalled = nil, nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Stalled" and c.status == "True" then stalled = c end
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
if stalled ~= nil then
  if stalled.reason == "Superseded" then
    -- Replaced by a newer build of its lineage: it serves nothing any more,
    -- on purpose; remove it from the repository.
    hs.status = "Suspended"
  else
    hs.status = "Degraded"
  end
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil then
  hs.message = ready.reason .. ": " .. (ready.message or "")
end
return hs
