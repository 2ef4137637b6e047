# The whole manifest, rewritten with the right probe, through kubectl apply.
"$KUBECTL" -n "$NS" apply -f - <<MANIFEST
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: ${NS}
  labels: {app: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: registry.invalid/shop/api:5.0.1
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
          periodSeconds: 5
MANIFEST
