"""Settings helpers."""

from __future__ import annotations

import pytest

from services.common.settings import mask_url


@pytest.mark.parametrize(("url", "shown"), [
    ("amqp://router:s3cr%40t@rabbit:5672/zeroerrand", "amqp://router:***@rabbit:5672/zeroerrand"),
    ("amqps://u:p@h/", "amqps://u:***@h/"),
    ("mongodb://app:pa:ss@mongo-1:27017,mongo-2:27017/?replicaSet=rs0",
     "mongodb://app:***@mongo-1:27017,mongo-2:27017/?replicaSet=rs0"),
    ("mongodb://mongo-1,mongo-2/?replicaSet=rs0", "mongodb://mongo-1,mongo-2/?replicaSet=rs0"),
    ("amqp://guest@localhost/", "amqp://guest@localhost/"),
    ("mongodb://%2Ftmp%2Fzeroerrand-db-x%2Fferretdb.sock", "mongodb://%2Ftmp%2Fzeroerrand-db-x%2Fferretdb.sock"),
])
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "s3cr" not in mask_url(url) and ":p@" not in mask_url(url) and "pa:ss" not in mask_url(url)


def test_several_amqp_urls_are_each_shown_without_their_password() -> None:
    shown = mask_url("amqp://svc:s3cret@rabbit-1:5672/zeroerrand,amqp://svc:s3cret@rabbit-2:5672/zeroerrand")
    assert shown == "amqp://svc:***@rabbit-1:5672/zeroerrand,amqp://svc:***@rabbit-2:5672/zeroerrand"
