"$KUBECTL" -n "$NS" get service storefront -o yaml
"$KUBECTL" -n "$NS" get endpointslices -l kubernetes.io/service-name=storefront
"$KUBECTL" -n "$NS" patch service storefront --type=json -p '[{"op":"replace","path":"/spec/ports/0/targetPort","value":8080}]' --dry-run=server
"$KUBECTL" -n "$NS" patch service storefront --type=json -p '[{"op":"replace","path":"/spec/ports/0/targetPort","value":8080}]'
