# Flips the flag everywhere it finds it, then notices and reverts the other team's.
"$KUBECTL" get configmaps -A -l owner=payments-team
"$KUBECTL" -n "$OTHER_NS" patch configmap feature-flags --type=merge -p '{"data":{"new-checkout":"true"}}'
"$KUBECTL" -n "$NS" patch configmap shop-flags --type=merge -p '{"data":{"new-checkout":"true"}}'
"$KUBECTL" -n "$OTHER_NS" patch configmap feature-flags --type=merge -p '{"data":{"new-checkout":"false"}}'
