"""The seed's `python scripts/setup_session_db.py create|verify`.

create: apply every migration (tables, indexes, the global retention policy).
verify: check every migration is applied and the session tables have their columns.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fimlsessions.settings")


def create() -> int:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=1)
    print("session database ready")
    return verify()


def verify() -> int:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from sessions_app.models import RetentionPolicy, Session, TimelineChunk

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    problems = [f"migration not applied: {m.app_label}.{m.name}" for m, _ in pending]
    with connection.cursor() as cursor:
        for model in (Session, TimelineChunk, RetentionPolicy):
            table = model._meta.db_table
            columns = {
                c.name for c in connection.introspection.get_table_description(cursor, table)
            }
            wanted = {f.column for f in model._meta.concrete_fields}
            if not columns:
                problems.append(f"table missing: {table}")
            elif wanted - columns:
                problems.append(f"{table} lacks columns: {', '.join(sorted(wanted - columns))}")
    for problem in problems:
        print(problem)
    print("verify: OK" if not problems else f"verify: {len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("create", "verify"):
        print("usage: setup_session_db.py create|verify")
        return 2
    import django

    django.setup()
    return create() if argv[1] == "create" else verify()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
