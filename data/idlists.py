"""Image ids of a split list (VOC's ImageSets/*/<split>.txt), each used once."""
import logging

_SAID = set()        # (file, repeated ids) already warned of: once a process


def once_each(ids, path, what='image list'):
    """The positions in `ids` (a list file's ids, in order) of each id's first listing: an id listed again
    would be trained on, or scored, twice. One warning a file (`what` names it) says which ids repeat."""
    first, again = {}, []
    for k, i in enumerate(ids):
        if i in first:
            again.append(i)
        else:
            first[i] = k
    repeated = list(dict.fromkeys(again))
    if repeated and (path, tuple(repeated)) not in _SAID:
        _SAID.add((path, tuple(repeated)))
        logging.getLogger('data').warning('%s %s names %d image(s) more than once (e.g. %s): each is used once',
                                          what, path, len(repeated), ', '.join(repeated[:3]))
    return sorted(first.values())
