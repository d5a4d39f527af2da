"""Usernames are unique whatever their case, in the database and not only in sign-up's check.

`services.accounts.register_user` looks for a case-insensitive match before it inserts, but
sign-ups racing for "alice" and "Alice" both passed that check, and auth_user's own constraint
is case-sensitive. The index goes on django.contrib.auth's table, which no model here can
declare a constraint for, hence SQL (the same on PostgreSQL and SQLite). ``UPPER`` is what
Django's ``iexact`` compares on PostgreSQL, so the check and the index agree; a losing
sign-up gets the IntegrityError that `register_user` already turns into ``username_taken``.
"""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("marketplace", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE UNIQUE INDEX marketplace_username_ci_uniq ON auth_user (UPPER(username))",
            reverse_sql="DROP INDEX marketplace_username_ci_uniq",
        ),
    ]
