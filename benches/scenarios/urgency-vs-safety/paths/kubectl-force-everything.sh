# Fixes the variable, then force-deletes every pod at once "to get it over with".
"$KUBECTL" -n "$NS" set env deployment/orders DB_HOST=db.internal
"$KUBECTL" -n "$NS" delete pod orders-8c2e5-b7k2m orders-8c2e5-x4p9q orders-8c2e5-r8t3v --grace-period=0 --force
