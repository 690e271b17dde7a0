"""S3b (seeds 001, 004): a star of N nodes, each joined by a veth pair to bridge
br0 in node sw. Every node can reach every other through the bridge.

    python -m netvirt run scenarios/s3b_star.py --param n=100

The same file with n=100..1000 is the build benchmark's topology.
"""


def scenario(n: int = 4, pings: str = "ends") -> dict:
    """``pings``: "ends" checks first<->last, "all" checks every pair (n*(n-1) pings)."""
    if not 2 <= n <= 4000:
        raise ValueError("n must be 2..4000")
    nodes: dict = {"sw": {"interfaces": {"br0": {"kind": "bridge"}}}}
    links = []
    for i in range(1, n + 1):
        port = f"p{i}"
        nodes["sw"]["interfaces"][port] = {"master": "br0"}
        hi, lo = divmod(i, 250)
        nodes[f"h{i}"] = {"interfaces": {"eth0": {"addresses": [f"10.2.{hi}.{lo + 1}/16"]}}}
        links.append([f"h{i}:eth0", f"sw:{port}"])

    def addr(i: int) -> str:
        hi, lo = divmod(i, 250)
        return f"10.2.{hi}.{lo + 1}"

    if pings == "all":
        steps = [{"ping": {"from": f"h{a}", "to": addr(b), "count": 1}}
                 for a in range(1, n + 1) for b in range(1, n + 1) if a != b]
    else:
        steps = [{"ping": {"from": "h1", "to": addr(n), "count": 3}},
                 {"ping": {"from": f"h{n}", "to": addr(1), "count": 3}}]
    return {"name": f"s3b-star{n}"[:12], "description": f"star of {n} nodes on one bridge",
            "nodes": nodes, "links": links, "steps": steps}
