"""The netlink seam: the one way netvirt talks rtnetlink, in one package.

* ``encode.py``: the rtnetlink requests the build sends, encoded with ``struct`` (pure);
  ``LinkFields`` is the one vocabulary of link attributes;
* ``rtnl.py``: ``Rtnl`` (a raw socket per namespace, batches) and ``Netlink`` (operations);
* ``decode.py``: what the kernel answers, decoded with pyroute2's message classes (the only
  importer of pyroute2, and of its few modules only);
* ``errors.py``: ``translate``, where netlink and OS errors become the netvirt error tree.

Devices and namespaces use only the names exported here (and ``encode``).
"""

from netvirt._netlink import encode
from netvirt._netlink.decode import FdbEntry, LinkInfo
from netvirt._netlink.encode import LinkFields
from netvirt._netlink.errors import translate
from netvirt._netlink.rtnl import Netlink, Req, Rtnl

__all__ = ["FdbEntry", "LinkFields", "LinkInfo", "Netlink", "Req", "Rtnl", "encode", "translate"]
