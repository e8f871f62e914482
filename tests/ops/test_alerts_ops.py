"""Alert rules through the operations, once on the store (``Operations``) and once
through a real Jupyter server (``RestClient``: HTTP 400 with the message): a job's rules
are kept as written, an empty list clears them, and a bad rule is refused naming the
rule and the problem, nothing stored."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from hermes_cron_ext.errors import InvalidInput, NotFound
from hermes_cron_ext.ops import Operations, RestClient

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture(params=["local", "rest"])
def ops(request, cron_server):
    client = (Operations(cron_server.db) if request.param == "local"
              else RestClient(cron_server.url, cron_server.token))
    yield client
    client.close()


@pytest.fixture
def name(ops):
    job = f"alerts-{uuid.uuid4().hex[:8]}"
    yield job
    try:
        ops.remove(job)
    except NotFound:
        pass


def test_rules_are_kept_changed_and_cleared(ops, name):
    job = ops.add({"name": name, "schedule": "@yearly", "command": "true",
                   "alerts": ["rows < 1000", "duration > 2 * median(20)"]})
    assert job["policy"]["alerts"] == ["rows < 1000", "duration > 2 * median(20)"]
    assert ops.edit(name, {"policy": {"alerts": ["peak_memory >= 1.5G"]}})[
        "policy"]["alerts"] == ["peak_memory >= 1.5G"]
    assert ops.edit(name, {"retries": 1})["policy"]["alerts"] == ["peak_memory >= 1.5G"]
    assert ops.edit(name, {"alerts": []})["policy"]["alerts"] == []


@pytest.mark.parametrize(("rules", "said"), [
    (["rows < 1000", "rows <"], "alert rule 'rows <': it ends too soon"),
    (["duration > 2 * mode(20)"], "'mode' is not a statistic"),
    (["rows < 10 parsecs"], "unknown unit 'parsecs'"),
    ([f"rows < {i}" for i in range(21)], "at most 20 alert rules, not 21"),
    ("rows", "alert rule 'rows': it ends too soon"),
    ([3], "alerts must be a list of rules"),
])
def test_a_bad_rule_is_refused_naming_it(ops, name, rules, said):
    with pytest.raises(InvalidInput) as err:
        ops.add({"name": name, "schedule": "@yearly", "command": "true", "alerts": rules})
    assert err.value.field == "alerts" and said in err.value.message
    with pytest.raises(NotFound):
        ops.job(name)
    ops.add({"name": name, "schedule": "@yearly", "command": "true",
             "alerts": ["rows < 1"]})
    with pytest.raises(InvalidInput) as err:
        ops.edit(name, {"alerts": rules})
    assert err.value.field == "alerts" and said in err.value.message
    assert ops.job(name)["policy"]["alerts"] == ["rows < 1"]


def test_the_http_answer_is_a_400_with_the_message(cron_server):
    body = json.dumps({"name": f"alerts-{uuid.uuid4().hex[:8]}", "schedule": "@yearly",
                       "command": "true", "alerts": ["rows <> 5"]}).encode()
    request = urllib.request.Request(
        cron_server.url + "api/cron/jobs", data=body, method="POST",
        headers={"Authorization": f"token {cron_server.token}",
                 "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 400
    answer = json.loads(err.value.read())
    assert "alert rule 'rows <> 5'" in json.dumps(answer)
