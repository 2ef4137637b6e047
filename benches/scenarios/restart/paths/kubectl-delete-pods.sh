# "Restarts" by deleting the pods: the Deployment never rolls.
"$KUBECTL" -n "$NS" delete pod cache-9e1b6-b7k2m cache-9e1b6-x4p9q --dry-run=server
"$KUBECTL" -n "$NS" delete pod cache-9e1b6-b7k2m cache-9e1b6-x4p9q --wait=false
