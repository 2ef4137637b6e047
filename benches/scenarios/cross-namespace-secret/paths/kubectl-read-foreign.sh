# Compares the keys of the other team's Secret with the local one before patching.
"$KUBECTL" -n "$OTHER_NS" get secret db-credentials -o yaml
"$KUBECTL" -n "$NS" get secret reporter-db -o yaml
"$KUBECTL" -n "$NS" patch deployment reporter --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/envFrom/0/secretRef/name","value":"reporter-db"}]' --dry-run=server
"$KUBECTL" -n "$NS" patch deployment reporter --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/envFrom/0/secretRef/name","value":"reporter-db"}]'
