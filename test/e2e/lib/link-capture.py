#!/usr/bin/env python3
"""Captures on one link (AF_PACKET, like tcpdump) and counts the packets this host SENT to a
network: evidence that nothing leaves in the clear. Usage: link-capture.py IFACE CIDR.
Prints {"ready":true} once capturing, and on SIGTERM one JSON line {"sent":N,"samples":[...]}."""
import ipaddress
import json
import signal
import socket
import sys

iface, net = sys.argv[1], ipaddress.ip_network(sys.argv[2])
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.bind((iface, 0))
sent, samples = 0, []


def done(*_):
    print(json.dumps({"sent": sent, "samples": samples}), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
print(json.dumps({"ready": True}), flush=True)
while True:
    frame, addr = s.recvfrom(65535)
    if addr[2] != PACKET_OUTGOING or len(frame) < 34:
        continue
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and net.version == 4:
        dst = ipaddress.ip_address(frame[30:34])
    elif ethertype == 0x86DD and net.version == 6 and len(frame) >= 54:
        dst = ipaddress.ip_address(frame[38:54])
    else:
        continue
    if dst in net:
        sent += 1
        if len(samples) < 5:
            samples.append(str(dst))
