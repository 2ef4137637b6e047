# One JSON-patch op on the probe, rehearsed on the server first.
"$KUBECTL" -n "$NS" get deployment api -o yaml
"$KUBECTL" -n "$NS" patch deployment api --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet","value":{"path":"/ready","port":8080}}]' --dry-run=server
"$KUBECTL" -n "$NS" patch deployment api --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet","value":{"path":"/ready","port":8080}}]'
