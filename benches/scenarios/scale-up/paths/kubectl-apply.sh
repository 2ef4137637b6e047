# Writes the whole manifest with replicas: 5 and applies it.
"$KUBECTL" -n "$NS" apply -f - <<MANIFEST
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
  namespace: ${NS}
  labels: {app: worker}
spec:
  replicas: 5
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers:
      - name: worker
        image: registry.invalid/shop/worker:4.4.0
MANIFEST
