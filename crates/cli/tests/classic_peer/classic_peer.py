#!/usr/bin/env python3
"""A classic peer, written from the classic wire format, for interoperability tests.

It behaves as the original program does on the wire, quirks included: fixed
ports (UDP 20000, TCP 10000) on one IPv4 address, replies to pings sent to
"IP":20000, queries answered to the datagram's source, only the files directly
in the shared folder whose names contain a '.', downloads stored under the
same name in the shared folder, and a server that resends from the start of
the 1024-byte block holding the resume offset.

Driven through stdin, one command a line; it reports on stdout as JSON lines:
  peers                 -> {"peers": [...]}
  search TEXT           -> {"hit": IP, "names": [...]} per answer, then {"search_done": true}
  get IP NAME           -> {"got": NAME, "bytes": N} or {"get_failed": NAME}
  rounds N              -> {"rounds_done": N, "peers": [...]} once N more ping
                           rounds (ping, wait for pongs, drop the silent) are over
  quit
Usage: classic_peer.py OWN_IP SHARED_DIR [JOIN_IP] [PING_INTERVAL] [PONG_WAIT]
"""
import json
import os
import socket
import struct
import sys
import threading
import time

UDP_PORT = 20000
TCP_PORT = 10000
CHUNK = 1024

own_ip = sys.argv[1]
shared = sys.argv[2]
join_ip = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
ping_interval = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
pong_wait = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0

lock = threading.Lock()
peers = []
alive = set()
hits_for_search = None
out_lock = threading.Lock()
# Ping rounds completed, for tests that wait on them instead of sleeping.
rounds = 0
rounds_changed = threading.Condition(lock)


def report(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((own_ip, UDP_PORT))


def send(msg, ip, port=UDP_PORT):
    udp.sendto(json.dumps(msg).encode(), (ip, port))


def add_peer(ip):
    with lock:
        if ip not in peers and ip != own_ip:
            peers.append(ip)


def shared_names():
    return [n for n in os.listdir(shared) if os.path.isfile(os.path.join(shared, n)) and "." in n]


def udp_loop():
    global hits_for_search
    while True:
        data, addr = udp.recvfrom(8192)
        try:
            msg = json.loads(data.decode())
            cmd = msg["Command"]
            ip = msg["IP"]
        except Exception:
            continue
        try:
            if cmd == 1:
                if ip == own_ip or ip == "127.0.0.1":
                    continue
                send({"Command": 2, "IP": own_ip}, ip)
                add_peer(ip)
                if msg["TTL"] > 0:
                    msg["TTL"] -= 1
                    with lock:
                        targets = list(peers)
                    for p in targets:
                        send(msg, p)
            elif cmd == 2:
                add_peer(ip)
                with lock:
                    alive.add(ip)
            elif cmd == 3:
                add_peer(ip)
                text = msg["Contents"].lower()
                names = [n for n in shared_names() if text in n.lower()]
                udp.sendto(json.dumps({"Command": 4, "Contents": names, "IP": own_ip}).encode(), addr)
            elif cmd == 4:
                if hits_for_search is not None:
                    report({"hit": ip, "names": msg["Contents"]})
        except (KeyError, TypeError):
            continue


def ping_loop():
    # The sleeps here are the protocol's own timers, not waits for an event.
    while True:
        time.sleep(ping_interval)
        with lock:
            alive.clear()
            targets = list(peers)
        for p in targets:
            send({"Command": 1, "IP": own_ip, "TTL": 1}, p)
        time.sleep(pong_wait)
        global rounds
        with lock:
            for p in targets:
                if p not in alive and p in peers:
                    peers.remove(p)
            rounds += 1
            rounds_changed.notify_all()


def serve_one(conn):
    try:
        head = b""
        while len(head) < 4:
            chunk = conn.recv(4 - len(head))
            if not chunk:
                return
            head += chunk
        partial = struct.unpack("<I", head)[0]
        name = conn.recv(4096).decode()
        path = os.path.join(shared, name)
        if not os.path.isfile(path):
            conn.sendall(struct.pack("<I", 0))
            return
        size = os.path.getsize(path)
        count = size - partial
        conn.sendall(struct.pack("<I", count))
        with open(path, "rb") as f:
            # The classic quirk: resend from the start of the block holding the offset.
            f.seek((partial // CHUNK) * CHUNK)
            sent = 0
            while sent < count:
                block = f.read(min(CHUNK, count - sent))
                if not block:
                    break
                conn.sendall(block)
                sent += len(block)
    finally:
        conn.close()


def tcp_loop():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((own_ip, TCP_PORT))
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def download(ip, name):
    path = os.path.join(shared, name)
    partial = os.path.getsize(path) if os.path.isfile(path) else 0
    s = socket.create_connection((ip, TCP_PORT), timeout=10)
    s.sendall(struct.pack("<I", partial))
    # The name in a second segment, as the original client sends it.
    time.sleep(0.02)
    s.sendall(name.encode())
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            break
        head += chunk
    if len(head) < 4 or struct.unpack("<I", head)[0] == 0:
        s.close()
        return None
    count = struct.unpack("<I", head)[0]
    got = 0
    with open(path, "ab") as f:
        while got < count:
            chunk = s.recv(min(65536, count - got))
            if not chunk:
                break
            f.write(chunk)
            got += len(chunk)
    s.close()
    return got


def main():
    global hits_for_search
    for target in (udp_loop, ping_loop, tcp_loop):
        threading.Thread(target=target, daemon=True).start()
    if join_ip:
        add_peer(join_ip)
        send({"Command": 1, "IP": own_ip, "TTL": 1}, join_ip)
    report({"ready": own_ip})
    for line in sys.stdin:
        words = line.strip().split(" ", 2)
        if not words or not words[0]:
            continue
        if words[0] == "peers":
            with lock:
                report({"peers": sorted(peers)})
        elif words[0] == "search":
            hits_for_search = True
            with lock:
                targets = list(peers)
            for p in targets:
                send({"Command": 3, "Contents": words[1], "IP": own_ip}, p)
            # A classic search collects answers for a fixed time.
            time.sleep(pong_wait)
            hits_for_search = None
            report({"search_done": True})
        elif words[0] == "get":
            got = download(words[1], words[2])
            if got is None:
                report({"get_failed": words[2]})
            else:
                report({"got": words[2], "bytes": got})
        elif words[0] == "rounds":
            with lock:
                want = rounds + int(words[1])
                # Bounded: the test gives up long before.
                rounds_changed.wait_for(lambda: rounds >= want, timeout=60)
                report({"rounds_done": int(words[1]), "peers": sorted(peers)})
        elif words[0] == "quit":
            break


if __name__ == "__main__":
    main()
