"""Lab 04 — database scaling: ``from scalelab.labs import lab04``; ``lab04.<name>`` is any public name below.

    replicas.py  a hot standby from the learner's primary config, lag under writes, the read/write
                 split with read-your-writes (exercises ``replication``, ``read_routing``)
    shards.py    sharding by key (modulo vs a hash ring), the double spend and its fixes, N+1
                 (exercises ``sharding``, ``debit``)
"""

from scalelab.labs.lab04.replicas import *  # noqa: F401,F403
from scalelab.labs.lab04.shards import *  # noqa: F401,F403
