RESERVED = 3 + 5  # superuser_reserved_connections + room for migrations and psql


def pool_size(cpu_count: int, db_max_connections: int, replicas: int) -> tuple[int, int]:
    """(min_size, max_size) of ONE replica's pool, so that all replicas fit in the DB."""
    budget = (db_max_connections - RESERVED) // replicas
    max_size = max(1, min(budget, 4 * cpu_count))
    min_size = min(2, max_size)
    return min_size, max_size
