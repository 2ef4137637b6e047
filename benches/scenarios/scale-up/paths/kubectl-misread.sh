# Reads "by three" as "to three".
"$KUBECTL" -n "$NS" scale deployment worker --replicas=3 --dry-run=server
"$KUBECTL" -n "$NS" scale deployment worker --replicas=3
