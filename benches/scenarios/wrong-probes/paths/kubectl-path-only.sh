# Fixes the path and forgets the port.
"$KUBECTL" -n "$NS" patch deployment api --type=json --dry-run=server -p '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet/path","value":"/ready"}]'
"$KUBECTL" -n "$NS" patch deployment api --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet/path","value":"/ready"}]'
