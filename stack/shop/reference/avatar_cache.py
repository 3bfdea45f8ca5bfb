from collections import OrderedDict

MAX_AVATARS = 1000  # at most this many rendered avatars in memory (~14 MB)

_rendered: OrderedDict[str, str] = OrderedDict()   # name -> SVG, the least recently used first


def cached_avatar(name: str, render) -> str:
    """render(name) once, then from memory: a bounded cache that keeps the recently used names."""
    if name in _rendered:
        _rendered.move_to_end(name)  # used now: the last to be evicted
        return _rendered[name]
    svg = _rendered[name] = render(name)
    if len(_rendered) > MAX_AVATARS:
        _rendered.popitem(last=False)  # evict the least recently used
    return svg
