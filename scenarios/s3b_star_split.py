"""S3b split over two machines (issue 13): the star of ``s3b_star.py``, its bridge
``br0`` (node ``sw``) and the first half of the hosts on m1, the other half on m2.
Each link from a host on m2 to its bridge port on m1 crosses machines and is
carried by its own VXLAN (one VNI per link) over the underlay 198.18.0.0/24.

    python -m netvirt run scenarios/s3b_star_split.py --param n=20

The machines' addresses are those of the namespace-machines the tests make
(``netvirt.multi.testing``); for real hosts, change ``MACHINES`` (or leave a
node's ``machine`` out: netvirt places it, keeping links local where it can).
"""

#: one MTU for the whole bridged segment: what a VXLAN over a 1500-byte underlay carries
#: (1500 - 50), so local and remote ports of br0 agree and no frame is too big for one
MTU = 1450

MACHINES = {
    "m1": {"ssh": "root@198.18.0.1", "underlay": "198.18.0.1"},
    "m2": {"ssh": "root@198.18.0.2", "underlay": "198.18.0.2"},
}


def scenario(n: int = 4, pings: str = "ends") -> dict:
    """``pings``: "ends" checks first<->last (across machines) and a local pair, "all" every pair."""
    if not 2 <= n <= 2000:
        raise ValueError("n must be 2..2000")
    nodes: dict = {"sw": {"machine": "m1", "interfaces": {"br0": {"kind": "bridge"}}}}
    links = []

    def addr(i: int) -> str:
        hi, lo = divmod(i, 250)
        return f"10.2.{hi}.{lo + 1}"

    for i in range(1, n + 1):
        nodes["sw"]["interfaces"][f"p{i}"] = {"master": "br0"}
        nodes[f"h{i}"] = {"machine": "m1" if i <= n // 2 else "m2",
                          "interfaces": {"eth0": {"addresses": [f"{addr(i)}/16"]}}}
        links.append({"endpoints": [f"h{i}:eth0", f"sw:p{i}"], "mtu": MTU})
    if pings == "all":
        steps = [{"ping": {"from": f"h{a}", "to": addr(b), "count": 1}}
                 for a in range(1, n + 1) for b in range(1, n + 1) if a != b]
    else:
        steps = [{"ping": {"from": "h1", "to": addr(n), "count": 3}},
                 {"ping": {"from": f"h{n}", "to": addr(1), "count": 3}},
                 {"connect": {"from": "h1", "to": f"{addr(n)}:5000", "proto": "tcp", "bytes": 100000}}]
        if n >= 4:
            steps.append({"ping": {"from": f"h{n}", "to": addr(n - 1), "count": 2}})  # both on m2
    return {"name": f"s3b-sp{n}", "description": f"star of {n} nodes on one bridge, two machines",
            "machines": MACHINES, "nodes": nodes, "links": links, "steps": steps}
