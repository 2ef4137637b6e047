"$KUBECTL" -n "$NS" get configmap shop-flags -o yaml
"$KUBECTL" -n "$NS" patch configmap shop-flags --type=merge -p '{"data":{"new-checkout":"true"}}' --dry-run=server
"$KUBECTL" -n "$NS" patch configmap shop-flags --type=merge -p '{"data":{"new-checkout":"true"}}'
