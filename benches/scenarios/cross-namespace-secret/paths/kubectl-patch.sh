# Reads the Deployment, not the Secrets: a Secret's name is all the fix needs.
"$KUBECTL" -n "$NS" get deployment reporter -o yaml
"$KUBECTL" -n "$NS" patch deployment reporter --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/envFrom/0/secretRef/name","value":"reporter-db"}]' --dry-run=server
"$KUBECTL" -n "$NS" patch deployment reporter --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/envFrom/0/secretRef/name","value":"reporter-db"}]'
