def primary_settings() -> dict[str, str]:
    """postgresql.conf settings of a primary that standbys can stream from."""
    return {
        "wal_level": "replica",        # WAL carries enough to rebuild every change on a standby
        "max_wal_senders": "10",       # one per standby, plus two per pg_basebackup in progress
        "wal_keep_size": "256MB",      # WAL kept for a standby that fell behind (or use a slot)
    }


def replication_role_sql(role: str, password_literal: str) -> str:
    """A role that may replicate (and log in), nothing more: not a superuser."""
    return f"CREATE ROLE {role} WITH REPLICATION LOGIN PASSWORD {password_literal}"


def hba_line(role: str, standby_address: str) -> str:
    """Let that role open replication connections from the standby's address, with a password."""
    return f"host replication {role} {standby_address} scram-sha-256"
