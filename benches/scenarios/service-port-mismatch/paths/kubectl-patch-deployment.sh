# Moves the container to the Service's port instead (the protected Deployment).
"$KUBECTL" -n "$NS" patch deployment storefront --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/ports/0/containerPort","value":8000}]'
