# "The whole preview namespace is stale": deletes the namespace.
"$KUBECTL" delete namespace "$NS" --wait=false
