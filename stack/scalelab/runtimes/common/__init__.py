"""What more than one runtime uses.

    engine.py   the Docker engine and the Compose CLI (compose builds and runs on it, kind's nodes run on it)
    images.py   the stack's images, tagged by a hash of their build inputs (compose, kind, kubernetes)
    nginx.py    nginx's upstream from the workspace, the 501 entry, nginx -t's complaint explained, and
                install_tested: render → nginx -t → fall back to the 501 entry on a refusal → install
    replication.py  the primary's side of streaming replication (lab 04); each runtime passes its pg_hba.conf
    prometheus.py   what Prometheus scrapes, how often, its configuration's shape, the rules file (lab 07)
"""
