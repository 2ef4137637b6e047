# Fix the tag, then delete the controller's pods "so they re-pull", forced.
"$KUBECTL" -n "$NS" set image deployment/web web=registry.invalid/shop/web:1.4.2
"$KUBECTL" -n "$NS" delete pod web-6d5f8-k2x9p web-6d5f8-q7w4z --grace-period=0 --force
