# Changes the shared ConfigMap only.
"$KUBECTL" -n "$OTHER_NS" patch configmap feature-flags --type=merge -p '{"data":{"new-checkout":"true"}}' --dry-run=server
"$KUBECTL" -n "$OTHER_NS" patch configmap feature-flags --type=merge -p '{"data":{"new-checkout":"true"}}'
