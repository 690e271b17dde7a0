"""S3b: N nodes, each joined by a veth pair to bridge br0 in node sw."""


def scenario(n: int = 4, mtu=1500, stp: bool = False, prefix: str = "n"):
    nodes = {"sw": {"interfaces": {"br0": {"kind": "bridge", "stp": stp}}}}
    links = []
    for i in range(1, n + 1):
        nodes["sw"]["interfaces"][f"p{i}"] = {"master": "br0", "mtu": mtu}
        nodes[f"{prefix}{i}"] = {"interfaces": {"eth0": {"addresses": [f"10.3.{i // 250}.{i % 250 + 1}/16"]}}}
        links.append([f"{prefix}{i}:eth0", f"sw:p{i}"])
    steps = [{"ping": {"from": f"{prefix}1", "to": f"10.3.{i // 250}.{i % 250 + 1}"}}
             for i in range(2, n + 1)]
    return {"name": f"star{n}", "nodes": nodes, "links": links, "steps": steps}
