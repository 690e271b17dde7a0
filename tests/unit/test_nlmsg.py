"""The struct-encoded rtnetlink messages, checked against pyroute2's decoders (no kernel)."""

from __future__ import annotations

import ipaddress
import struct

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netvirt._netlink import encode as _nlmsg


def decode(cls, msg: bytes):  # type: ignore[no-untyped-def]
    m = cls(msg)
    m.decode()
    return m


def test_veth_create_carries_both_ends() -> None:
    peer = _nlmsg.veth_peer(index=7001, ifname="p1", mtu=9000, mac="02:00:00:00:00:02", ns_fd=5)
    msg = _nlmsg.new_link("veth", index=7000, up=True, data=peer, ifname="eth0", mtu=9000,
                          mac="02:00:00:00:00:01", master=3)
    m = decode(ifinfmsg, msg)
    assert m["header"]["type"] == _nlmsg.RTM_NEWLINK
    assert m["header"]["flags"] & _nlmsg.NLM_F_CREATE and m["header"]["flags"] & _nlmsg.NLM_F_EXCL
    assert m["index"] == 7000 and m["flags"] & 1 and m["change"] & 1
    assert m.get("ifname") == "eth0" and m.get("mtu") == 9000 and m.get("master") == 3
    assert m.get("address") == "02:00:00:00:00:01"
    assert m.get(("linkinfo", "kind")) == "veth"
    # the peer: its own ifinfomsg (with the index the kernel honours) and attributes
    data = _nlmsg.find_attr(msg, (_nlmsg.IFLA_LINKINFO, _nlmsg.IFLA_INFO_DATA, _nlmsg.VETH_INFO_PEER), 32)
    assert data is not None
    assert struct.unpack_from("=BxHiII", data)[2] == 7001
    assert _nlmsg.find_attr(data, (_nlmsg.IFLA_IFNAME,), 16) == b"p1\0"
    assert _nlmsg.find_attr(data, (_nlmsg.IFLA_NET_NS_FD,), 16) == struct.pack("=I", 5)


def test_set_link_by_name_and_flags() -> None:
    m = decode(ifinfmsg, _nlmsg.set_link(ifname="lo", up=True))
    assert m["index"] == 0 and m.get("ifname") == "lo" and m["flags"] == 1 and m["change"] == 1
    assert not m["header"]["flags"] & _nlmsg.NLM_F_CREATE
    down = decode(ifinfmsg, _nlmsg.set_link(index=4, up=False, alias="netvirt:lab"))
    assert down["flags"] == 0 and down["change"] == 1 and down.get("ifalias") == "netvirt:lab"
    untouched = decode(ifinfmsg, _nlmsg.set_link(index=4, mtu=1400))
    assert untouched["change"] == 0 and untouched.get("mtu") == 1400


def test_bridge_and_macvlan_data() -> None:
    br = decode(ifinfmsg, _nlmsg.new_link("bridge", ifname="br0", data=_nlmsg.bridge_data(
        stp=True, ageing_cs=1000, forward_delay_cs=400)))
    info = br.get("linkinfo").get("data")
    assert info.get_attr("IFLA_BR_STP_STATE") == 1 and info.get_attr("IFLA_BR_AGEING_TIME") == 1000
    assert info.get_attr("IFLA_BR_FORWARD_DELAY") == 400
    mv = decode(ifinfmsg, _nlmsg.new_link("macvlan", ifname="mv0", link=2,
                                          data=_nlmsg.macvlan_data("private")))
    assert mv.get("link") == 2
    assert mv.get("linkinfo").get("data").get_attr("IFLA_MACVLAN_MODE") == "private"  # 1


def test_addresses() -> None:
    v4 = decode(ifaddrmsg, _nlmsg.new_addr(3, ipaddress.ip_interface("10.1.0.2/24")))
    assert v4["family"] == 2 and v4["prefixlen"] == 24 and v4["index"] == 3
    assert v4.get("local") == "10.1.0.2" and v4.get("address") == "10.1.0.2"
    v6 = decode(ifaddrmsg, _nlmsg.new_addr(3, ipaddress.ip_interface("fd00::2/64")))
    assert v6["family"] == 10 and v6.get("address") == "fd00::2" and v6["flags"] & _nlmsg.IFA_F_NODAD


def test_routes() -> None:
    r = decode(rtmsg, _nlmsg.new_route(ipaddress.ip_network("10.9.0.0/16"),
                                       via=ipaddress.ip_address("192.168.1.12")))
    assert r["dst_len"] == 16 and r.get("dst") == "10.9.0.0" and r.get("gateway") == "192.168.1.12"
    assert r["table"] == 254 and r["scope"] == 0
    d = decode(rtmsg, _nlmsg.new_route(ipaddress.ip_network("0.0.0.0/0"), oif=4))
    assert d["dst_len"] == 0 and d.get("dst") is None and d.get("oif") == 4 and d["scope"] == 253


def test_replies_and_errors() -> None:
    ack = _nlmsg.message(_nlmsg.NLMSG_ERROR, 0, struct.pack("=i", 0) + bytes(16), seq=5)
    err = _nlmsg.message(_nlmsg.NLMSG_ERROR, 0, struct.pack("=i", -17) + bytes(16), seq=6)
    got = list(_nlmsg.replies(ack + err))
    assert [(k, s) for k, s, _ in got] == [(2, 5), (2, 6)]
    assert _nlmsg.error_code(got[0][2]) == 0 and _nlmsg.error_code(got[1][2]) == 17
    assert _nlmsg.with_seq(ack, 9)[8:12] == struct.pack("=I", 9)
    assert list(_nlmsg.replies(b"\x00" * 7)) == []  # truncated: nothing, no exception


def test_not_ready_reads_the_port_state_and_the_operstate_of_up_links_only() -> None:
    """The settle pass's check (Netlink.wait_ports_enabled), on hand-made RTM_NEWLINK payloads."""
    import struct as st

    def link(*, flags: int, kind: bytes, operstate: int | None = None, port_state: int | None = None,
             arphrd: int = 1) -> bytes:
        info = _nlmsg.attr(_nlmsg.IFLA_INFO_KIND, kind + b"\0")
        if port_state is not None:
            info += _nlmsg.attr(_nlmsg.IFLA_INFO_SLAVE_DATA,
                                _nlmsg.attr(_nlmsg.IFLA_BRPORT_STATE, bytes([port_state])))
        attrs = _nlmsg.attr(_nlmsg.IFLA_LINKINFO, info)
        if operstate is not None:
            attrs += _nlmsg.attr(_nlmsg.IFLA_OPERSTATE, bytes([operstate]))
        return st.pack("=BxHiII", 0, arphrd, 7, flags, 0) + attrs

    up = 0x1 | _nlmsg.IFF_LOWER_UP
    assert _nlmsg.not_ready(link(flags=up, kind=b"veth", operstate=2))  # carrier not handled yet
    assert not _nlmsg.not_ready(link(flags=up, kind=b"veth", operstate=_nlmsg.IF_OPER_UP))
    assert _nlmsg.not_ready(link(flags=up, kind=b"veth", operstate=_nlmsg.IF_OPER_UP,
                                 port_state=_nlmsg.BR_STATE_DISABLED))  # a port still disabled
    assert not _nlmsg.not_ready(link(flags=up, kind=b"veth", operstate=_nlmsg.IF_OPER_UP, port_state=3))
    assert not _nlmsg.not_ready(link(flags=0x1, kind=b"veth", operstate=2))  # no carrier: not waited
    assert not _nlmsg.not_ready(link(flags=up, kind=b"tun", operstate=0))  # tun/tap: UNKNOWN for good
    assert not _nlmsg.not_ready(link(flags=up, kind=b"veth", operstate=2, arphrd=772))  # lo
