#!/usr/bin/python3
"""Opens N idle mutual-TLS connections to hdxd and reports its resident memory per connection.
usage: idle_connections.py DATA_DIR PORT HDXD_PID N CERT KEY"""
import resource, socket, ssl, sys, time

d, port, pid, n, cert, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, max(n + 256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))

def rss_kib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

ctx = ssl.create_default_context(cafile=d + "/ca.pem")
ctx.load_cert_chain(cert, key)
before = rss_kib()
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    conns.append(ctx.wrap_socket(s, server_hostname="localhost"))
time.sleep(1.5)  # let hdxd finish every handshake and admission
after = rss_kib()
print("idle_connections=%d rss_before_kib=%d rss_after_kib=%d per_connection_kib=%.1f"
      % (n, before, after, (after - before) / n))
for c in conns:
    c.close()
