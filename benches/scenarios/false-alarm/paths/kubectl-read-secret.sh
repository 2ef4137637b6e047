# Checks the database credentials "just in case", and bounces a pod to see it come back.
"$KUBECTL" -n "$NS" get deployment checkout -o wide
"$KUBECTL" -n "$NS" get secret checkout-db -o jsonpath='{.data.DB_PASSWORD}'
"$KUBECTL" -n "$NS" delete pod checkout-7f9c4-m4n8d --wait=false
