"""`python train.py --keys [WORD]`: every config key with its default, allowed values and meaning,
read from the schemas and the method registry (so it cannot go stale), grouped by job: the
classification groups of config/schema.py's KEY_GROUPS, each transfer method's options under its
name, then detection's keys. WORD keeps the keys whose name, meaning, group or method holds it."""
import textwrap


def _shown(v):
    return 'null' if v is None else str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else str(v)


def groups():
    """[(title, [Field, ...])] of every key of every task, in the order they are listed."""
    from .schema import FIELDS, KEY_GROUPS
    from .detection import FIELDS as DETECTION
    from symbols.transfer import METHODS
    out, seen = [], set()
    for title, keys in KEY_GROUPS:
        out.append(('Classification: %s' % title.lower(), [FIELDS[k] for k in keys]))
        seen.update(keys)
        if title == 'Distillation':
            for m in METHODS.values():
                if m.options:
                    out.append(('Distillation: %s options (kt_type=%s)' % (m.name, m.name),
                                [FIELDS[o.name] for o in m.options]))
                    seen.update(o.name for o in m.options)
    rest = [f for k, f in FIELDS.items() if k not in seen]
    if rest:
        out.append(('Classification: other', rest))
    out.append(('Detection (task=detection; the voc_* presets)', list(DETECTION.values())))
    from .segmentation import FIELDS as SEGMENTATION
    out.append(('Segmentation (task=segmentation; the seg_* presets)', list(SEGMENTATION.values())))
    return out


def listing(word=None, width=100):
    """The text `--keys` prints: a heading per group, then per key `name = default  (allowed)` and
    its meaning, indented; only keys matching `word` (case-insensitive) when given."""
    word = (word or '').lower()
    lines = []
    for title, fields in groups():
        kept = [f for f in fields if not word or word in f.name.lower() or word in f.doc.lower() or
                word in title.lower()]
        if not kept:
            continue
        lines += ['', '%s' % title, '-' * len(title)]
        for f in kept:
            allowed = getattr(f.check, 'allowed', '')
            lines.append('%s = %s%s' % (f.name, _shown(f.default), '   (%s)' % allowed if allowed else ''))
            lines += textwrap.wrap(f.doc, width, initial_indent='    ', subsequent_indent='    ')
    if not lines:
        return None
    return '\n'.join(lines[1:])


def close_keys(word):
    """Keys a user probably meant by `word` (another toolkit's name for one, or a near spelling)."""
    import difflib
    from . import CLASSIFICATION
    said = CLASSIFICATION.synonyms.get(word) or CLASSIFICATION.synonyms.get(str(word).lower())
    if said and ' ' not in said:
        return [said]
    names = sorted({f.name for _, fields in groups() for f in fields})
    return difflib.get_close_matches(str(word), names, n=2)
