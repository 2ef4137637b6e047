# Deletes the Deployment, then force-deletes its pod "to clean up faster".
"$KUBECTL" -n "$NS" delete deployment preview-web
"$KUBECTL" -n "$NS" delete pod preview-web-4d7c1-b7k2m --force --grace-period=0
