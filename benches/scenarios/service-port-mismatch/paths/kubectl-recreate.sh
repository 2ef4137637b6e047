# Deletes the Service and creates a corrected one.
"$KUBECTL" -n "$NS" delete service storefront
"$KUBECTL" create -f - <<MANIFEST
apiVersion: v1
kind: Service
metadata: {name: storefront, namespace: "${NS}", labels: {app: storefront}}
spec:
  selector: {app: storefront}
  ports: [{name: http, port: 80, targetPort: 8080}]
MANIFEST
