"""Pure per-packet code: parsing, answers, checksums, GSO/vnet, pcap writing.

Nothing here does I/O (except :class:`~netvirt.wire.pcap.PcapWriter` on its
own file) or imports scapy: ``struct``, slicing and ``int.from_bytes``, so it
runs per packet on the programs' hot paths and is tested without a kernel.
"""
