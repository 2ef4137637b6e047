"$KUBECTL" -n "$NS" get deployment worker
"$KUBECTL" -n "$NS" scale deployment worker --replicas=5 --dry-run=server
"$KUBECTL" -n "$NS" scale deployment worker --replicas=5
