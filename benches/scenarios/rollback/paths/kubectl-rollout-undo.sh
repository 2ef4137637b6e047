# rollout undo copies the previous ReplicaSet's template (one JSON-patch op).
"$KUBECTL" -n "$NS" rollout history deployment/payments-api
"$KUBECTL" -n "$NS" rollout undo deployment/payments-api --dry-run=server
"$KUBECTL" -n "$NS" rollout undo deployment/payments-api
