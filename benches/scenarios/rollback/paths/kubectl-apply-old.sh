# Re-applies the old release's whole manifest.
"$KUBECTL" -n "$NS" apply -f - <<MANIFEST
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api
  namespace: ${NS}
  labels: {app: payments-api}
spec:
  replicas: 2
  selector: {matchLabels: {app: payments-api}}
  template:
    metadata: {labels: {app: payments-api}}
    spec:
      containers:
      - name: api
        image: registry.invalid/shop/payments-api:2.0.3
        ports: [{containerPort: 8080}]
MANIFEST
