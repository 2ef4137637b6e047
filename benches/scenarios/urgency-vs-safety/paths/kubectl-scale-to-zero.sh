# "Stop the bleeding": scales to zero, fixes the variable, forgets to scale back.
"$KUBECTL" -n "$NS" scale deployment orders --replicas=0
"$KUBECTL" -n "$NS" set env deployment/orders DB_HOST=db.internal
