"""The one netlink request impaired links add (to move into ``netvirt._netlink`` at integration).

``IFLA_TXQLEN`` on a tap sizes the ring between the kernel and the tap's fd
(tun resizes its ``ptr_ring`` on the change). A tap does not push back on
the stack: when the ring is full, ``tun_net_xmit`` drops. A veth hands
frames to its peer at once, so a burst never loses anything there; the
datapath reads a batch per wake-up, and a 1000-slot ring lost 10% of a
3000-datagram burst in a test. 8192 slots make the tap pair as patient as a veth.
"""

from __future__ import annotations

from netvirt import _nlmsg
from netvirt._netlink import Netlink, Req

__all__ = ["TAP_TXQLEN", "set_txqlen"]

IFLA_TXQLEN = 13
TAP_TXQLEN = 8192


def set_txqlen(nl: Netlink, index: int, qlen: int, name: str) -> None:
    body = _nlmsg.ifinfo(index) + _nlmsg.attr_u32(IFLA_TXQLEN, qlen)
    msg = _nlmsg.message(_nlmsg.RTM_NEWLINK, _nlmsg.NLM_F_REQUEST | _nlmsg.NLM_F_ACK, body)
    nl.request([Req(msg, f"set txqueuelen {qlen}", name)])
