"""Lab 04's shard function, consistent-hash ring and sharded store (real databases on the lab's Postgres)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from collections import Counter
from pathlib import Path

import pytest

from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs.lab04 import shards as lab04_sharding
from scalelab.sharding import ShardedStore
from shop.reference import sharding
from shop.reference.sharding import HashRing, shard_for

REFERENCE = Path(sharding.__file__)
IDS = range(1, 10_001)


def test_shard_for_is_the_same_in_new_processes_with_other_hash_seeds():
    keys = [f"user:{i}" for i in range(300)] + ["ada@example.com", 7, 10**12]
    here = [shard_for(k, 4) for k in keys]
    probe = "import json, sys; from shop.reference.sharding import shard_for; " \
            "print(json.dumps([shard_for(k, 4) for k in json.loads(sys.argv[1])]))"
    for seed in ("0", "1", "12345"):
        out = subprocess.run([sys.executable, "-c", probe, json.dumps(keys)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == here, seed


def test_shard_for_returns_an_index_in_range_for_every_key():
    assert {shard_for(k, 4) for k in IDS} == {0, 1, 2, 3}
    assert {shard_for(k, 5) for k in IDS} == {0, 1, 2, 3, 4}


def test_ten_thousand_ids_spread_over_four_shards_within_ten_percent():
    counts = Counter(shard_for(k, 4) for k in IDS)
    assert all(abs(c - 2500) <= 250 for c in counts.values()), counts


def test_resharding_4_to_5_moves_about_80_percent_with_modulo_and_about_20_with_the_ring():
    modulo = sum(shard_for(k, 4) != shard_for(k, 5) for k in IDS) / len(IDS)
    nodes = [f"shard-{i}" for i in range(4)]
    four, five = HashRing(nodes), HashRing(nodes + ["shard-4"])
    ring = sum(four.node_for(k) != five.node_for(k) for k in IDS) / len(IDS)
    assert 0.75 <= modulo <= 0.85 and modulo > lab04_sharding.MODULO_MOVES_OVER
    assert 0.10 <= ring < lab04_sharding.RING_MOVES_UNDER


def test_adding_a_ring_node_moves_keys_only_to_that_node_and_removing_one_only_its_keys():
    nodes = [f"shard-{i}" for i in range(4)]
    four, five, three = HashRing(nodes), HashRing(nodes + ["shard-4"]), HashRing(nodes[:3])
    for k in IDS:
        if four.node_for(k) != five.node_for(k):
            assert five.node_for(k) == "shard-4"
        if four.node_for(k) != "shard-3":
            assert three.node_for(k) == four.node_for(k)


def test_the_ring_with_virtual_nodes_is_within_its_bound():
    counts = Counter(HashRing([f"shard-{i}" for i in range(4)]).node_for(k) for k in IDS)
    assert all(abs(c - 2500) <= 2500 * lab04_sharding.RING_EVEN_WITHIN for c in counts.values()), counts


@pytest.fixture
def store(stack):
    store = ShardedStore(stack, 4)
    store.clear()
    yield store
    store.drop()


ROWS = [{"id": i, "email": f"s{i}@example.com", "name": f"S {i}"} for i in range(1, 3001)]


def test_rows_live_only_on_the_shard_their_key_names_and_lookups_find_them(store):
    route = store.modulo(shard_for)
    written = store.put_many(ROWS, route)
    assert written == store.counts() and sum(written.values()) == len(ROWS)
    for name, ids in store.ids().items():
        assert all(route(i) == name for i in ids)
    for key in (1, 2, 1500, 3000):
        assert store.where(key) == [route(key)]
        shard, row = store.get(key, route)
        assert shard == route(key) and row["email"] == f"s{key}@example.com"
    assert store.get(999_999, route)[1] is None


def test_a_lookup_routed_by_another_function_misses_rows_that_exist(store):
    store.put_many(ROWS, store.modulo(shard_for))
    wrong = store.modulo(lambda key, n: (key + 1) % n)
    found = store.get_many(range(1, 3001), wrong)
    assert sum(row is None for row in found.values()) > 2000


def test_resharding_moves_the_rows_it_counts_and_every_row_is_found_afterwards(store):
    store.grow(5)
    four, five = store.ring(HashRing, 4), store.ring(HashRing, 5)
    store.put_many(ROWS, four)
    moved = store.reshard(four, five)
    assert 0.10 * len(ROWS) <= moved < 0.35 * len(ROWS)
    assert store.counts()["shop_shard_4"] == moved   # with a ring, only the new shard receives rows
    assert all(row is not None for row in store.get_many(range(1, 3001), five).values())
    modulo_moved = store.reshard(five, store.modulo(shard_for, 5))
    assert modulo_moved > 0.6 * len(ROWS)
    assert sum(store.counts().values()) == len(ROWS)


def _workspace_with(tmp_path, stack, code: str):
    (tmp_path / "sharding.py").write_text(textwrap.dedent(code))
    return types.SimpleNamespace(workspace=tmp_path, database_url=stack.database_url)


def test_the_check_passes_with_the_reference(stack, tmp_path):
    shutil.copy(REFERENCE, tmp_path / "sharding.py")
    lab04_sharding.sharding.check(types.SimpleNamespace(workspace=tmp_path, database_url=stack.database_url))
    assert "stable across processes" in lab04_sharding.sharding.last_result


def test_the_check_says_not_attempted_for_the_stub(stack, tmp_path):
    fake = _workspace_with(tmp_path, stack, """
        def shard_for(key, n):
            # YOUR CODE HERE
            raise NotImplementedError()
        """)
    with pytest.raises(NotAttempted, match="not attempted yet"):
        lab04_sharding.sharding.check(fake)


def test_the_check_rejects_pythons_salted_hash(stack, tmp_path):
    code = REFERENCE.read_text().replace("return stable_hash(key) % n", "return hash(str(key)) % n")
    assert code != REFERENCE.read_text()
    with pytest.raises(CheckFailed, match="salted"):
        lab04_sharding.sharding.check(_workspace_with(tmp_path, stack, code))


def test_the_check_rejects_a_ring_that_moves_keys_between_old_nodes(stack, tmp_path):
    code = REFERENCE.read_text() + textwrap.dedent("""

        class HashRing:
            def __init__(self, nodes, vnodes=100):
                self.nodes = list(nodes)

            def node_for(self, key):
                return self.nodes[shard_for(key, len(self.nodes))]
        """)
    with pytest.raises(CheckFailed, match="only moves to the new node"):
        lab04_sharding.sharding.check(_workspace_with(tmp_path, stack, code))


def test_the_check_says_not_attempted_when_shard_for_calls_a_stub(stack, tmp_path):
    code = REFERENCE.read_text().replace(
        '    return int.from_bytes(hashlib.md5(str(key).encode()).digest()[:8], "big")',
        "    raise NotImplementedError()")
    assert code != REFERENCE.read_text()
    with pytest.raises(NotAttempted, match="stable_hash"):
        lab04_sharding.sharding.check(_workspace_with(tmp_path, stack, code))


def test_the_check_names_an_exception_in_learner_code(stack, tmp_path):
    code = REFERENCE.read_text().replace("return stable_hash(key) % n", "return stable_hash(key) % 0")
    with pytest.raises(CheckFailed, match="ZeroDivisionError"):
        lab04_sharding.sharding.check(_workspace_with(tmp_path, stack, code))
