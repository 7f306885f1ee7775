#!/usr/bin/env python3
"""A tiny authoritative DNS server on UDP for the DNS-learning tests.

Owns: answering A/AAAA queries from a zone given on the command line, with
CNAME chains and compression like a real server, plus one name whose
answer is deliberately malformed (a compression loop) to exercise the
agent's parser on hostile bytes.
Must never: listen anywhere but the loopback address it is given.

    fake_dns.py ADDR ZONE.json      # prints "dns ready" once bound to ADDR:53
    ZONE: {"name": ["A", "1.2.3.4", ttl] | ["CNAME", "target", ttl] | ["LOOP"]}
"""
import json
import socket
import struct
import sys


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_query(q):
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    off, labels = 12, []
    while q[off]:
        n = q[off]
        labels.append(q[off + 1:off + 1 + n].decode())
        off += 1 + n
    qtype, qclass = struct.unpack("!HH", q[off + 1:off + 5])
    return qid, flags, ".".join(labels).lower(), qtype, q[12:off + 5]


def answer(zone, q):
    qid, flags, name, qtype, question = parse_query(q)
    rd = flags & 0x0100
    head = lambda an, rcode=0: struct.pack("!HHHHHH", qid, 0x8400 | rd | rcode, 1, an, 0, 0)
    rec = zone.get(name)
    if rec is None:
        return head(0, 3) + question            # NXDOMAIN
    if rec[0] == "LOOP":                         # owner is a pointer to itself
        loop_at = 12 + len(question)
        return head(1) + question + struct.pack("!HHHIH", 0xc000 | loop_at, 1, 1, 60, 4) + bytes(4)
    records, owner, hops = b"", name, 0
    while rec and rec[0] == "CNAME" and hops < 8:
        target = rec[1]
        records += encode_name(owner) + struct.pack("!HHIH", 5, 1, rec[2], len(encode_name(target)))
        records += encode_name(target)
        owner, rec, hops = target, zone.get(target), hops + 1
    an = hops
    if rec and rec[0] == "A" and qtype == 1:
        records += encode_name(owner) + struct.pack("!HHIH", 1, 1, rec[2], 4) + socket.inet_aton(rec[1])
        an += 1
    return head(an) + question + records


def main():
    addr, zone_path = sys.argv[1], sys.argv[2]
    with open(zone_path) as f:
        zone = {k.lower(): v for k, v in json.load(f).items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    print("dns ready", flush=True)
    while True:
        q, peer = s.recvfrom(4096)
        try:
            s.sendto(answer(zone, q), peer)
        except (IndexError, struct.error, UnicodeDecodeError):
            continue


if __name__ == "__main__":
    main()
