#!/usr/bin/env python3
"""Seed 003's race: two threads send the first packets of one flow at the same time.

  race.py udp DST PORT      the A and AAAA queries of a glibc/musl lookup: one new UDP socket per
                            lookup, two threads released together each send one query on it, as the
                            kernel's conntrack_clash selftest does. Both packets create an entry for
                            the same original tuple on two CPUs; one wins the insert, the other clashes.
  race.py tcp SRC DST PORT  the same with two identical TCP SYNs (raw socket, IP_HDRINCL): TCP entries
                            cannot be merged, so the loser's packet is dropped (insert_failed, drop).

Runs until killed; prints {"rounds", "errors"} every second (errors: sends the kernel refused, EPERM
for a packet conntrack dropped).
"""
import json
import socket
import struct
import sys
import threading
import time

mode = sys.argv[1]
if mode == 'udp':
    dst, port = sys.argv[2], int(sys.argv[3])
else:
    src, dst, port = sys.argv[2], sys.argv[3], int(sys.argv[4])


def checksum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def syn(sport):
    tcp = struct.pack('!HHIIBBHHH', sport, port, 12345, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return ip + tcp


stats = {'rounds': 0, 'errors': 0}
last = time.monotonic()
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) if mode == 'tcp' else None
r = 0
while True:
    if mode == 'udp':
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('0.0.0.0', 0))
        sends = [(s, b'\x12\x34\x01\x00\x00\x01' + b'\0' * 6 + b'A'), (s, b'\x12\x35\x01\x00\x00\x01' + b'\0' * 6 + b'AAAA')]
        target = (dst, port)
    else:
        s = None
        p = syn(20000 + r % 40000)
        sends = [(raw, p), (raw, p)]
        target = (dst, 0)
    barrier = threading.Barrier(2)

    def go(sock, data):
        barrier.wait()
        try:
            sock.sendto(data, target)
        except OSError:
            stats['errors'] += 1

    threads = [threading.Thread(target=go, args=x) for x in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if s:
        s.close()
    r += 1
    stats['rounds'] = r
    time.sleep(0.002)  # a few hundred lookups a second, not a whole core
    if time.monotonic() - last >= 1:
        last = time.monotonic()
        print(json.dumps(stats), flush=True)
        time.sleep(0.05)
