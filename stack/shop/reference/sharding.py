import bisect
import hashlib


def stable_hash(key) -> int:
    """The same 64-bit number for the same key in every process and on every machine."""
    # Not hash(): Python salts it per process (PYTHONHASHSEED), so two replicas would disagree.
    return int.from_bytes(hashlib.md5(str(key).encode()).digest()[:8], "big")


def shard_for(key, n: int) -> int:
    """Which of n shards holds `key`: a number 0 .. n-1."""
    return stable_hash(key) % n


class HashRing:
    """Consistent hashing: every node owns `vnodes` points on a ring of 2**64 positions;
    a key belongs to the first point at or after its own hash (wrapping around)."""

    def __init__(self, nodes, vnodes: int = 100):
        self.points = sorted((stable_hash(f"{node}#{i}"), node) for node in nodes for i in range(vnodes))
        self.hashes = [h for h, _ in self.points]

    def node_for(self, key):
        i = bisect.bisect_left(self.hashes, stable_hash(key)) % len(self.hashes)
        return self.points[i][1]
