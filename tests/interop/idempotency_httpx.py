"""A client nobody here wrote: Python's httpx, calling a server in the Idempotency-Key
mode through a proxy that cuts connections. Each operation gets a fresh key; on a
transport error (the cut), a 503 or a torn body the same request (same key, same body)
is sent again, as a client following the IETF draft does. Prints one JSON line: the keys
with the body each operation sent, the retries, and the replayed answers.

    python idempotency_httpx.py URL OPERATIONS
"""
import json
import sys
import time
import uuid

import httpx

url, operations = sys.argv[1], int(sys.argv[2])
done, retries, replayed = [], 0, 0
with httpx.Client(timeout=10.0) as client:
    for i in range(operations):
        key, body = str(uuid.uuid4()), f"op {i}"
        for _attempt in range(500):
            try:
                r = client.post(url, content=body, headers={"Idempotency-Key": f'"{key}"'})
            except httpx.TransportError:
                retries += 1
                continue
            code = r.headers.get("exactly-once-error")
            if r.status_code == 503 or code == "incomplete-body":
                retries += 1
                time.sleep(0.01)
                continue
            assert r.status_code == 200, (r.status_code, r.text)
            assert r.text == body, (r.text, body)
            replayed += r.headers.get("idempotent-replayed") == "true"
            break
        else:
            sys.exit(f"operation {i} never got an answer")
        done.append([key, body])
print(json.dumps({"operations": done, "retries": retries, "replayed": replayed}))
