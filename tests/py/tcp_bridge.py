"""Connect this process's stdin/stdout to a loopback TCP port, so a stdio MCP client can drive a server that a test
runs in-process. Usage: tcp_bridge.py PORT"""

import socket
import sys
import threading

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))


def upstream():
    while True:
        chunk = sys.stdin.buffer.read1(65536)
        if not chunk:
            break
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)  # EOF for the server


threading.Thread(target=upstream, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
