"""`make run`'s pieces: the login hint for the ready line, the port and .env handling."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bootstrap_env(settings, tmp_path, monkeypatch):
    settings.STATIC_ROOT = tmp_path / "static"
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEED_DEMO", "false")
    return tmp_path


@pytest.mark.django_db
def test_login_note_has_the_generated_password_then_how_to_reset_it(
    bootstrap_env, django_user_model, capsys
):
    note = bootstrap_env / "note"
    call_command("bootstrap", login_note=str(note))
    user, password = note.read_text().split(" / ")
    assert user == "admin"
    assert django_user_model.objects.get(username="admin").check_password(password)
    assert "make password" in capsys.readouterr().out  # the boxed notice says how to reset it

    call_command("bootstrap", login_note=str(note))
    assert note.read_text() == "admin / password set earlier; reset with make password"


def test_honcho_gets_the_port_and_never_reads_env_itself():
    serve = (ROOT / "scripts" / "serve.sh").read_text()
    command = next(line for line in serve.splitlines() if line.startswith("honcho start"))
    assert '-p "$PORT"' in command and "-e /dev/null" in command
    assert 'PORT="${PORT:-8000}"' in serve
    # .env is read once, before the embedded wrapper, by the run target.
    makefile = (ROOT / "Makefile").read_text()
    run = re.search(r"^run:.*\n\t(.*)$", makefile, re.M).group(1)
    assert run.index("$(LOAD_ENV)") < run.index("$(WITH_SERVICES)")
    assert re.search(r"^password:.*\n\t.*changepassword", makefile, re.M)
