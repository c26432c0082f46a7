"""Accounts and invitations from the app (issue 11.10): a staff user creates an account with a one-time
password that must be changed at the first sign-in; owners invite members by username or e-mail."""
import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user):
    return make_user("sam_staff", is_staff=True)


def test_staff_creates_an_account_and_sees_the_one_time_password_once(staff, client_for, django_user_model):
    r = client_for(staff).post("/api/v1/accounts/", {"username": "nina", "email": "nina@lab.org"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["username"] == "nina" and body["must_change_password"] is True and len(body["password"]) == 12
    user = django_user_model.objects.get(username="nina")
    assert user.check_password(body["password"]) and not user.is_staff and user.email == "nina@lab.org"


@pytest.mark.parametrize("who,status", [("owner", 403), ("annotator", 403), ("viewer", 403), ("stranger", 403),
                                        (None, 401)])
def test_only_staff_create_accounts(who, status, project, request, client_for, django_user_model):
    user = request.getfixturevalue(who) if who else None
    r = client_for(user).post("/api/v1/accounts/", {"username": "nina"}, format="json")
    assert r.status_code == status and "detail" in r.json()
    assert not django_user_model.objects.filter(username="nina").exists()


@pytest.mark.parametrize("body,field", [
    ({}, "username"), ({"username": "has space"}, "username"), ({"username": "x" * 151}, "username"),
    ({"username": "ok", "email": "not-an-address"}, "email"), ({"username": "OLIVIA_owner"}, "username"),
    ({"username": "new", "email": "Olivia@Lab.org"}, "email"),
])
def test_bad_account_requests_are_400_json(body, field, staff, owner, client_for):
    owner.email = "olivia@lab.org"
    owner.save()
    r = client_for(staff).post("/api/v1/accounts/", body, format="json")
    assert r.status_code == 400, r.content
    assert "detail" in r.json() and field in str(r.json())


def test_one_time_password_must_be_changed_at_first_sign_in(staff, client_for):
    password = client_for(staff).post("/api/v1/accounts/", {"username": "nina"}, format="json").json()["password"]
    c = Client()
    r = c.post("/accounts/login/", {"username": "nina", "password": password})
    assert r.status_code == 302
    r = c.get("/projects/1")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/password_change/")
    r = c.get("/api/v1/projects/")
    assert r.status_code == 403 and r.json()["code"] == "password_change_required"
    assert c.get("/accounts/password_change/").status_code == 200
    r = c.post("/accounts/password_change/", {"old_password": password, "new_password1": "a-new-Secret-42",
                                              "new_password2": "a-new-Secret-42"})
    assert r.status_code == 302 and r["Location"] == "/accounts/password_change/done/"
    assert c.get(r["Location"]).status_code == 200
    assert c.get("/api/v1/projects/").status_code == 200
    # the next sign-in is an ordinary one
    c2 = Client()
    c2.post("/accounts/login/", {"username": "nina", "password": "a-new-Secret-42"})
    assert c2.get("/api/v1/projects/").status_code == 200


@pytest.mark.parametrize("name", ["ann@lab.org", "ANN@lab.org", "ann_annotator"])
def test_owner_invites_by_username_or_email(name, project, owner, make_user, client_for):
    make_user("ann_annotator", email="ann@lab.org")
    r = client_for(owner).post(f"/api/v1/projects/{project.pk}/members/", {"username": name, "role": "viewer"},
                               format="json")
    assert r.status_code == 201, r.content
    assert r.json()["username"] == "ann_annotator"


def test_inviting_an_unknown_email_says_who_can_create_the_account(project, owner, client_for):
    r = client_for(owner).post(f"/api/v1/projects/{project.pk}/members/", {"username": "who@lab.org"}, format="json")
    assert r.status_code == 400 and "no account uses the e-mail" in str(r.json())
