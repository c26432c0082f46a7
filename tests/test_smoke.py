import pytest


@pytest.mark.django_db
def test_healthz_answers_ok(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_tests_run_on_postgresql():
    from django.conf import settings

    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")


@pytest.mark.django_db(transaction=True)
def test_celery_worker_answers_ping(celery_worker):
    from labseg.celery import app

    assert celery_worker.alive()
    assert app.control.ping(timeout=2.0)
