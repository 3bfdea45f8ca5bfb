"""What more than one runtime uses.

    engine.py   the Docker engine and the Compose CLI (compose builds and runs on it, kind's nodes run on it)
    images.py   the stack's images, tagged by a hash of their build inputs (compose, kind, kubernetes)
"""
