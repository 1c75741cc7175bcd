from django.core import mail
def test_probe(client, db, researcher):
    r = client.post("/accounts/signup/", {"email": "new@uni.example.edu", "password1": "a-long-test-password-1", "password2": "a-long-test-password-1"})
    print(r.status_code, r.get("Location"))
    print(mail.outbox[0].subject, mail.outbox[0].body)
    r = client.post("/accounts/login/", {"login": "new@uni.example.edu", "password": "a-long-test-password-1"})
    print(r.status_code, r.get("Location"), len(mail.outbox))
    r = client.post("/accounts/password/reset/", {"email": researcher.email})
    print(r.status_code, r.get("Location"), len(mail.outbox))
    print(mail.outbox[-1].subject, mail.outbox[-1].body)
