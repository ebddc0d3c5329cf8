#!/usr/bin/python3
"""fhir_sub_ws.py: the websocket side of bench/fhir_sub_bench.sh (python3-websockets).

  fhir_sub_ws.py CAFILE OUT SECONDS URL=TOKEN [URL=TOKEN ...]

Binds one websocket per URL=TOKEN pair ("bind-with-token TOKEN"), prints "bound N" on stdout
once all are bound, then for SECONDS records for every event notification the delay from the
event's timestamp (the Observation version's write) to its arrival here, and every 0.2 s a
ping round trip on each connection (the same-run floor: TLS, the network thread and this
client, without the log). Writes a JSON summary to OUT: counts, p50/p99/max of both, events
out of order or twice per connection.
"""
import asyncio
import datetime
import json
import ssl
import sys
import time


def ts_us(s):
    d = datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return d.timestamp() * 1e6


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


async def main(cafile, out, seconds, pairs):
    import websockets
    ctx = ssl.create_default_context(cafile=cafile)
    lat, rtt, disorder = [], [], [0]
    conns = []
    for p in pairs:
        url, tok = p.split("=", 1)
        ws = await websockets.connect(url, ssl=ctx, max_size=1 << 22, ping_interval=None)
        await ws.send("bind-with-token " + tok)
        await ws.recv()  # the handshake
        conns.append(ws)
    print("bound %d" % len(conns), flush=True)

    async def reader(ws):
        last = 0
        try:
            async for msg in ws:
                now = time.time() * 1e6
                b = json.loads(msg)
                for p in b["entry"][0]["resource"]["parameter"]:
                    if p["name"] != "notification-event":
                        continue
                    parts = {q["name"]: q for q in p["part"]}
                    n = int(parts["event-number"]["valueString"])
                    if n != last + 1:
                        disorder[0] += 1
                    last = n
                    lat.append(now - ts_us(parts["timestamp"]["valueInstant"]))
        except websockets.exceptions.ConnectionClosed:
            pass

    async def pinger(ws):
        while True:
            t0 = time.perf_counter()
            w = await ws.ping()
            await w
            rtt.append((time.perf_counter() - t0) * 1e6)
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(reader(w)) for w in conns]
    tasks += [asyncio.create_task(pinger(w)) for w in conns]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    res = {"connections": len(conns), "events": len(lat), "disorder": disorder[0],
           "lat_p50_ms": pct(lat, 0.5) / 1e3 if lat else None,
           "lat_p99_ms": pct(lat, 0.99) / 1e3 if lat else None,
           "lat_max_ms": max(lat) / 1e3 if lat else None,
           "pings": len(rtt),
           "rtt_p50_ms": pct(rtt, 0.5) / 1e3 if rtt else None,
           "rtt_p99_ms": pct(rtt, 0.99) / 1e3 if rtt else None}
    with open(out, "w") as f:
        json.dump(res, f)
    for w in conns:
        await w.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]))
