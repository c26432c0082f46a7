"""Password guessing on the sign-in forms is throttled per address (the API's auth/token/ is too)."""
import pytest
from django.core.cache import cache

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_the_eleventh_wrong_password_in_a_minute_answers_429_and_is_not_checked(client, django_user_model, url):
    cache.clear()
    django_user_model.objects.create_user("alice", password="right-password", is_staff=True)
    for _ in range(10):
        r = client.post(url, {"username": "alice", "password": "wrong"})
        assert r.status_code == 200  # the form again, with its error
    r = client.post(url, {"username": "alice", "password": "right-password"})
    assert r.status_code == 429 and r["Retry-After"] == "60"
    assert "Too many sign-in attempts" in r.content.decode()
    assert "_auth_user_id" not in client.session  # not signed in, even with the right password
    cache.clear()  # the window passes
    r = client.post(url, {"username": "alice", "password": "right-password"})
    assert r.status_code == 302 and client.session["_auth_user_id"]


def test_viewing_the_login_page_is_not_counted(client):
    cache.clear()
    for _ in range(30):
        assert client.get("/accounts/login/").status_code == 200
