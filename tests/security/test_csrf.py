"""Cross-site request forgery against the browser's session cookie.

The attacker runs a page on another origin (or a sibling subdomain, which SameSite=Lax
counts as the same site) and makes the victim's browser send requests to the control
plane with the victim's cookies attached. It can set any header a form or ``fetch`` can,
but it cannot read the victim's cookies, so it does not know the session's CSRF token.
"""

from __future__ import annotations

import httpx
from control._tenants import PASSWORD, auth, error_code, ok, signup
from fastapi.testclient import TestClient

from apiary.control.api._guards import CSRF_COOKIE, csrf_token_for


def _browser_login(client: TestClient, email: str) -> httpx.Response:
    """Log in the way the web UI does: the answer sets the cookies in the client's jar."""
    response = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response


def _cookies(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def test_the_session_cookie_is_httponly_and_its_csrf_token_is_strict_and_derived(
        client: TestClient) -> None:
    signup(client, "victim@example.com")
    response = _browser_login(client, "victim@example.com")
    cookies = _cookies(response)
    session, csrf = cookies["apiary_session"], cookies[CSRF_COOKIE]
    assert "HttpOnly" in session
    assert "SameSite=lax" in session
    assert "HttpOnly" not in csrf  # the UI's script reads it ...
    assert "SameSite=strict" in csrf  # ... and no other site's request carries it
    token = response.json()["session_token"]
    assert client.cookies[CSRF_COOKIE] == csrf_token_for(token) != token
    assert token not in csrf


def test_a_cross_site_post_with_the_cookie_but_without_the_token_is_refused(
        client: TestClient) -> None:
    signup(client, "victim@example.com")
    _browser_login(client, "victim@example.com")
    forged = {"origin": "https://attacker.example", "content-type": "application/json"}

    # What the attacker wants: a new organization (or anything else) in the victim's name.
    assert error_code(client.post("/v1/orgs", json={"name": "pwned"}, headers=forged),
                      403) == "csrf_failed"
    wrong = {**forged, "x-csrf-token": "0" * 64}
    assert error_code(client.post("/v1/orgs", json={"name": "pwned"}, headers=wrong),
                      403) == "csrf_failed"
    assert error_code(client.post("/v1/auth/token", json={"audience": "x"}, headers=forged),
                      403) == "csrf_failed"  # no data-plane token minted for the attacker
    assert error_code(client.post("/v1/auth/logout", headers=forged), 403) == "csrf_failed"
    assert ok(client.get("/v1/orgs")) == []  # nothing was created; reads still work

    # The UI sends the token it read from the cookie: accepted.
    mine = {"x-csrf-token": client.cookies[CSRF_COOKIE]}
    created = ok(client.post("/v1/orgs", json={"name": "mine"}, headers=mine), 201)
    assert [o["id"] for o in ok(client.get("/v1/orgs"))] == [created["id"]]


def test_another_session_s_token_does_not_pass(client: TestClient) -> None:
    signup(client, "victim@example.com")
    signup(client, "attacker@example.com")
    attacker_token = _browser_login(client, "attacker@example.com").json()["session_token"]
    _browser_login(client, "victim@example.com")  # the jar now holds the victim's session
    stolen = {"x-csrf-token": csrf_token_for(attacker_token)}
    assert error_code(client.post("/v1/orgs", json={"name": "pwned"}, headers=stolen),
                      403) == "csrf_failed"


def test_a_bearer_credential_needs_no_csrf_token(client: TestClient) -> None:
    token = signup(client, "api@example.com")  # cookies cleared: the header alone
    ok(client.post("/v1/orgs", json={"name": "by-api"}, headers=auth(token)), 201)


def test_logout_clears_both_cookies(client: TestClient) -> None:
    signup(client, "victim@example.com")
    _browser_login(client, "victim@example.com")
    response = client.post("/v1/auth/logout", headers={"x-csrf-token": client.cookies[CSRF_COOKIE]})
    assert response.status_code == 204
    cleared = _cookies(response)
    assert 'apiary_session=""' in cleared["apiary_session"]
    assert f'{CSRF_COOKIE}=""' in cleared[CSRF_COOKIE]
    assert client.get("/v1/me").status_code == 401


def test_another_site_cannot_sign_the_victim_in_to_the_attacker_s_account(
        client: TestClient) -> None:
    """Login CSRF: the attacker's page posts the attacker's own credentials to the routes
    that set the session cookie, hoping the victim's browser keeps that session (and the
    victim then types their secrets into the attacker's account)."""
    signup(client, "attacker@example.com")
    client.cookies.clear()
    creds = f'{{"email": "attacker@example.com", "password": "{PASSWORD}"}}'
    form = f"email=attacker%40example.com&password={PASSWORD}"
    attempts = [
        # A plain HTML form (urlencoded, text/plain carrying JSON), from another origin.
        ({"origin": "https://attacker.example", "sec-fetch-site": "cross-site",
          "content-type": "application/x-www-form-urlencoded"}, form),
        ({"origin": "https://attacker.example", "sec-fetch-site": "cross-site",
          "content-type": "text/plain"}, creds),
        # A sibling subdomain (same site to SameSite), and a sandboxed frame (Origin: null).
        ({"origin": "https://evil.apiary.test", "sec-fetch-site": "same-site",
          "content-type": "application/json"}, creds),
        ({"origin": "null", "content-type": "application/json"}, creds),
        # fetch(no-cors) with a Blob body: no Content-Type at all.
        ({"origin": "https://attacker.example"}, creds),
        # A browser without fetch metadata or Origin: still no JSON from a form.
        ({"content-type": "text/plain"}, creds),
        ({"content-type": "application/x-www-form-urlencoded"}, form),
    ]
    for path in ("/v1/auth/login", "/v1/auth/signup", "/v1/auth/sso/mfa"):
        for headers, body in attempts:
            response = client.post(path, content=body, headers=headers)
            assert response.status_code in (403, 415), (path, headers, response.text)
            expected = "csrf_failed" if response.status_code == 403 else "unsupported_media_type"
            assert response.json()["errorCode"] == expected
            assert "set-cookie" not in response.headers, (path, headers)
    assert "apiary_session" not in client.cookies
    assert client.get("/v1/me").status_code == 401

    # The sign-in page itself (same origin, JSON) and non-browser clients still sign in.
    page = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    ok(client.post("/v1/auth/login", headers=page,
                   json={"email": "attacker@example.com", "password": PASSWORD}))
    client.cookies.clear()
    ok(client.post("/v1/auth/login", json={"email": "attacker@example.com",
                                           "password": PASSWORD}))
