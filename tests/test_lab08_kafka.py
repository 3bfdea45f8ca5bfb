"""Lab 08's event log on a real Kafka broker (member kafka-1 of the local stack): the relay
produces keyed messages, the projector is a member of a consumer group that commits after
applying; a killed projector catches up with nothing lost or doubled, a killed broker loses no
acknowledged event, the group's offsets reset replays the read model; the partition_key
exercise's check rejects the keys that break per-order ordering.

Needs Java 17+ and the jars (make tools-kafka): without them these tests skip, saying so; with
SCALELAB_REQUIRE_KAFKA set (make test) they fail instead.
"""

import os
from types import SimpleNamespace

import pytest

from conftest import solved_stack
from scalelab import db, kafka_broker
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import eventlog_kafka, lab08

lab8 = solved_stack(8)


def test_moving_with_the_stub_key_names_the_stub_and_nothing_is_marked_published(lab8):
    """First in this module: the move, with partition_key.py still the stub, stops in one message."""
    _need_kafka()
    ids = lab08.place_orders(lab8, 3)
    lab08.wait_orders(lab8, ids)
    path = lab8.workspace / "partition_key.py"
    solved = path.read_text()
    path.write_text("def key(event):\n    raise NotImplementedError()\n")
    try:
        with pytest.raises(CheckFailed, match=r"partition_key.key\(\) still raises NotImplementedError"):
            lab08.use_kafka(lab8)
        assert lab08.backlog(lab8)["unpublished"] > 0          # the outbox kept them all
    finally:
        path.write_text(solved)
    assert lab08.use_kafka(lab8) is True                          # fixed, moved again: the relay loads it anew
    assert lab08.backlog(lab8)["unpublished"] == 0


def _need_kafka():
    try:
        kafka_broker.jars()
        kafka_broker.java()
    except kafka_broker.KafkaUnavailable as exc:
        (pytest.fail if os.environ.get("SCALELAB_REQUIRE_KAFKA") else pytest.skip)(f"no Kafka broker here: {exc}")


@pytest.fixture(scope="module")
def kafka8(lab8):
    _need_kafka()
    ids = lab08.place_orders(lab8, 9)            # history on the Stream, before the move
    lab08.wait_orders(lab8, ids)
    lab08.wait_caught_up(lab8)
    assert lab08.use_kafka(lab8) is True
    return lab8


def test_the_move_to_kafka_publishes_the_whole_outbox_into_the_topic(kafka8):
    assert kafka8.members("kafka") == ["kafka-1"] and eventlog_kafka.on_kafka(kafka8)
    topic = lab08.topic_frame(kafka8)
    in_log = {r["seq"] for r in db.fetch(kafka8.database_url(), "SELECT seq FROM order_events")}
    assert in_log and in_log <= set(topic.seq)
    assert lab08.backlog(kafka8) == {"unpublished": 0, "topic": len(topic), "lag": 0}   # (moved twice: duplicates)


def test_every_order_s_events_share_one_partition_in_seq_order(kafka8):
    ids = lab08.place_orders(kafka8, 12)
    lab08.wait_orders(kafka8, ids)
    lab08.wait_relayed(kafka8)
    frame = lab08.topic_frame(kafka8)
    mine = frame[frame.order_id.isin(ids)]
    assert eventlog_kafka.out_of_order(mine) == []
    assert mine.partition.nunique() >= 3                           # 12 orders spread over the 6 partitions
    for _, events in mine.sort_values("offset").groupby(["partition", "order_id"]):
        assert list(events.seq) == sorted(events.seq)             # the partition holds them in seq order
    assert set(mine.key) == {str(i) for i in ids}                 # keyed by order id (the reference)


def test_a_killed_projector_catches_up_from_its_committed_offsets_nothing_lost_or_doubled(kafka8):
    result = lab08.kill_drill(kafka8, n=24)
    assert result["log"] == "Kafka topic"
    assert result["backlog_at_restart"]["lag"] > 0
    assert result["republished"] == 10 and result["skipped"] >= 10   # duplicates reached it and were skipped
    left = lab08.backlog(kafka8)
    assert (left["unpublished"], left["lag"]) == (0, 0), left
    events = db.fetchval(kafka8.database_url(), "SELECT count(*) FROM order_events")
    assert lab08.totals(lab08.dump_read_model(kafka8))["events"] == events   # each applied exactly once


def test_a_killed_broker_comes_back_with_every_acknowledged_event(kafka8):
    result = lab08.broker_drill(kafka8, n=6)   # asserts inside: every event of the log in the topic, model equal
    assert result["waiting_in_outbox"] > 0       # the relay could not publish while the broker was dead
    assert result["topic_after"] >= result["topic_before"] + result["events"]
    assert kafka8.members("kafka") == ["kafka-1"]


def test_resetting_the_group_s_offsets_replays_the_same_read_model(kafka8):
    result = lab08.replay(kafka8)
    assert result["keys_after_delete"] == 0 and result["keys"] > 0
    assert result["entries_replayed"] >= result["keys"] // 3


def test_the_reference_key_passes_its_check_with_two_projectors_live(kafka8, capsys):
    lab08.partition_key.check(kafka8)
    out = capsys.readouterr().out
    assert "✓" in out and "projector-2" in out
    assert kafka8.members("projector") == ["projector-1"]         # scaled back after


WRONG_KEYS = [
    ("by seq: every event its own key", "return str(event['seq'])", "more than one key"),
    ("by type", "return event['type']", "more than one key"),
    ("no key (null: spread at random)", "return None", "any partition"),
    ("one constant key", "return 'orders'", "1 of 6 partitions"),
    ("by user modulo 2", "return str(event['user_id'] % 2)", "of 6 partitions"),
    ("a dict", "return {'order': event['order_id']}", "return a str"),
    ("the stub", "raise NotImplementedError()", "not attempted"),
]


@pytest.mark.parametrize("why,body,says", WRONG_KEYS, ids=[w[0] for w in WRONG_KEYS])
def test_a_wrong_key_is_caught(kafka8, tmp_path, why, body, says):
    (tmp_path / "partition_key.py").write_text(f"def key(event):\n    {body}\n")
    fake = SimpleNamespace(workspace=tmp_path, supports=kafka8.supports, members=kafka8.members,
                           kafka_bootstrap=kafka8.kafka_bootstrap)
    with pytest.raises((CheckFailed, NotAttempted), match=says):
        lab08.partition_key.check(fake)


def test_keying_by_user_keeps_each_order_in_one_partition_too():
    events = eventlog_kafka.sample_events()
    by_user = {e["order_id"]: {e["user_id"]} for e in events}
    assert all(len(users) == 1 for users in by_user.values())     # an order has one user: its events stay together


def test_a_runtime_without_kafka_says_so_in_one_line(capsys):
    fake = SimpleNamespace(supports=lambda capability: False, runtime_name="compose")
    assert lab08.use_kafka(fake) is False
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "compose" in out and 'RUNTIME="local"' in out


def test_a_machine_without_the_broker_s_jars_says_so_in_one_line_and_the_lab_goes_on(capsys):
    from scalelab.errors import RuntimeUnavailable

    def scale(service, replicas):
        raise RuntimeUnavailable("no Kafka broker here: Kafka 4.4.0 jars not found (make tools-kafka gets both)")
    fake = SimpleNamespace(supports=lambda capability: True, members=lambda service: [], scale=scale,
                           runtime_name="local")
    assert lab08.use_kafka(fake) is False
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "make tools-kafka" in out and "Redis Stream" in out
