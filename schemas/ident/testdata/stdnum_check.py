"""Reference verdicts from python-stdnum for TestIntegrationStdnum.

Usage: stdnum_check.py ric|uscc FILE

Reads one value per line from FILE and prints one line per value:
  ric:  "<full> <core>"  full = stdnum.cn.ric.is_valid(value): 1, 0, or E when stdnum
        raised something other than a ValidationError; core = the same validate() with
        its birth-place lookup (get_birth_place, a table of historic county codes with
        validity years) replaced by a no-op, i.e. only length, format, check digit and
        birth date: 1 or 0.
  uscc: "<full>"  full = stdnum.cn.uscc.is_valid(value): 1, 0, or E.
The values are passed exactly as given; stdnum's compact() upper-cases them itself.
"""

import sys

from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError


def verdict(validate, value):
    try:
        validate(value)
        return '1'
    except ValidationError:
        return '0'
    except Exception:  # noqa: B902 - a crash is reported, not hidden
        return 'E'


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path, encoding='utf-8') as f:
        values = [line.rstrip('\n') for line in f]
    out = []
    if kind == 'ric':
        place = ric.get_birth_place
        for v in values:
            full = verdict(ric.validate, v)
            ric.get_birth_place = lambda number: {}
            try:
                core = verdict(ric.validate, v)
            finally:
                ric.get_birth_place = place
            out.append(full + ' ' + core)
    elif kind == 'uscc':
        out = [verdict(uscc.validate, v) for v in values]
    else:
        sys.exit('unknown kind ' + kind)
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
