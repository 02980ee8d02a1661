"""Who may do what: users and their password hashes, signed tokens, roles, login limits.

    passwords.py      scrypt password hashes, hashed API keys, constant-time checks
    tokens.py         stateless HS256 tokens (user, role, expiry) signed with the secrets key
    roles.py          the one table of which operation needs which role
    limiter.py        failed logins counted per client address
    authenticator.py  the front ends' single entry: credentials → Identity → allowed or not
    user_file.py      editing ``[[auth.users]]`` in the secrets file (``flight-lake users``)

The front ends only translate: Flight in ``flight/bearer.py``, HTTP in ``http/guard.py``.
"""

from __future__ import annotations

from flight_lake.auth.authenticator import Authenticator, Identity
from flight_lake.auth.roles import OPERATIONS, Role, register_operations, required_role

__all__ = ["OPERATIONS", "Authenticator", "Identity", "Role", "register_operations",
           "required_role"]
