"""Member names for pods (runtimes/kubernetes/members.py), without a cluster: pods numbered in
the order they appear, numbers kept while pods live, a killed member down until started, a
replacement taking the name of the member it replaces."""

from scalelab.runtimes.kubernetes.members import Names


def test_pods_are_numbered_in_order_and_keep_their_numbers():
    names = Names()
    assert names.number("users", ["a", "b"]) is True
    assert names.members("users") == {"users-1": "a", "users-2": "b"}
    assert names.number("users", ["a", "b"]) is False           # nothing changed
    names.number("users", ["b", "c"])                            # a went, c came: c takes the free 1
    assert names.members("users") == {"users-1": "c", "users-2": "b"}


def test_a_killed_member_stays_down_and_its_number_is_not_given_away():
    names = Names()
    names.number("users", ["a", "b", "c"])
    names.down("users", "users-2")
    names.number("users", ["a", "c"])
    assert names.members("users") == {"users-1": "a", "users-2": None, "users-3": "c"}
    names.number("users", ["a", "c", "d"])                       # another new pod (the HPA's): not users-2
    assert names.member_of("users", "d") == "users-4"


def test_a_started_member_takes_its_own_name_even_when_a_lower_one_is_down():
    names = Names()
    names.number("worker", ["a", "b", "c"])
    names.down("worker", "worker-1")
    names.down("worker", "worker-2")
    names.number("worker", ["c"])
    names.starting("worker", "worker-2")
    names.number("worker", ["c", "new"])
    assert names.members("worker") == {"worker-1": None, "worker-2": "new", "worker-3": "c"}


def test_a_replacement_takes_the_name_even_while_the_old_pod_is_still_listed():
    names = Names()
    names.number("users", ["old", "other"])
    names.starting("users", "users-1")                          # restart: the next new pod is users-1
    names.number("users", ["old", "other", "new"])
    assert names.member_of("users", "new") == "users-1" and names.member_of("users", "old") is None


def test_postgres_is_one_member_and_a_pod_with_a_stable_name_is_told_again():
    names = Names()
    names.number("postgres", ["postgres-0"])
    names.told["postgres-0"] = "postgres"
    assert names.members("postgres") == {"postgres": "postgres-0"}
    names.down("postgres", "postgres")
    names.number("postgres", [])
    names.starting("postgres", "postgres")
    names.number("postgres", ["postgres-0"])                     # the StatefulSet's new pod, same name
    assert names.members("postgres") == {"postgres": "postgres-0"} and "postgres-0" not in names.told


def test_names_survive_a_round_trip_through_json():
    names = Names()
    names.number("users", ["a"])
    names.down("users", "users-1")
    names.routed["users"] = ["users-1"]
    again = Names.from_json(names.to_json())
    assert again.to_json() == names.to_json()
