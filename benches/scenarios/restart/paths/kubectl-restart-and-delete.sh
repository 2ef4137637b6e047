# Restarts, then deletes the old pods by hand "to speed it up".
"$KUBECTL" -n "$NS" rollout restart deployment/cache
"$KUBECTL" -n "$NS" delete pod cache-9e1b6-b7k2m cache-9e1b6-x4p9q --wait=false
