"""A deploy split into task files (issue 9's CLI-parity case): two ``local.include``s, one
relative to the current directory and one (``./``) relative to this file, ``_sudo = True``
from ``group_data/all.py``, a ``@deploy`` function, ``config.py`` and ``--data`` host data.

    cd tests/pyinfra/deploys/split && pyinfra -y @orbstack/NAME deploy.py --data greeting=hi
"""

from pyinfra import local

local.include("tasks/app.py")
local.include("./tasks/motd.py")
